"""A transient loss of the bot's own database (DATABASE_URL) never changes an outcome: health-checked pool, retried calls."""
from __future__ import annotations

import threading
import time

import psycopg
import pytest
from psycopg import conninfo

from bot.errors import StoreError
from bot.models import RequestStatus
from bot.store import retry
from workers.pipeline import start_run


def _dbname(url: str) -> str:
    return conninfo.conninfo_to_dict(url)["dbname"]


def _cut(admin_url: str, dbname: str, *, block: bool) -> int:
    """Terminate every session on ``dbname`` (and, with block, refuse new ones); returns how many were ended."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if block:
            conn.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
        return conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,)).fetchone()[0]


def _allow(admin_url: str, dbname: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')


@pytest.fixture
def outage(pg_admin_url: str, state_db_url: str):
    """Block the state database; whatever the test does, it is allowed again afterwards."""
    dbname = _dbname(state_db_url)

    def block_for(seconds: float) -> threading.Thread:
        _cut(pg_admin_url, dbname, block=True)
        thread = threading.Timer(seconds, _allow, (pg_admin_url, dbname))
        thread.start()
        return thread

    yield block_for
    _allow(pg_admin_url, dbname)


def test_a_pooled_connection_the_server_ended_is_replaced_not_handed_out(store, pg_admin_url, state_db_url):
    req = store.create_request("staging", "U1", [], source="adhoc")
    assert _cut(pg_admin_url, _dbname(state_db_url), block=False) >= 1  # the pool's idle session(s) are gone

    assert store.get_request(req.id).id == req.id
    assert store.transition(req.id, RequestStatus.ANALYZING, RequestStatus.CANCELLED, actor="U1").status \
        is RequestStatus.CANCELLED


def test_calls_wait_through_a_two_second_outage(store, outage):
    req = store.create_request("staging", "U1", [], source="adhoc")
    timer = outage(2.0)
    clock = time.monotonic()

    moved = store.transition(req.id, RequestStatus.ANALYZING, RequestStatus.CANCELLED, actor="U1")

    assert time.monotonic() - clock >= 1.0  # it really waited for the database to come back
    timer.join()
    assert moved.status is RequestStatus.CANCELLED
    assert [e.kind for e in store.list_events(request_id=req.id)] == ["request.created", "request.cancelled"]


def test_an_outage_longer_than_the_budget_is_a_store_error_that_says_so(store, outage, monkeypatch):
    req = store.create_request("staging", "U1", [], source="adhoc")
    monkeypatch.setattr(retry, "RETRY_BUDGET_S", 1.0)
    timer = outage(4.0)

    with pytest.raises(StoreError) as caught:
        store.get_request(req.id)

    assert caught.value.code == "state-db-unavailable"
    assert "DATABASE_URL" in str(caught.value) and "then retry" in str(caught.value)
    timer.join()
    monkeypatch.setattr(retry, "RETRY_BUDGET_S", 15.0)  # the full budget covers the pool's reconnect backoff
    assert store.get_request(req.id).status is RequestStatus.ANALYZING


def test_a_commit_whose_answer_was_lost_is_read_back_not_repeated(store):
    """The connection drops after COMMIT reached the server: txid_status says committed, the result is read back."""
    from bot.store import Store

    class LostAtCommit(Store):
        def transition(self, *args, **kwargs):
            moved = super().transition(*args, **kwargs)  # committed
            with self._tx() as conn:  # the transaction id of a committed write, as _tx notes it before COMMIT
                txid = conn.execute("SELECT txid_current() AS x").fetchone()["x"]
            call = retry.current_call()
            call.committed, call.committing, call.committing_txid = 0, True, txid
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    flaky = LostAtCommit(store._pool.conninfo)
    try:
        req = flaky.create_request("staging", "U1", [], source="adhoc")
        moved = flaky.transition(req.id, RequestStatus.ANALYZING, RequestStatus.CANCELLED, actor="U1")
    finally:
        flaky.close()
    assert moved.status is RequestStatus.CANCELLED
    assert [e.kind for e in store.list_events(request_id=req.id)] == ["request.created", "request.cancelled"]


def test_a_statement_error_is_not_retried(store):
    with pytest.raises(psycopg.errors.UndefinedTable):
        store._by_id("no_such_table", 1, object, "thing")  # type: ignore[arg-type]


def test_two_second_state_db_loss_after_the_target_committed_ends_succeeded(make_pipeline, pg_admin_url, outage):
    """The issue's case: the migration commits, then DATABASE_URL is gone for 2 s while the step result is written."""
    p = make_pipeline()
    state = _dbname(p.settings_env["DATABASE_URL"])
    # The file's last statements cut the state database; ALTER DATABASE takes effect when the file commits.
    cut = (f'ALTER DATABASE "{state}" ALLOW_CONNECTIONS false;\n'
           f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{state}';\n")
    req = p.request([("001_table", "CREATE TABLE lossy (id int);\n" + cut)])
    start_run(p.rt, req.id)

    def reopen() -> None:  # two seconds after the target committed, the state database comes back
        with p.target() as conn:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not conn.execute("SELECT to_regclass('lossy')").fetchone()[0]:
                time.sleep(0.02)
        time.sleep(2.0)
        _allow(pg_admin_url, state)

    opener = threading.Thread(target=reopen)
    opener.start()
    try:
        p.work()
    finally:
        opener.join()

    done = p.store.get_request(req.id)
    assert done.status is RequestStatus.SUCCEEDED, (done.status, done.error)
    assert [(s.step, s.status) for s in p.store.list_steps(req.id)] == [
        ("backup", "succeeded"), ("apply", "succeeded"), ("verify", "succeeded")]
    assert p.store.find_incident(request_id=req.id) is None


def test_a_result_lost_for_longer_than_the_budget_is_resumed_from_the_target_ledger(make_pipeline, pg_admin_url,
                                                                                     outage, monkeypatch):
    """The state database stays away past the store's budget after the target committed: the apply's result is
    never written, and the reconciler reads the target's ledger and goes on to verify instead of failing it."""
    from workers.reconciler import reconcile

    p = make_pipeline()
    state = _dbname(p.settings_env["DATABASE_URL"])
    cut = (f'ALTER DATABASE "{state}" ALLOW_CONNECTIONS false;\n'
           f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{state}';\n")
    req = p.request([("001_one", "CREATE TABLE lost_one (id int);"), ("002_two", "CREATE TABLE lost_two (id int);\n" + cut)])
    start_run(p.rt, req.id)
    monkeypatch.setattr(retry, "RETRY_BUDGET_S", 1.0)

    def reopen() -> None:
        with p.target() as conn:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not conn.execute("SELECT to_regclass('lost_two')").fetchone()[0]:
                time.sleep(0.02)
        time.sleep(3.0)
        _allow(pg_admin_url, state)

    opener = threading.Thread(target=reopen)
    opener.start()
    try:
        p.work()  # the apply job cannot record its result and ends
    finally:
        opener.join()
    monkeypatch.setattr(retry, "RETRY_BUDGET_S", 15.0)
    assert p.store.get_request(req.id).status is RequestStatus.APPLYING

    actions = reconcile(p.rt, redis=p.redis, min_age_s=0)

    assert len(actions) == 1 and "the target's ledger says so" in actions[0], actions
    p.work()
    done = p.store.get_request(req.id)
    assert done.status is RequestStatus.SUCCEEDED, (done.status, done.error)
    assert p.store.find_incident(request_id=req.id) is None
    assert [s.step for s in p.store.list_steps(req.id) if s.status == "succeeded"] == ["backup", "apply", "verify"]
