"""Per-environment migration status: applied, pending, failed, modified, missing locally, out of order.

Usage::

    report = compute_status(load_snapshot(config.project), read_ledger(conn, "prisma"))
    report.by_state(MigrationState.PENDING)
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable

from bot.config import GuardianConfig
from bot.errors import GuardianError, SourceError
from bot.pg.connect import TargetInfo, connect_target, target_errors, target_info
from bot.sources.layouts import load_snapshot
from bot.sources.ledgers import prisma_checksum_matches, read_ledger, statements_sha256
from bot.sources.models import (
    LedgerRow,
    LedgerState,
    Migration,
    MigrationState,
    MigrationStatus,
    SidecarRow,
    SourceSnapshot,
    StatusReport,
)
from bot.sources.supabase_parser import split_and_trim

_PROBLEMS = {MigrationState.FAILED, MigrationState.MODIFIED, MigrationState.MISSING_LOCALLY, MigrationState.OUT_OF_ORDER}


Key = tuple[str, str]


def _latest_sidecar(rows: tuple[SidecarRow, ...]) -> tuple[dict[Key, SidecarRow], dict[Key, SidecarRow]]:
    """(latest succeeded row, latest row of any outcome) per (version, name): history, never the truth about
    "applied". The name is part of the key because Prisma allows two folders with one timestamp."""
    ok: dict[Key, SidecarRow] = {}
    last: dict[Key, SidecarRow] = {}
    for row in rows:
        last[(row.version, row.name)] = row
        if row.succeeded:
            ok[(row.version, row.name)] = row
    return ok, last


def _all_rows(ledger: LedgerState) -> dict[str, list[LedgerRow]]:
    by_key: dict[str, list[LedgerRow]] = {}
    for row in ledger.rows:
        by_key.setdefault(row.ledger_name, []).append(row)
    return by_key


def _is_applied(row: LedgerRow) -> bool:
    """The tool's own test. Prisma (apply_migrations.rs): a row not rolled back counts; only a finished one is applied.
    Supabase and ours: the version row exists."""
    if row.layout == "prisma":
        return row.finished_at is not None and row.rolled_back_at is None
    return True


def resolve_command(name: str) -> str:
    """The command that clears Prisma's P3009 for ``name`` once the database holds none of it (a Guardian file
    that failed was rolled back whole, so this is the usual one)."""
    return f'npx prisma migrate resolve --rolled-back "{name}"'


def failed_detail(row: LedgerRow) -> str:
    logs = (row.logs or "").strip().splitlines()
    reason = f": {logs[0][:300]}" if logs else ""
    return (f"failed{reason}. Prisma refuses to deploy anything until it is resolved (P3009): fix what the failure "
            f"left, then run `{resolve_command(row.ledger_name)}` (or `npx prisma migrate resolve --applied "
            f'"{row.ledger_name}"` if you finished it by hand)')


def _modified(m: Migration, applied: LedgerRow, sidecar: SidecarRow | None) -> tuple[bool, str | None, str | None]:
    """(modified?, the sha recorded at apply, a detail line)."""
    if applied.layout == "prisma" and applied.checksum:
        return not prisma_checksum_matches(m.sql, applied.checksum), applied.checksum, None
    if applied.layout == "sql" and applied.checksum:
        return applied.checksum.strip() != m.sha256, applied.checksum.strip(), None
    if applied.layout == "supabase" and applied.statements is not None and (
            sidecar is None or (sidecar.statements_sha256 or "").strip() != statements_sha256(applied.statements)):
        # a row the CLI wrote (or rewrote: repair, push): its statements are the CLI's split of the file it read
        return list(applied.statements) != split_and_trim(m.sql), None, None
    if sidecar is not None:
        return sidecar.sha256.strip() != m.sha256, sidecar.sha256.strip(), None
    return False, None, "applied outside Guardian: no sidecar row, so edits after apply cannot be detected"


def _pending_detail(m: Migration, rows: list[LedgerRow], attempt: SidecarRow | None) -> str | None:
    """Why a pending migration was touched before: rolled back (the tool's way) or a failed attempt (history)."""
    rolled = [r for r in rows if r.rolled_back_at is not None]
    if rolled:
        return (f"rolled back at {rolled[-1].rolled_back_at:%Y-%m-%d %H:%M:%S}; pending again: the next deploy applies "
                "it unless the folder is removed or superseded")
    if attempt is not None and not attempt.succeeded:
        same = "unchanged since" if attempt.sha256.strip() == m.sha256 else "the file has changed since"
        return f"last attempt failed ({(attempt.error or 'no error recorded')[:200]}); {same}"
    return None


def compute_status(snapshot: SourceSnapshot, ledger: LedgerState) -> StatusReport:
    """Pure: compare what is on disk with what the target holds. No I/O; reusable from Slack.

    The tool's ledger decides applied / pending / failed, as the tool's CLI would; the sidecar adds history
    (who, when, the exact bytes, earlier failed attempts) and edit detection where the tool has none.
    """
    tool = _all_rows(ledger)
    side_ok, side_last = _latest_sidecar(ledger.sidecar)
    local_keys = {m.ledger_name for m in snapshot.migrations}
    result: list[MigrationStatus] = []
    last_applied_index = -1
    for index, m in enumerate(snapshot.migrations):
        if any(_is_applied(r) for r in tool.get(m.ledger_name, [])):
            last_applied_index = index
    for index, m in enumerate(snapshot.migrations):
        rows = tool.get(m.ledger_name, [])
        applied = next((r for r in reversed(rows) if _is_applied(r)), None)
        failed = next((r for r in reversed(rows) if r.failed), None)
        common = {"version": m.version, "name": m.name, "sha256": m.sha256, "ledger_name": m.ledger_name}
        if failed is not None:  # Prisma: a failed row not rolled back blocks (P3009) whatever else exists
            result.append(MigrationStatus(**common, state=MigrationState.FAILED, applied_at=failed.started_at,
                                          applied_sha256=failed.checksum, detail=failed_detail(failed)))
        elif applied is not None:
            sidecar = side_ok.get((m.version, m.name))
            changed, recorded, detail = _modified(m, applied, sidecar)
            when = applied.finished_at or (sidecar.finished_at if sidecar else None)
            state = MigrationState.MODIFIED if changed else MigrationState.APPLIED
            if changed:
                detail = "the file changed after it was applied; restore it or add a new migration instead"
            result.append(MigrationStatus(**common, state=state, applied_sha256=recorded, applied_at=when, detail=detail))
        else:
            detail = _pending_detail(m, rows, side_last.get((m.version, m.name)))
            if index < last_applied_index:
                newest = snapshot.migrations[last_applied_index]
                late = (f"not applied, but sorts before {_label(newest.version, newest.name)}, which is; "
                        "rename it to sort after the applied ones, or confirm it does not depend on them")
                result.append(MigrationStatus(**common, state=MigrationState.OUT_OF_ORDER,
                                              detail=f"{late}. {detail}" if detail else late))
            else:
                result.append(MigrationStatus(**common, state=MigrationState.PENDING, detail=detail))
    for key, rows in tool.items():
        if key in local_keys:
            continue
        live = [r for r in rows if r.rolled_back_at is None]  # rolled-back rows of a removed folder are history
        if not live:
            continue
        row = next((r for r in reversed(live) if r.failed), live[-1])
        state = MigrationState.FAILED if row.failed else MigrationState.MISSING_LOCALLY
        result.append(MigrationStatus(
            version=row.version, name=row.name or "", ledger_name=row.ledger_name, state=state,
            applied_sha256=row.checksum,
            applied_at=row.finished_at or row.started_at,
            detail=failed_detail(row) if row.failed else "in the target's ledger but no such file at this commit",
        ))
    counts = Counter(s.state.value for s in result)
    summary = {state.value: counts.get(state.value, 0) for state in MigrationState}
    summary["total"] = len(result)
    return StatusReport(layout=snapshot.layout, commit=snapshot.commit, migrations=tuple(result), summary=summary,
                        skipped=snapshot.skipped)


def plannable(report: StatusReport, environment: str) -> list[str]:
    """Ledger keys a `/migrate plan <env> pending` takes, in the tool's order: what the tool's next deploy would apply
    (pending and out-of-order ones). SourceError when the tool itself would refuse: a Prisma failed row (P3009),
    with the exact command that unblocks it."""
    failed = report.by_state(MigrationState.FAILED)
    if failed:
        names = [m.ledger_name or _label(m.version, m.name) for m in failed]
        raise SourceError(
            f"{environment} has a failed migration ({', '.join(names)}) that `prisma migrate deploy` would refuse too "
            f"(P3009); once the database holds none of it, run "
            f"{' and '.join(f'`{resolve_command(n)}`' for n in names)} against {environment} (or `--applied` if it "
            "was finished by hand), then plan again", code="failed-migration-blocks")
    return [m.ledger_name or m.version for m in report.migrations
            if m.state in (MigrationState.PENDING, MigrationState.OUT_OF_ORDER)]


def _label(version: str, name: str) -> str:
    return f"{version}_{name}" if name else version


def applied_after(report: StatusReport) -> dict[str, tuple[str, ...]]:
    """For each out-of-order migration (by version): the applied migrations that sort after it, oldest first.

    >>> applied_after(compute_status(snapshot, ledger))
    {'20240215000000': ('20240301000000_add_orders',)}
    """
    out: dict[str, tuple[str, ...]] = {}
    later: list[str] = []  # applied after the one at hand, newest first
    for m in reversed(report.migrations):  # the tool's order (rows missing locally come last and do not count)
        if m.state in (MigrationState.APPLIED, MigrationState.MODIFIED):
            later.append(_label(m.version, m.name))
        elif m.state == MigrationState.OUT_OF_ORDER:
            out[m.version] = tuple(reversed(later))
    return out


def is_clean(report: StatusReport) -> bool:
    """True when every migration is applied and unchanged."""
    return all(m.state == MigrationState.APPLIED for m in report.migrations)


def environment_status(config: GuardianConfig, env_name: str, snapshot: SourceSnapshot) -> tuple[TargetInfo, StatusReport]:
    """Connect to one environment, read its ledgers (read-only) and compute the status."""
    env = config.environment(env_name)
    url = env.database_url()
    with connect_target(url, env_name) as conn:
        info = target_info(conn, env_name)
        with target_errors(env_name, url):
            ledger = read_ledger(conn, config.project.layout)
    return info, compute_status(snapshot, ledger)


def status_json(name: str, info: TargetInfo, report: StatusReport) -> dict:
    return {
        "name": name,
        "target": {"host": info.host, "database": info.database, "server_version": info.server_version},
        "layout": report.layout,
        "commit": report.commit,
        "migrations": [
            {"version": m.version, "name": m.name, "state": m.state.value, "sha256": m.sha256,
             "applied_at": m.applied_at.isoformat() if m.applied_at else None,
             **({"detail": m.detail} if m.detail else {})}
            for m in report.migrations
        ],
        "summary": report.summary,
        **({"skipped": list(report.skipped)} if report.skipped else {}),
    }


def render_text(name: str, info: TargetInfo, report: StatusReport) -> str:
    head = (f"{name}: {info.host}/{info.database} (PostgreSQL {info.server_version}), {report.layout} files at "
            f"{(report.commit or 'working tree')[:12]}")
    width = max([len(m.version) for m in report.migrations] + [7])
    nwidth = min(48, max([len(m.name) for m in report.migrations] + [4]))
    lines = [head, f"  {'VERSION':<{width}}  {'NAME':<{nwidth}}  {'STATE':<15}  APPLIED AT"]
    for m in report.migrations:
        when = m.applied_at.strftime("%Y-%m-%d %H:%M:%S") if m.applied_at else "-"
        lines.append(f"  {m.version:<{width}}  {m.name[:nwidth]:<{nwidth}}  {m.state.value:<15}  {when}")
        if m.detail and m.state in _PROBLEMS:
            lines.append(f"      {m.detail.splitlines()[0][:200]}")
    parts = [f"{v} {k.replace('_', ' ')}" for k, v in report.summary.items() if v and k != "total"]
    lines.append("  summary: " + (", ".join(parts) or "no migrations"))
    lines.extend(f"  warning: {line}" for line in report.skipped)
    return "\n".join(lines)


FleetStatus = Callable[[GuardianConfig, str, SourceSnapshot], tuple[dict, str, bool]]


def run_status_command(config: GuardianConfig, args: argparse.Namespace, fleet: FleetStatus | None = None) -> int:
    """`guardian status [ENV] [--format json] [--ref R]`: 0 when all is applied and unchanged, else 1. ``fleet``
    reports a fleet environment per target (bot.fleet.fleet_status)."""
    names = [args.env] if getattr(args, "env", None) else sorted(config.environments)
    if not names:
        raise GuardianError("no environments are configured; add [environments.<name>] to guardian.toml",
                            code="no-environments")
    for name in names:
        config.environment(name)  # unknown names fail before any connection
    snapshot = load_snapshot(config.project, ref=getattr(args, "ref", None))
    out, texts, clean = [], [], True
    for name in names:
        try:
            if fleet is not None and config.environment(name).fleet is not None:
                doc, text, ok = fleet(config, name, snapshot)
                out.append(doc)
                texts.append(text)
                clean = clean and ok
                continue
            info, report = environment_status(config, name, snapshot)
        except GuardianError as exc:
            clean = False
            out.append({"name": name, "error": {"code": exc.code, "message": exc.message}})
            texts.append(f"{name}: ERROR [{exc.code}] {exc.message}")
            continue
        clean = clean and is_clean(report)
        out.append(status_json(name, info, report))
        texts.append(render_text(name, info, report))
    if getattr(args, "format", "text") == "json":
        print(json.dumps({"environments": out}, indent=2))
    else:
        print("\n\n".join(texts))
    return 0 if clean else 1
