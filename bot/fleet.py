"""A fleet environment's targets: discovered (tenant schemas or tenant databases), each one's ledger read and grouped.

Usage::

    plan = discover(env, "prisma", snapshot)       # every target, read-only; unreachable ones say why
    plan.groups()                                  # {"pending 2 files": [...], "already applied": [...], ...}
    plan.fingerprint()                             # what an approval binds: the target ids and their states
    with open_target(env, target) as conn: ...     # its own search_path (schemas) or database; URL never shown
    view = fleet_view(store, request, env)         # a rollout as its card shows it (None: not a fleet)
    rows = targets_table(request, store.list_fleet_targets(request.id))   # the Targets file's rows
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import psycopg
from psycopg import conninfo, sql
from pydantic import BaseModel, ConfigDict, SecretStr

from bot.config import EnvironmentConfig, FleetConfig, GuardianConfig, prisma_schema_url
from bot.errors import ConfigError, GuardianError
from bot.models import Request
from bot.pg.connect import connect_target, target_errors
from bot.redaction import scrub
from bot.sources.ledgers import prisma_schema_not_empty, read_ledger
from bot.sources.models import Layout, MigrationState, SourceSnapshot
from bot.sources.status import compute_status
from bot.store import Store
from bot.store.fleet import PastDurations, RolloutTarget
from bot.views import FleetView

TargetState = Literal["pending", "applied", "drifted", "unreachable"]
STATES: tuple[TargetState, ...] = ("pending", "applied", "drifted", "unreachable")
_DRIFT = (MigrationState.MODIFIED, MigrationState.MISSING_LOCALLY, MigrationState.FAILED, MigrationState.OUT_OF_ORDER)
_SYSTEM = ("pg_catalog", "information_schema", "pg_toast")
FAILED_SHOWN = 5  # failed targets named on the card
REWRITE_BYTES_PER_S = 50 * 1024 * 1024  # a full table rewrite's pace assumed for a per-target estimate (worst case)
CONNECT_S = 1.0                         # per target: connect, lock, ledger, verify


class FleetTarget(BaseModel):
    """One tenant: a schema of the environment's database, or a database whose URL a variable holds."""

    model_config = ConfigDict(frozen=True)

    id: str                          # the schema name, the query's name, or the url_envs variable
    kind: Literal["schema", "database"]
    server: str                      # host:port, for the per_server cap (never the URL)
    url_env: str | None = None       # database-per-tenant: the variable holding its URL
    state: TargetState = "pending"
    pending: tuple[str, ...] = ()    # ledger names not applied yet, in the tool's order
    reason: str | None = None        # drifted / unreachable: one line, no secret
    size_bytes: int = 0


class FleetPlan(BaseModel):
    """Every target of a fleet environment as discovered at one moment."""

    model_config = ConfigDict(frozen=True)

    environment: str
    targets: tuple[FleetTarget, ...]

    def groups(self) -> dict[str, list[FleetTarget]]:
        """Targets by state; pending ones by the files they lack ("pending 2 files: a, b"), biggest group first."""
        out: dict[str, list[FleetTarget]] = {}
        for t in self.targets:
            out.setdefault(group_label(t), []).append(t)
        order = {s: i for i, s in enumerate(STATES)}
        return dict(sorted(out.items(), key=lambda kv: (order[kv[1][0].state], -len(kv[1]), kv[0])))

    def fingerprint(self) -> str:
        """sha256 of the target set (ids, states, pending files): a target added, drifted or applied changes it."""
        return set_fingerprint(self.targets)

    def pending(self) -> list[FleetTarget]:
        return [t for t in self.targets if t.state == "pending"]


def group_label(target: FleetTarget) -> str:
    if target.state == "pending":
        n = len(target.pending)
        return f"pending {n} file{'s' if n != 1 else ''}: {', '.join(target.pending)}"
    return {"applied": "already applied", "drifted": "drifted", "unreachable": "unreachable"}[target.state]


def set_fingerprint(targets: Iterable[FleetTarget]) -> str:
    rows = sorted([t.id, t.kind, t.state, list(t.pending)] for t in targets)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def server_of(url: str) -> str:
    """host:port of a URL (the per_server cap's key); never the user, password or database."""
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "unknown"
    return f"{parts.get('host') or 'localhost'}:{parts.get('port') or 5432}"


def target_url(env: EnvironmentConfig, target: FleetTarget) -> SecretStr:
    """The URL a target is reached at: the environment's with the schema as search_path, or its own variable."""
    if target.kind == "schema":
        base = env.database_url().get_secret_value()
        options = conninfo.conninfo_to_dict(base).get("options") or ""
        ident = '"' + target.id.replace('"', '""') + '"'
        setting = "-c search_path=" + ident.replace("\\", "\\\\").replace(" ", "\\ ")
        return SecretStr(conninfo.make_conninfo(base, options=f"{options} {setting}".strip()))
    value = os.environ.get(target.url_env or "", "")
    if not value:
        raise ConfigError(f"fleet {env.name!r}: target {target.id!r}: variable {target.url_env} is not set; export "
                          "the tenant database's URL in it", code="missing-env")
    return SecretStr(prisma_schema_url(value))


@contextmanager
def open_target(env: EnvironmentConfig, target: FleetTarget, *, application_name: str = "migration-guardian"
                ) -> Iterator[psycopg.Connection]:
    """A connection to one target (its schema first on the search_path), or a TargetError that names no secret."""
    with connect_target(target_url(env, target), f"{env.name}/{target.id}", application_name=application_name) as conn:
        yield conn


def read_state(conn: psycopg.Connection, layout: Layout, snapshot: SourceSnapshot,
               only: Iterable[str] | None = None, own: str | None = None) -> tuple[TargetState, tuple[str, ...], str | None]:
    """(state, pending ledger names, reason) of the target ``conn`` points at, against ``snapshot``'s files;
    ``only`` narrows it to those files (a rollout checks just what was approved). Prisma failed rows that ``own``
    (a sidecar request id) left when its file rolled back whole count as pending: the retry resolves them."""
    ledger = read_ledger(conn, layout)
    ours = {r.ledger_name for r in ledger.rows if own and r.failed and any(
        s.request_id == own and not s.succeeded and s.started_at == r.started_at for s in ledger.sidecar)}
    if layout == "prisma" and not ledger.exists and snapshot.migrations:
        tables = prisma_schema_not_empty(conn)
        if tables:
            return "drifted", (), (f"has tables ({', '.join(tables[:3])}) but no _prisma_migrations history (P3005); "
                                   "baseline it")
    status = compute_status(snapshot, ledger)
    keep = set(only) if only is not None else None
    rows = [m for m in status.migrations if keep is None or m.ledger_name in keep]
    retry = {m.ledger_name for m in rows if m.state is MigrationState.FAILED and m.ledger_name in ours}
    drift = [m for m in rows if m.state in _DRIFT and m.ledger_name not in retry]
    if drift:
        return "drifted", (), "; ".join(f"{m.ledger_name or m.version} {m.state.value.replace('_', ' ')}"
                                        for m in drift[:3]) + (f" (+{len(drift) - 3} more)" if len(drift) > 3 else "")
    pending = tuple(m.ledger_name for m in rows if m.state is MigrationState.PENDING or m.ledger_name in retry)
    return ("pending" if pending else "applied"), pending, None


def applied_files(conn: psycopg.Connection, layout: Layout) -> set[str]:
    """Ledger names the target's tool counts as applied (Prisma: finished and not rolled back)."""
    return {r.ledger_name for r in read_ledger(conn, layout).rows
            if r.layout != "prisma" or (r.finished_at is not None and r.rolled_back_at is None)}


def discover(env: EnvironmentConfig, layout: Layout, snapshot: SourceSnapshot) -> FleetPlan:
    """Every target of ``env``'s fleet with its ledger state; read-only. A target that cannot be reached is listed
    as unreachable with the reason (never the URL); the environment's own database must answer."""
    fleet = _fleet(env)
    if fleet.schemas:
        targets = _schema_targets(env, fleet, layout, snapshot)
    else:
        targets = [_database_target(env, name, var, layout, snapshot) for name, var in _database_names(env, fleet)]
    return FleetPlan(environment=env.name, targets=tuple(targets))


def current_targets(env: EnvironmentConfig) -> list[FleetTarget]:
    """Which targets the fleet has now (ids, kinds, servers; ledgers not read): a rollout compares them with the
    approved set to list the ones added since."""
    fleet = _fleet(env)
    if not fleet.schemas:
        return [FleetTarget(id=name, kind="database", server=server_of(os.environ.get(var, "")), url_env=var)
                for name, var in _database_names(env, fleet)]
    url = env.database_url()
    with connect_target(url, env.name, application_name="guardian-fleet-discover") as conn, target_errors(env.name, url):
        names = schema_names(conn, fleet.schemas)
    return [FleetTarget(id=name, kind="schema", server=server_of(url.get_secret_value())) for name in names]


def _fleet(env: EnvironmentConfig) -> FleetConfig:
    if env.fleet is None:
        raise ConfigError(f"environment {env.name!r} is not a fleet; add [environments.{env.name}.fleet]",
                          code="not-a-fleet")
    return env.fleet


def schema_names(conn: psycopg.Connection, pattern: str) -> list[str]:
    """The schemas matching the glob, sorted (system schemas never)."""
    rows = conn.execute("SELECT nspname FROM pg_namespace WHERE left(nspname, 3) <> 'pg_' "
                        "AND nspname <> ALL(%s) ORDER BY nspname", (list(_SYSTEM),)).fetchall()
    return [r[0] for r in rows if fnmatch.fnmatchcase(r[0], pattern)]


def _schema_targets(env: EnvironmentConfig, fleet: FleetConfig, layout: Layout,
                    snapshot: SourceSnapshot) -> list[FleetTarget]:
    url = env.database_url()
    server = server_of(url.get_secret_value())
    out = []
    with connect_target(url, env.name, application_name="guardian-fleet-discover") as conn, target_errors(env.name, url):
        sizes = dict(conn.execute(
            "SELECT n.nspname, coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_namespace n "
            "LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'm', 'p') GROUP BY 1").fetchall())
        for name in schema_names(conn, fleet.schemas or ""):
            conn.execute("SELECT set_config('search_path', %s, false)", (sql.Identifier(name).as_string(conn),))
            try:
                with target_errors(f"{env.name}/{name}"):
                    state, pending, reason = read_state(conn, layout, snapshot)
            except GuardianError as exc:  # a ledger in a shape we do not write: that tenant's history is not ours
                state, pending, reason = "drifted", (), f"[{exc.code}] {exc.message}"
            out.append(FleetTarget(id=name, kind="schema", server=server, state=state, pending=pending, reason=reason,
                                   size_bytes=int(sizes.get(name, 0))))
    return out


def _database_names(env: EnvironmentConfig, fleet: FleetConfig) -> list[tuple[str, str]]:
    if fleet.url_envs:
        return [(var, var) for var in fleet.url_envs]
    url = env.database_url()
    with connect_target(url, env.name, application_name="guardian-fleet-discover") as conn, target_errors(env.name, url):
        rows = conn.execute(fleet.query or "").fetchall()
    out = []
    for row in rows:
        if len(row) < 2 or not isinstance(row[0], str) or not isinstance(row[1], str):
            raise ConfigError(f"fleet {env.name!r}: the query must return (name text, url_env text) rows, got "
                              f"{len(row)} column(s)", code="fleet-query")
        out.append((row[0], row[1]))
    return out


def _database_target(env: EnvironmentConfig, name: str, var: str, layout: Layout,
                     snapshot: SourceSnapshot) -> FleetTarget:
    base = FleetTarget(id=name, kind="database", server=server_of(os.environ.get(var, "")), url_env=var)
    try:
        with open_target(env, base, application_name="guardian-fleet-discover") as conn:
            with target_errors(f"{env.name}/{name}"):
                size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
                state, pending, reason = read_state(conn, layout, snapshot)
    except GuardianError as exc:
        return base.model_copy(update={"state": "unreachable", "reason": f"[{exc.code}] {exc.message}"})
    return base.model_copy(update={"state": state, "pending": pending, "reason": reason, "size_bytes": int(size)})


def wave_numbers(count: int, fleet: FleetConfig) -> list[int]:
    """The wave of each of ``count`` targets in rollout order: 0 for the canary, then 1, 2, … of ``wave`` each.

    >>> wave_numbers(5, FleetConfig(schemas="t_*", canary=1, wave=2))
    [0, 1, 1, 2, 2]
    """
    canary = min(fleet.canary, count)
    size = fleet.wave_size(count - canary)
    return [0] * canary + [1 + i // size for i in range(count - canary)]


def fleet_summary(plan: FleetPlan, fleet: FleetConfig, wanted: set[str], past: PastDurations | None = None) -> dict:
    """What the request keeps (its ``target["fleet"]``): the target set the approval binds, in rollout order, with
    each pending target's wave and the files it gets, plus the rollout settings shown in the preview (its estimate
    from ``past``, the environment's recent per-target durations, when there are any)."""
    runs = [t for t in plan.pending() if set(t.pending) & wanted]
    waves = dict(zip((t.id for t in runs), wave_numbers(len(runs), fleet)))
    targets = [{**t.model_dump(mode="json", exclude={"size_bytes"}),
                "files": [n for n in t.pending if n in wanted] if t.id in waves else [],
                "wave": waves.get(t.id)} for t in plan.targets]
    largest = sorted(plan.targets, key=lambda t: -t.size_bytes)[:3]
    return {
        "fingerprint": plan.fingerprint(),
        "targets": targets,
        "counts": {s: sum(1 for t in plan.targets if t.state == s) for s in STATES},
        "rollout": {"targets": len(runs), "waves": max(waves.values(), default=-1) + 1, "canary": fleet.canary,
                    "wave": fleet.wave, "parallel": fleet.parallel, "per_server": fleet.per_server,
                    "halt_after_failures": fleet.halt_after_failures, "health_query": bool(fleet.health_query),
                    "pause": fleet.pause},
        "largest": [{"id": t.id, "size_bytes": t.size_bytes} for t in largest if t.size_bytes],
        "estimate": estimate_duration(runs, list(waves.values()), fleet, past),
    }


def estimate_duration(runs: list[FleetTarget], waves: list[int], fleet: FleetConfig,
                      past: PastDurations | None = None) -> dict:
    """The rollout's estimated duration and what it is based on: each wave takes ceil(its targets / parallel) rounds
    of one target's job, and the pause separates waves. One target's job takes the median of ``past`` (the
    environment's recent rollouts, measured start to finish) or, with no past to go by, an assumed one: the largest
    pending target rewritten at REWRITE_BYTES_PER_S plus CONNECT_S.

    >>> t = FleetTarget(id="a", kind="schema", server="h:5432", size_bytes=100 * 1024 * 1024)
    >>> estimate_duration([t] * 5, [0, 1, 1, 1, 1], FleetConfig(schemas="t_*", parallel=2, pause="10s"))["seconds"]
    19.0
    >>> past = PastDurations(rollouts=3, targets=300, median_s=0.4)
    >>> e = estimate_duration([t] * 5, [0, 1, 1, 1, 1], FleetConfig(schemas="t_*", parallel=2, pause="10s"), past)
    >>> e["seconds"], e["basis"].split("; ")[1]
    (11.2, 'from 3 past rollouts: median 0.40 s per target (300 targets)')
    """
    biggest = max((t.size_bytes for t in runs), default=0)
    if past is not None:
        per_target = past.median_s
        how = (f"from {past.rollouts} past rollout{'s' if past.rollouts != 1 else ''}: median {per_target:.2f} s per "
               f"target ({past.targets} target{'s' if past.targets != 1 else ''})")
    else:
        per_target = CONNECT_S + biggest / REWRITE_BYTES_PER_S
        how = (f"assumed {per_target:.0f} s per target, a rewrite of the largest pending target "
               f"({biggest / 1024 / 1024:.0f} MB) at {REWRITE_BYTES_PER_S // 1024 // 1024} MB/s plus "
               f"{CONNECT_S:.0f} s; no past rollout to go by")
    sizes = [waves.count(w) for w in sorted(set(waves))]
    rounds = sum(-(-n // fleet.parallel) for n in sizes)
    seconds = round(rounds * per_target + max(len(sizes) - 1, 0) * fleet.pause_s, 1)
    basis = f"{len(runs)} targets in {len(sizes)} waves, ≤{fleet.parallel} at once, pause {fleet.pause}; {how}"
    return {"seconds": seconds, "basis": basis, "per_target_s": round(per_target, 3),
            "past_rollouts": past.rollouts if past else 0}


def fleet_view(store: Store, request: Request, env: EnvironmentConfig) -> FleetView | None:
    """The rollout as the card shows it: state, wave, counts, the first failed targets, an ETA from the pace so far."""
    rollout = store.get_rollout(request.id) if env.fleet is not None else None
    if rollout is None:
        return None
    targets = store.list_fleet_targets(request.id)
    counts: dict[str, int] = {}
    for t in targets:
        counts[t.state] = counts.get(t.state, 0) + 1
    durations = [(t.finished_at - t.started_at).total_seconds() for t in targets
                 if t.state == "succeeded" and t.started_at and t.finished_at]
    left = sum(counts.get(s, 0) for s in ("waiting", "queued", "running"))
    eta = sum(durations) / len(durations) * left / min(env.fleet.parallel, max(left, 1)) if durations and left else None
    return FleetView(state=rollout.state, wave=rollout.wave, waves=max((t.wave for t in targets if t.wave is not None),
                                                                       default=-1) + 1,
                     counts=counts, reason=rollout.reason, eta_s=eta,
                     failed=tuple((t.target, (t.note or "failed").splitlines()[0]) for t in targets
                                  if t.state == "failed")[:FAILED_SHOWN])


def fleet_status(config: GuardianConfig, name: str, snapshot: SourceSnapshot) -> tuple[dict, str, bool]:
    """`guardian status <fleet>`: (its JSON, its text, clean?) with every target's state and pending files."""
    plan = discover(config.environment(name), config.project.layout, snapshot)
    counts = {s: sum(1 for t in plan.targets if t.state == s) for s in STATES}
    doc = {"name": name, "layout": config.project.layout, "commit": snapshot.commit, "summary": counts,
           "targets": [t.model_dump(mode="json", exclude={"size_bytes"}) for t in plan.targets]}
    lines = [f"{name}: fleet of {len(plan.targets)} targets, {config.project.layout} files at "
             f"{(snapshot.commit or 'working tree')[:12]}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)]
    for label, targets in plan.groups().items():
        lines.append(f"  {label} ({len(targets)}): " + ", ".join(t.id for t in targets[:20])
                     + (f" … and {len(targets) - 20} more" if len(targets) > 20 else ""))
        lines += [f"      {t.id}: {t.reason}" for t in targets[:20] if t.reason]
    return doc, "\n".join(lines), counts["applied"] == len(plan.targets)


TABLE_COLUMNS = ("target", "kind", "server", "state", "wave", "attempt", "started_at", "finished_at", "duration_s",
                 "error", "note", "ledger_at_approval", "files")
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://\S+")


def _one_line(text: str | None) -> str:
    """A stored note as one line with no secret and no URL at all (a tenant's URL, even without its password,
    names its user and database): the target's name and host:port columns say where it is."""
    if not text:
        return ""
    return _URL.sub("[url]", scrub(text.splitlines()[0] if text.strip() else ""))[:300]


def _ledger_words(approved: dict[str, Any] | None) -> str:
    if approved is None:
        return "not in the approved set"
    state = approved.get("state") or "?"
    if state == "pending":
        return "pending: " + ", ".join(approved.get("pending") or ())
    words = {"applied": "already applied"}.get(state, state)
    return words + (f": {_one_line(approved.get('reason'))}" if approved.get("reason") else "")


def targets_table(request: Request, targets: list[RolloutTarget]) -> list[dict[str, str]]:
    """One row per target of a rollout, in rollout order (TABLE_COLUMNS): its state in the store, wave, times,
    the error (failed) or note (skipped, excluded, retried), its ledger as the approval saw it and the files it
    gets. Names and host:port only: a URL never appears (notes are scrubbed, URLs in them cut out).

    >>> from datetime import datetime, timezone
    >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> row = RolloutTarget(request_id=1, target="tenant_1", position=0, kind="schema", server="db:5432", wave=0,
    ...     files=["m1"], state="failed", note="boom at postgresql://u@db/x", attempt=1, started_at=t0,
    ...     finished_at=t0.replace(second=2))
    >>> r = targets_table(Request.model_construct(target={"fleet": {"targets": []}}), [row])[0]
    >>> r["error"], r["duration_s"], r["ledger_at_approval"]
    ('boom at [url]', '2.000', 'not in the approved set')
    """
    approved = {t["id"]: t for t in ((request.target or {}).get("fleet") or {}).get("targets") or ()}
    rows = []
    for t in targets:
        took = (t.finished_at - t.started_at).total_seconds() if t.started_at and t.finished_at else None
        note = _one_line(t.note)
        rows.append({
            "target": t.target, "kind": t.kind, "server": t.server, "state": t.state,
            "wave": "" if t.wave is None else str(t.wave), "attempt": str(t.attempt),
            "started_at": t.started_at.isoformat() if t.started_at else "",
            "finished_at": t.finished_at.isoformat() if t.finished_at else "",
            "duration_s": "" if took is None else f"{took:.3f}",
            "error": note if t.state == "failed" else "", "note": "" if t.state == "failed" else note,
            "ledger_at_approval": _ledger_words(approved.get(t.target)), "files": " ".join(t.files),
        })
    return rows
