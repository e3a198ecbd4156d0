"""Locks: lock_timeout with retries and the blocker named, sessions queued behind us reported, orphans terminated."""
from __future__ import annotations

import threading
import time

import psycopg

from bot.sources.ledgers import PRISMA_DDL
from bot.models import DbState, RequestStatus
from workers.pipeline import start_run
from workers.reconciler import reconcile
from workers.watchdog import lock_holder, target_lock_key


class AppTraffic:
    """An application session running short queries on a table and remembering its worst latency."""

    def __init__(self, url: str, query: str) -> None:
        self.url, self.query = url, query
        self.worst = 0.0
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "AppTraffic":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True, application_name="test-app") as conn:
            while not self._stop.is_set():
                start = time.monotonic()
                conn.execute(self.query).fetchall()
                self.worst = max(self.worst, time.monotonic() - start)
                self.count += 1
                time.sleep(0.02)


def test_lock_timeout_retries_name_the_blocker_and_fail_cleanly(make_pipeline):
    p = make_pipeline(lock_timeout="500ms", apply_retries=2)
    with p.target() as conn:
        conn.execute("CREATE TABLE hot (id bigint PRIMARY KEY, v int)")
        conn.execute("INSERT INTO hot SELECT g, g FROM generate_series(1, 1000) g")
    req = p.request([("001_add_column", "ALTER TABLE hot ADD COLUMN c int;")])
    blocker = psycopg.connect(p.target_url, application_name="test-blocker")
    blocker.execute("SELECT count(*) FROM hot").fetchone()  # an open transaction holding ACCESS SHARE on hot
    try:
        with AppTraffic(p.target_url, "SELECT v FROM hot WHERE id = 1") as app:
            start_run(p.rt, req.id)
            p.work()
    finally:
        blocker.rollback()
        blocker.close()

    failed = p.store.get_request(req.id)
    assert failed.status is RequestStatus.FAILED
    assert failed.failed_step == "apply" and failed.db_state is DbState.UNTOUCHED
    assert failed.error.startswith("[lock-timeout]")
    thread = p.thread_texts(failed)
    retries = [t for t in thread if "hit the lock timeout" in t]
    assert len(retries) == 2 and "try 1 of 3" in retries[0] and "try 2 of 3" in retries[1]
    assert all("test-blocker" in t and "SELECT count(*) FROM hot" in t for t in retries)
    assert any("could not get its locks after 3 tries" in t and "test-blocker" in t for t in thread)
    # the application never waited much longer than lock_timeout behind the queued ALTER
    assert app.count > 20 and app.worst < 0.5 + 2.0, (app.count, app.worst)
    with p.target() as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'hot' "
                            "AND column_name = 'c'").fetchone()[0] == 0
        assert lock_holder(conn, target_lock_key("staging")) is None


def test_watchdog_reports_sessions_waiting_behind_the_migration(make_pipeline):
    p = make_pipeline(lock_timeout="5s")
    with p.target() as conn:
        conn.execute("CREATE TABLE busy (id bigint PRIMARY KEY, v int)")
        conn.execute("INSERT INTO busy VALUES (1, 1)")
    # holds ACCESS EXCLUSIVE on busy for ~2.5 s: the application's reads queue behind it
    req = p.request([("001_slow_alter", "ALTER TABLE busy ADD COLUMN d int;\nSELECT pg_sleep(2.5);\n")])
    with AppTraffic(p.target_url, "SELECT v FROM busy WHERE id = 1"):
        start_run(p.rt, req.id)
        p.work()
    done = p.store.get_request(req.id)
    assert done.status is RequestStatus.SUCCEEDED, done.error
    waiters = [t for t in p.thread_texts(done) if "waiting behind the migration" in t]
    assert waiters and "test-app" in waiters[0] and "SELECT v FROM busy" in waiters[0]


def test_reconciler_terminates_an_orphaned_apply_session_and_frees_the_lock(make_pipeline, monkeypatch):
    p = make_pipeline()
    monkeypatch.setattr("workers.liveness.VANISHED_GRACE_S", 0.0)  # its job is long gone, not just flushed
    req = p.request([("001_never", "CREATE TABLE never_made (id int);")])
    for old, new in ((RequestStatus.APPROVED, RequestStatus.QUEUED), (RequestStatus.QUEUED, RequestStatus.BACKING_UP),
                     (RequestStatus.BACKING_UP, RequestStatus.APPLYING)):
        p.store.transition(req.id, old, new, actor="test")
    p.store.start_step(req.id, "apply", job_id=f"guardian-req{req.id}-apply-1")
    # an apply session whose worker is gone (no job in Redis), still holding the target lock mid-statement
    orphan = psycopg.connect(p.target_url, autocommit=True, application_name=f"guardian-req{req.id}")
    orphan.execute("SELECT pg_advisory_lock(%s)", (target_lock_key("staging"),))
    sleeper = threading.Thread(target=lambda: _swallow(orphan, "SELECT pg_sleep(60)"), daemon=True)
    sleeper.start()
    time.sleep(0.3)

    actions = reconcile(p.rt, redis=p.redis, min_age_s=0)

    sleeper.join(timeout=10)
    assert not sleeper.is_alive()
    assert actions == [f"request {req.id}: apply worker died: failed, database untouched"]
    failed = p.store.get_request(req.id)
    assert failed.db_state is DbState.UNTOUCHED and "session was terminated (1)" in failed.error
    with p.target() as conn:
        assert lock_holder(conn, target_lock_key("staging")) is None


def _swallow(conn: psycopg.Connection, sql: str) -> None:
    try:
        conn.execute(sql)
    except psycopg.OperationalError:
        pass  # terminated by the reconciler, as intended


def _release_after_first_timeout(url: str, blocker: psycopg.Connection, deadline_s: float = 120.0) -> None:
    """End the blocker's transaction once a lock wait behind it has started and then given up (a lock timeout)."""
    waiting = ("SELECT count(*) FROM pg_locks WHERE NOT granted"
               " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
    end = time.monotonic() + deadline_s
    seen_wait = False
    with psycopg.connect(url, autocommit=True) as watcher:
        while time.monotonic() < end:
            waiters = watcher.execute(waiting).fetchone()[0]
            if waiters:
                seen_wait = True
            elif seen_wait:
                break
            time.sleep(0.02)
    blocker.rollback()


def test_prisma_retry_after_lock_timeout_leaves_one_finished_ledger_row(make_pipeline):
    p = make_pipeline(layout="prisma", lock_timeout="300ms", apply_retries=4)
    with p.target() as conn:
        conn.execute('CREATE TABLE "User" (id int PRIMARY KEY)')
        conn.execute(PRISMA_DDL)  # a baselined database (else Prisma's P3005 refuses the non-empty schema)
    req = p.request([("20240101000000_add_name", 'ALTER TABLE "User" ADD COLUMN name text;\n'
                                                 'ALTER TABLE "User" ADD COLUMN nick text -- a comment before the ;\n;')])
    blocker = psycopg.connect(p.target_url, application_name="test-blocker")
    blocker.execute('SELECT count(*) FROM "User"').fetchone()
    release = threading.Thread(target=_release_after_first_timeout, args=(p.target_url, blocker), daemon=True)
    release.start()  # the long transaction ends while we back off, however slow the backup before it was
    try:
        start_run(p.rt, req.id)
        p.work()
    finally:
        release.join()
        blocker.close()
    done = p.store.get_request(req.id)
    assert done.status is RequestStatus.SUCCEEDED, done.error
    apply_step = next(s for s in p.store.list_steps(req.id) if s.step == "apply")
    assert apply_step.outcome["lock_retries"] >= 1
    # the attempts that timed out left no timings behind: one entry per statement, both held until the commit
    timed = apply_step.outcome["files"][0]["statements"]
    assert [(s["index"], s["kind"]) for s in timed] == [(0, "AlterTableStmt"), (1, "AlterTableStmt")]
    assert timed[0]["held_ms"] >= timed[0]["duration_ms"] + timed[1]["duration_ms"] and timed[1]["duration_ms"] >= 0
    with p.target() as conn:
        rows = conn.execute("SELECT migration_name, finished_at IS NOT NULL, logs FROM _prisma_migrations").fetchall()
    assert rows == [("20240101000000_add_name", True, None)]  # no failed row per retry (Prisma would stop: P3009)
