"""The analysis half of the flow: which migrations a request runs, their risk, and the target's identity.

Usage::

    result = analyse_request(config, request)      # reads git + the target, runs the risk engine
    reason = current_binding(config, request)      # None while files, commit and target are unchanged
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from bot.config import EnvironmentConfig, GuardianConfig
from bot.errors import ConfigError, SourceError
from bot.models import Backup, Request
from bot.pg.appqueries import AppQueryReport
from bot.pg.connect import connect_target, target_errors, target_info
from bot.pg.copy import Copy, CopyRegistry
from bot.pg.introspect import gather_facts
from bot.pg.plan import applied_context
from bot.pg.rehearsal import Rehearsal
from bot.analysis_budget import analyse_within
from bot.risk.models import Report, Severity
from bot.risk.rules.repository import attach_out_of_order
from bot.sources.layouts import load_snapshot
from bot.sources.ledgers import baseline_error, prisma_schema_not_empty, read_ledger
from bot.sources.models import SourceSnapshot
from bot.sources.status import applied_after, compute_status, plannable
from bot.store import NewMigration, Store

log = logging.getLogger(__name__)
_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


class AnalysisResult(BaseModel):
    model_config = ConfigDict(frozen=True)
    migrations: list[NewMigration]
    commit: str | None
    risk: str
    reasons: tuple[str, ...]
    fingerprint: str
    target: dict[str, Any]


def fingerprint(host: str | None, port: int | None, database: str, system_identifier: str | None) -> str:
    """A short, stable identity of a target database (not a secret, never the URL)."""
    material = f"{host or 'socket'}:{port or ''}/{database}#{system_identifier or ''}"
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def _target_identity(conn, environment: str) -> tuple[str, dict[str, Any]]:
    info = target_info(conn, environment)
    with target_errors(environment):
        row = conn.execute(
            "SELECT d.oid::text FROM pg_database d WHERE d.datname = current_database()").fetchone()
        try:
            sysid = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()[0]
        except Exception:  # noqa: BLE001 - pg_control_system needs a privilege some roles lack
            conn.rollback() if not conn.autocommit else None
            sysid = None
    target = {"host": info.host, "port": info.port, "database": info.database,
              "server_version": info.server_version, "user": info.user}
    return fingerprint(info.host, info.port, f"{info.database}@{row[0]}", sysid), target


def _selected(snapshot: SourceSnapshot, selection: dict[str, Any], pending: set[str]) -> list:
    names = selection.get("migrations") or []
    if not names:
        return [m for m in snapshot.migrations if m.ledger_name in pending]
    chosen = []
    for name in names:
        m = next((x for x in snapshot.migrations if name in (x.version, x.ledger_name, f"{x.version}_{x.name}")), None)
        if m is None:
            raise SourceError(
                f"no migration named {name!r} at {snapshot.ref or 'the working tree'}"
                f" ({(snapshot.commit or '')[:10]}); `/migrate status` lists them", code="unknown-migration")
        chosen.append(m)
    return chosen


def analyse_request(config: GuardianConfig, request: Request, store: Store | None = None) -> AnalysisResult:
    """``store`` (optional) gives a fleet's estimate its environment's past per-target durations."""
    env = config.environment(request.environment)
    if env.fleet is not None:
        return analyse_fleet(config, request, store)
    url = env.database_url()
    with connect_target(url, env.name, application_name=f"guardian-req{request.id}-analyze") as conn:
        fp, target = _target_identity(conn, env.name)
        facts = gather_facts(conn, env.name)
        late: dict[str, tuple[str, ...]] = {}  # out-of-order version -> applied migrations that sort after it
        if request.source in ("adhoc", "rollback"):  # the SQL travels with the request
            commit = request.git_commit if request.source == "rollback" else None
            news = [NewMigration(**m.model_dump(include={"name", "version", "ledger_name", "path", "sql"}))
                    for m in request.migrations]
        else:
            snapshot = load_snapshot(config.project, request.selection.get("ref") or request.git_ref)
            ledger = read_ledger(conn, config.project.layout)
            if config.project.layout == "prisma" and not ledger.exists and snapshot.migrations:
                tables = prisma_schema_not_empty(conn)  # Prisma's P3005: no history on a non-empty schema
                if tables:
                    raise baseline_error(tables, snapshot.migrations[0].ledger_name)
            status = compute_status(snapshot, ledger)
            pending = set(plannable(status, env.name))  # refuses only what the tool refuses (P3009)
            late = applied_after(status)
            commit = snapshot.commit
            news = [NewMigration(name=m.ledger_name if config.project.layout == "prisma" else f"{m.version}_{m.name}",
                                 version=m.version, ledger_name=m.ledger_name, path=m.path, sql=m.sql,
                                 down_sql=m.down_sql, verify_sql=m.verify_sql)
                    for m in _selected(snapshot, request.selection, pending)]
    analysed, worst, reasons = _judge(config, request, news, facts, late)
    return AnalysisResult(migrations=analysed, commit=commit, risk=worst, reasons=tuple(reasons[:20]),
                          fingerprint=fp, target=target)


def _judge(config: GuardianConfig, request: Request, news: list[NewMigration], facts: Any,
           late: dict[str, tuple[str, ...]]) -> tuple[list[NewMigration], str, list[str]]:
    """Each file's risk report in the target's context: (the files with it, the worst risk, the reasons)."""
    context = applied_context(facts, config)
    analysed, reasons, worst = [], [], "low"
    # In a child process under [analysis]'s budget: a crafted file cannot hold this worker up
    reports = analyse_within([m.sql for m in news], context, config.analysis, request.id)
    for m, report in zip(news, reports):
        if m.version in late:
            report = attach_out_of_order(report, m.sql, late[m.version], context)
        risk = report.risk.value if isinstance(report.risk, Severity) else str(report.risk)
        worst = max(worst, risk, key=_RANK.__getitem__)
        reasons += [f"{m.name}: {r}" for r in report.reasons]
        analysed.append(m.model_copy(update={"risk": risk, "report": report.to_json()}))
    return analysed, worst, reasons


def analyse_fleet(config: GuardianConfig, request: Request, store: Store | None = None) -> AnalysisResult:
    """A fleet environment's plan: every target discovered and grouped by its ledger state; the files any pending
    target lacks, each judged once against the tables of the largest pending target. The fingerprint is the target
    set's (ids and states), so an approval covers exactly the targets it was shown."""
    from bot.fleet import FleetPlan, FleetTarget, discover, fleet_summary, open_target

    env = config.environment(request.environment)
    layout = config.project.layout
    if request.source == "rollback":  # an aborted rollout's done targets, chosen when it was aborted
        plan = FleetPlan(environment=env.name, targets=tuple(
            FleetTarget(**t, state="pending") for t in request.selection.get("fleet_targets") or []))
        news = [NewMigration(**m.model_dump(include={"name", "version", "ledger_name", "path", "sql"}))
                for m in request.migrations]
        wanted, commit = {m.ledger_name or m.name for m in news}, request.git_commit
    elif request.source != "repo":
        raise SourceError("a fleet rolls out files from the repository; pasted SQL cannot be planned for a fleet",
                          code="fleet-adhoc")
    else:
        snapshot = load_snapshot(config.project, request.selection.get("ref") or request.git_ref)
        plan = discover(env, layout, snapshot)
        pending = {n for t in plan.pending() for n in t.pending}
        wanted = {m.ledger_name for m in _selected(snapshot, request.selection, pending)}
        news = [NewMigration(name=m.ledger_name if layout == "prisma" else f"{m.version}_{m.name}", version=m.version,
                             ledger_name=m.ledger_name, path=m.path, sql=m.sql, down_sql=m.down_sql,
                             verify_sql=m.verify_sql) for m in snapshot.migrations if m.ledger_name in wanted]
        commit = snapshot.commit
    past = store.past_target_durations(env.name) if store is not None and request.source != "rollback" else None
    summary = fleet_summary(plan, env.fleet, wanted, past)
    target = {"host": "fleet", "database": f"{env.name}: {len(plan.targets)} targets", "fleet": summary}
    if not news:
        return AnalysisResult(migrations=[], commit=commit, risk="low", reasons=(), fingerprint=plan.fingerprint(),
                              target=target)
    largest = max(plan.pending(), key=lambda t: t.size_bytes)
    others = tuple(t.id for t in plan.targets if t.kind == "schema" and t.id != largest.id)
    with open_target(env, largest, application_name=f"guardian-req{request.id}-analyze") as conn:
        facts = gather_facts(conn, f"{env.name}/{largest.id}", exclude_schemas=others)
        target["server_version"] = str(conn.info.server_version // 10000)
    analysed, worst, reasons = _judge(config, request, news, facts, {})
    summary["judged_on"] = largest.id
    return AnalysisResult(migrations=analysed, commit=commit, risk=worst, reasons=tuple(reasons[:20]),
                          fingerprint=plan.fingerprint(), target=target)


def current_binding(config: GuardianConfig, request: Request) -> str | None:
    """Why the request no longer matches what is on disk or which target it points at, or None."""
    env = config.environment(request.environment)
    if request.source == "repo":
        try:
            snapshot = load_snapshot(config.project, request.selection.get("ref") or request.git_ref)
        except SourceError as exc:
            return f"the migrations can no longer be read ({exc.message})"
        if snapshot.commit != request.git_commit:
            changed = []
            for m in request.migrations:
                now = snapshot.get(m.ledger_name or m.name)
                if now is None:
                    changed.append(f"{m.name} was removed")
                elif now.sha256 != m.sha256:
                    changed.append(f"{m.name} was edited (sha256 {m.sha256[:10]} → {now.sha256[:10]})")
            moved = f"the branch moved ({(request.git_commit or '-')[:10]} → {(snapshot.commit or '-')[:10]})"
            return "; ".join(changed) if changed else moved
        if snapshot.commit is None:  # working tree: compare the files themselves
            for m in request.migrations:
                now = snapshot.get(m.ledger_name or m.name)
                if now is None or now.sha256 != m.sha256:
                    return f"{m.name} changed on disk"
    if env.fleet is not None:  # the approved target set runs as approved; what changed since is listed, not run
        return None
    with connect_target(env.database_url(), env.name, application_name=f"guardian-req{request.id}-check") as conn:
        fp, _ = _target_identity(conn, env.name)
    if request.target_fingerprint and fp != request.target_fingerprint:
        return "the target database changed (its fingerprint differs)"
    return None


class CopyRehearsal(BaseModel):
    """A request rehearsed on a copy: what ran (committed there), the copy, and the app's queries after it."""

    model_config = ConfigDict(frozen=True)

    rehearsal: Rehearsal
    copy_: Copy | None = None  # when it ran on a fresh copy
    app: AppQueryReport | None = None  # when the app's queries were checked (or why not: absent)

    def headline(self, env_name: str) -> str:
        from bot.pg.summary import rehearsal_headline

        return rehearsal_headline(self.rehearsal, self.copy_, self.app, env_name)

    def binding(self) -> dict[str, Any]:
        """What the approval binds (``Request.rehearsal``): the outcome that matters to a decision, its digest (in
        the preview's fingerprint) and the copy it ran on."""
        from bot.pg.summary import outcome_digest, rehearsal_outcome

        outcome = rehearsal_outcome(self.rehearsal, self.app)
        return {"digest": outcome_digest(outcome), "outcome": outcome,
                "copy": self.copy_.summary() if self.copy_ is not None else None}

    @property
    def failures(self) -> list[str]:
        """Why the request is critical: statements that failed on the data, app queries the migration breaks."""
        out = [f"rehearsal: {path} line {st.line}: {found.summary}"
               for path, st in self.rehearsal.data_failures for found in st.offending]
        return out + [f"rehearsal: app query breaks: {p.line}"[:300] for p in (self.app.broken if self.app else ())]


def rehearse_request(env: EnvironmentConfig, request: Request, backups: Sequence[Backup] = (),
                     registry: CopyRegistry | None = None) -> CopyRehearsal:
    """The request's SQL rehearsed: on a fresh copy of the target where the environment configures one
    ([environments.X.rehearsal]; committed there file by file as the apply runs them, the running app's queries
    from the target's pg_stat_statements PREPAREd on it before and after, the copy dropped afterwards), else on
    its rehearsal database in a transaction that is rolled back. ``registry`` (the store) records the copy while it
    lives, so the reconciler drops it if this worker dies."""
    from bot.pg.appqueries import check_app_queries, probe_app_queries, read_app_queries
    from bot.pg.copy import copy_of
    from bot.pg.rehearsal import rehearse

    reports = [Report.from_json(m.report) if m.report else None for m in request.migrations]
    files = [(m.name, m.sql) for m in request.migrations]
    app = f"guardian-req{request.id}-rehearsal"
    if env.rehearsal is not None:
        with copy_of(env, request.id, backups=backups, registry=registry) as copy:
            with connect_target(env.database_url(), env.name, application_name=app) as target:
                queries = read_app_queries(target)
            with connect_target(copy.url, f"{env.name} (copy)", application_name=app) as conn:
                before = probe_app_queries(conn, queries) if queries.queries else None
                result = rehearse(conn, files, lock_timeout=env.lock_timeout, statement_timeout=env.statement_timeout,
                                  reports=reports, commit=True)
                checked = (check_app_queries(conn, before) if before is not None else
                           AppQueryReport(checked=0, broken=(), unchecked=(), absent=queries.absent,
                                          message=queries.message))
        return CopyRehearsal(rehearsal=result, copy_=copy, app=checked)
    url = os.environ.get(env.rehearsal_database_url_env or "", "")
    if not url:
        raise ConfigError(f"environment {env.name!r}: variable {env.rehearsal_database_url_env} is not set",
                          code="missing-env")
    with connect_target(url, f"{env.name} (rehearsal)", application_name=app) as conn:
        return CopyRehearsal(rehearsal=rehearse(conn, files, lock_timeout=env.lock_timeout,
                                                statement_timeout=env.statement_timeout, reports=reports))
