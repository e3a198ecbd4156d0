"""Two `guardian worker` processes share one fleet rollout: per_server holds across them (sampled from
pg_stat_activity), and one SIGKILLed mid-rollout loses nothing: every tenant's ledger holds each migration exactly
once, and the survivor's reconciler resumes what the dead one held."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from rq.exceptions import NoSuchJobError
from rq.job import Job

from fleet_rig import fleet_toml, make_schemas
from test_flow_fleet_rollout import plan_and_approve, targets
from workers.enqueue import deliver

ROOT = Path(__file__).resolve().parents[2]
WORKER = "import sys; from bot.cli import main; sys.exit(main(['worker']))"
M1 = ("20240101000000_add_plan", "ALTER TABLE accounts ADD COLUMN plan text;\nSELECT pg_sleep(0.15);\n")
M2 = ("20240201000000_index_name", "CREATE INDEX accounts_name_idx ON accounts (name);")


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _kill(worker: subprocess.Popen) -> None:
    """SIGKILL a worker and its work horses, as when a machine dies."""
    horses = _children(worker.pid)
    os.killpg(worker.pid, signal.SIGKILL)
    for pid in horses:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    worker.wait(timeout=10)


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.mark.parametrize("harness", [("prisma", fleet_toml(parallel=6, per_server=2))], indirect=True)
def test_two_workers_share_a_rollout_under_per_server_and_survive_a_kill(harness, make_database, monkeypatch) -> None:
    url = make_database(prefix="gt_fleet_tenants")
    monkeypatch.setenv("GT_TENANTS_URL", url)
    schemas = make_schemas(url, 100)
    harness.add_migration(*M1)
    harness.add_migration(*M2)
    rid = plan_and_approve(harness)
    deliver(harness.store, harness.redis)
    env = {**os.environ, "DATABASE_URL": harness.settings.database_url.get_secret_value(),
           "REDIS_URL": harness.settings.redis_url.get_secret_value(),
           "GUARDIAN_CONFIG": str(harness.settings.guardian_config),
           "SLACK_BOT_TOKEN": harness.settings.slack_bot_token.get_secret_value(),
           "SLACK_API_URL": harness.settings.slack_api_url, "GUARDIAN_RECONCILE_EVERY_S": "1"}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER], cwd=ROOT, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:  # concurrent applies on the one server, as PostgreSQL sees them
        with psycopg.connect(url, autocommit=True) as conn:
            while not stop.is_set():
                samples.append(conn.execute(  # every fleet apply session, whatever its state, in THIS database:
                    # another test session on the same server (request 1 too, the same tenant names) has sessions
                    # of the same names in its own tenants database
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s "
                    "AND datname = current_database()", (f"guardian-req{rid}-t%",)).fetchone()[0])
                time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        _wait_for(lambda: sum(t.state == "succeeded" for t in targets(harness, rid).values()) >= 25, 120,
                  "25 targets done")
        _kill(workers[0])  # mid-rollout: it holds running targets
        held = [t for t in targets(harness, rid).values() if t.state in ("queued", "running")]
        _wait_for(lambda: harness.store.get_request(rid).status.value == "succeeded", 180,
                  "the survivor to finish the rollout")
    finally:
        stop.set()
        sampler.join(timeout=5)
        for w in workers:
            if w.poll() is None:
                _kill(w)
    rows = targets(harness, rid)
    assert all(t.state == "succeeded" for t in rows.values())
    with psycopg.connect(url, autocommit=True) as conn:
        for schema in schemas:  # each migration exactly once in each tenant's own ledger, and its effect there
            counts = dict(conn.execute(
                f'SELECT migration_name, count(*) FROM "{schema}"._prisma_migrations WHERE finished_at IS NOT NULL '
                "AND rolled_back_at IS NULL GROUP BY 1").fetchall())
            assert counts == {M1[0]: 1, M2[0]: 1}, (schema, counts)
            assert conn.execute("SELECT to_regclass(%s)", (f"{schema}.accounts_name_idx",)).fetchone()[0]
    assert max(samples) <= 2, max(samples)  # per_server across both workers
    assert max(samples) == 2  # the cap was reached: two applies ran at once, never three
    names = set()
    for t in rows.values():
        try:
            names.add(Job.fetch(t.job_id, connection=harness.redis).worker_name)
        except NoSuchJobError:
            pass
    assert len(names) >= 2  # both workers ran targets
    assert held, "the kill landed while targets were in flight"
