"""A worker SIGKILLed between the parts of a mixed Prisma file (a CONCURRENTLY part committed) leaves what
`prisma migrate deploy` leaves when it dies mid-script: a started row, not finished. Prisma and Guardian both read
it as P3009 and refuse to apply again until it is resolved (issue 21)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from bot.models import DbState, RequestStatus
from bot.sources.ledgers import PRISMA_DDL
from workers.pipeline import start_run
from workers.reconciler import reconcile

from test_workers_recovery import FORKED_WORKER, ROOT, _children, _wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sources"))
from cli_oracle import prisma_deploy_plan, prisma_resolve_rolled_back, prisma_rows  # noqa: E402

NAME = "20240101000000_index_then_slow"
MIXED = "CREATE INDEX CONCURRENTLY crash_i ON crash_t (id);\nSELECT pg_sleep(30);\n"


def test_sigkill_between_parts_reads_as_p3009_for_prisma_and_guardian(make_pipeline):
    p = make_pipeline(layout="prisma")
    with p.target() as conn:
        conn.execute("CREATE TABLE crash_t (id int)")
        conn.execute(PRISMA_DDL)  # a baselined database
    req = p.request([(NAME, MIXED)])
    start_run(p.rt, req.id)
    env = {**os.environ, **p.settings_env}
    worker = subprocess.Popen([sys.executable, "-c", FORKED_WORKER], cwd=ROOT, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with p.target() as conn:
            _wait_for(lambda: p.session(conn, f"guardian-req{req.id}", running="pg_sleep"), 30,
                      "the apply to reach its second part")
    finally:
        horses = _children(worker.pid)
        os.killpg(worker.pid, signal.SIGKILL)
        for pid in horses:
            os.killpg(pid, signal.SIGKILL)
        worker.wait(timeout=10)
    with p.target() as conn:
        _wait_for(lambda: not p.session(conn, f"guardian-req{req.id}"), 10, "the orphaned query to die")
    reconcile(p.rt, redis=p.redis, min_age_s=0)
    failed = p.store.get_request(req.id)
    assert failed.status is RequestStatus.FAILED and failed.db_state is DbState.PARTIALLY_APPLIED

    with p.target() as conn:
        assert conn.execute("SELECT to_regclass('crash_i')").fetchone()[0] == "crash_i"  # the first part committed
        rows = prisma_rows(conn)
    # what record_migration_started wrote, and nothing after it: Prisma's own crash trace
    assert [(r["migration_name"], r["finished_at"], r["rolled_back_at"], r["logs"]) for r in rows] == [
        (NAME, None, None, None)]
    assert prisma_deploy_plan(rows, [NAME]) == ("P3009", [NAME])

    again = p.request([(NAME, MIXED.replace("SELECT pg_sleep(30)", "SELECT 1"))])
    start_run(p.rt, again.id)
    p.work()
    refused = p.store.get_request(again.id)
    assert refused.status is RequestStatus.FAILED and "P3009" in refused.error
    assert f'npx prisma migrate resolve --rolled-back "{NAME}"' in refused.error

    with p.target() as conn:  # the team undoes the committed part and resolves, as the message says
        conn.execute("DROP INDEX crash_i")
        prisma_resolve_rolled_back(conn, NAME)
    last = p.request([(NAME, MIXED.replace("SELECT pg_sleep(30)", "SELECT 1"))])
    start_run(p.rt, last.id)
    p.work()
    assert p.store.get_request(last.id).status is RequestStatus.SUCCEEDED, p.store.get_request(last.id).error
    with p.target() as conn:
        assert prisma_deploy_plan(prisma_rows(conn), [NAME]) == ("ok", [])
