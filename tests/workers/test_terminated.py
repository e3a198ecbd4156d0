"""The target session terminated under the apply (pg_terminate_backend, a restart, a failover) is told as infrastructure, with the truth."""
from __future__ import annotations

import threading
import time

import psycopg
import pytest

from bot.errors import TargetError
from bot.models import DbState, RequestStatus
from bot.pg.connect import classify, session_lost
from workers.pipeline import start_run
from workers.watchdog import application_name, lock_holder, target_lock_key


def _terminate_when_sleeping(p, name: str) -> threading.Thread:
    """A thread that pg_terminate_backend's the target's session ``name`` once it sits in pg_sleep."""

    def kill() -> None:
        with p.target() as conn:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                pid = p.session(conn, name, running="pg_sleep")
                if pid:
                    conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    return
                time.sleep(0.02)

    thread = threading.Thread(target=kill)
    thread.start()
    return thread


@pytest.mark.parametrize("files, db_state, committed", [
    ([("001_slow", "CREATE TABLE term_a (id int);\nSELECT pg_sleep(30);\n")], DbState.UNTOUCHED, 0),
    ([("001_fast", "CREATE TABLE term_b (id int);"),
      ("002_slow", "CREATE TABLE term_c (id int);\nSELECT pg_sleep(30);\n")], DbState.PARTIALLY_APPLIED, 1),
])
def test_a_terminated_apply_session_is_infrastructure_not_the_files_fault(make_pipeline, files, db_state, committed):
    p = make_pipeline()
    req = p.request(files)
    start_run(p.rt, req.id)
    killer = _terminate_when_sleeping(p, application_name(req.id))
    try:
        p.work()
    finally:
        killer.join()

    failed = p.store.get_request(req.id)
    assert failed.status is RequestStatus.FAILED and failed.failed_step == "apply"
    assert failed.db_state is db_state
    assert "[target-session-lost]" in failed.error
    assert "terminated (by an administrator, a restart or a failover) while applying" in failed.error
    assert f"{committed} of {len(files)} file(s) committed" in failed.error
    assert "check the server, then Retry" in failed.error
    assert "fix the file" not in failed.error
    assert files[-1][0] in failed.error  # names the file that was running
    with p.target() as conn:  # the slow file rolled back; what committed before it stayed, with its ledger row
        assert conn.execute("SELECT to_regclass('term_a') IS NULL AND to_regclass('term_c') IS NULL").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM guardian.schema_history").fetchone()[0] == committed
        assert lock_holder(conn, target_lock_key("staging")) is None
    assert any("terminated" in t and "check the server" in t for t in p.thread_texts(failed))
    assert p.store.find_incident(request_id=req.id) is not None

    after = p.request([("009_after", "CREATE TABLE term_after (id int);")])
    start_run(p.rt, after.id)
    p.work()
    assert p.store.get_request(after.id).status is RequestStatus.SUCCEEDED


def test_a_terminated_verify_session_is_infrastructure(make_pipeline):
    p = make_pipeline()
    req = p.request([("001_t", "CREATE TABLE term_v (id int);")], verify_sql={"001_t": "SELECT true FROM pg_sleep(30)"})
    start_run(p.rt, req.id)

    killer = _terminate_when_sleeping(p, application_name(req.id, "verify"))
    try:
        p.work()
    finally:
        killer.join()
    failed = p.store.get_request(req.id)
    assert failed.status is RequestStatus.FAILED and failed.db_state is DbState.APPLIED_UNVERIFIED
    assert failed.failed_step == "verify" and "[target-session-lost]" in failed.error and "check the server" in failed.error


def test_termination_errors_classify_as_a_lost_session(target_db_url):
    with psycopg.connect(target_db_url, autocommit=True) as victim, psycopg.connect(target_db_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (victim.info.backend_pid,))
        with pytest.raises(psycopg.OperationalError) as caught:
            victim.execute("SELECT 1")
    assert session_lost(caught.value)
    error = classify(caught.value, "staging", target_db_url)
    assert isinstance(error, TargetError) and error.code == "target-session-lost"
    assert "check the server, then retry" in str(error) and "staging" in str(error)
    assert not session_lost(psycopg.errors.UndefinedTable("relation does not exist"))
    assert not session_lost(psycopg.errors.LockNotAvailable("lock timeout"))
