"""Verify step: schema diff against the backup step's snapshot, invalid indexes, NOT VALID constraints, verify SQL, RLS, counts.

Usage (an RQ job; the apply step enqueues it)::

    enqueue_step(redis, "verify", request_id)

Fails (applied_unverified) on: a verify query that errors or returns false in its first column, an
RLS probe whose expect_rows no longer holds (or errors), or an invalid index the run left behind.
NOT VALID constraints, RLS result changes and row-count changes are reported, not failed.
"""
from __future__ import annotations

import logging
from typing import Any

import psycopg

from bot.errors import GuardianError, TargetError
from bot.models import DbState, Request, RequestStatus
from bot.pg.connect import connect_target
from bot.pg.diff import diff_snapshots
from bot.pg.snapshot import SchemaSnapshot, take_snapshot
from workers import fleet, pipeline, report
from workers.checks import compare_probes, rls_probe_results, row_counts, run_verify_sql, verify_section
from workers.runtime import runtime
from workers.watchdog import application_name

log = logging.getLogger(__name__)


class VerifyFailed(GuardianError):
    code = "verify-failed"


def run(request_id: int) -> None:
    """The RQ job: applying -> verifying, check the target, then on to what follows verify in the run's table
    (today: the run is finished, verifying -> succeeded), or fail applied_unverified."""
    rt = runtime()
    step = pipeline.begin(rt, request_id, "verify")
    if step is None:
        return
    secret = ""
    try:
        env = rt.config.environment(step.request.environment)
        if env.fleet is not None:  # each target was verified by its own job
            result = fleet.verify_result(rt, step.request)
        else:
            secret = env.database_url().get_secret_value()
            result = check(rt, step.request, env, secret)
    except (GuardianError, psycopg.Error) as exc:
        pipeline.fail(rt, request_id, expected=RequestStatus.VERIFYING, failed_step="verify",
                      db_state=DbState.APPLIED_UNVERIFIED, error=pipeline.step_error(exc, step.request.environment, secret),
                      step_id=step.step.id)
        return
    report.post(rt, step.request, rt.notifier.verify_report(request_id, not result["failures"], result["diff"],
                                                       result["warnings"], result["failures"]))
    if result["failures"]:
        error = VerifyFailed("verification failed: " + "; ".join(result["failures"])[:1500]
                             + "; the migration is applied: inspect the thread and roll back or fix forward")
        pipeline.fail(rt, request_id, expected=RequestStatus.VERIFYING, failed_step="verify",
                      db_state=DbState.APPLIED_UNVERIFIED, error=error, step_id=step.step.id, outcome=result)
        return
    pipeline.succeed(step, result, [f"{len(result['diff'])} schema change(s), {len(result['warnings'])} warning(s)"])


def _before(rt: Any, request_id: int) -> dict[str, Any]:
    done = [s for s in rt.store.list_steps(request_id) if s.step == "backup" and s.status == "succeeded"]
    return done[-1].outcome if done else {}


def check(rt: Any, request: Request, env: Any, url: str) -> dict[str, Any]:
    """Everything verify looks at; returns {"diff", "warnings", "failures", …} (failures empty when verified)."""
    before = _before(rt, request.id)
    failures: list[str] = []
    warnings: list[str] = []
    with connect_target(url, env.name, application_name=application_name(request.id, "verify")) as conn:
        after = take_snapshot(conn, env.name)
        for ref in request.migrations:
            script = ref.verify_sql or verify_section(ref.sql)
            if script:
                failures += [f"{ref.name}: {f}" for f in run_verify_sql(conn, script, env.statement_timeout)]
        probes = rls_probe_results(conn, env)
        counts = row_counts(conn, list(before.get("row_counts", {})))
        if conn.broken:  # a check swallowed the error of a session cut from outside: not the migration's failure
            raise TargetError(
                f"environment {env.name!r}: the verify session was terminated (by an administrator, a restart or a "
                "failover) before verify finished; the migrations are applied but not verified, and nothing points "
                "at them: check the server, then verify by hand or retry", code="target-session-lost")
    diff: list[str] = []
    old_indexes: set[str] = set()
    if before.get("snapshot"):
        old = SchemaSnapshot.model_validate(before["snapshot"])
        diff = list(diff_snapshots(old, after).lines)
        old_indexes = {f"{i.schema_name}.{i.name}" for i in old.indexes if not i.valid}
    else:
        warnings.append("no snapshot from the backup step: the schema diff is not available")
    for index in after.indexes:
        if not index.valid:
            name = f"{index.schema_name}.{index.name}"
            if name in old_indexes:
                warnings.append(f"index {name} is invalid (it was before this run too)")
            else:
                failures.append(f"index {name} is invalid: drop it (DROP INDEX CONCURRENTLY) and build it again")
    for constraint in after.constraints:
        if not constraint.validated:
            warnings.append(f"constraint {constraint.schema_name}.{constraint.table}.{constraint.name} is NOT VALID: "
                            "run ALTER TABLE … VALIDATE CONSTRAINT when ready")
    probe_failures, probe_changes = compare_probes(before.get("rls", []), probes)
    failures += probe_failures
    warnings += probe_changes
    for table, count in counts.items():
        prior = before.get("row_counts", {}).get(table)
        if prior is not None and prior != count:
            warnings.append(f"rows in {table}: {prior} -> {count}")
    log.info("request %s: verify found %s change(s), %s warning(s), %s failure(s)", request.id, len(diff),
             len(warnings), len(failures))
    return {"diff": diff, "warnings": warnings, "failures": failures, "rls": probes, "row_counts": counts,
            "fingerprint": after.fingerprint()}
