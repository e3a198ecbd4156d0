"""Backups hold the whole database: 0600 files in a 0700 directory, and no partial dump left behind."""
from __future__ import annotations

import fcntl
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from bot.config import Settings
from bot.models import RequestStatus
from workers import backup as backup_step
from workers.worker import run_worker


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask():
    """The most permissive umask: what we create must be private by itself, not by the operator's umask."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_a_backup_is_0600_in_a_0700_directory_whatever_the_umask(make_pipeline, open_umask):
    p = make_pipeline()
    p.backup_dir.mkdir(mode=0o755)
    os.chmod(p.backup_dir, 0o755)  # made world-readable before this version
    req = p.request([("001_create", "CREATE TABLE t (id int);")], status=RequestStatus.QUEUED)

    backup_step.run(req.id)  # the pipeline's backup step, as its job runs it

    backups = p.store.list_backups(request_id=req.id)
    assert [(s.step, s.status) for s in p.store.list_steps(req.id)] == [("backup", "succeeded")]
    assert len(backups) == 1
    path = Path(backups[0].path)
    assert _mode(path) == 0o600 and _mode(p.backup_dir) == 0o700
    assert list(p.backup_dir.glob("*.partial")) == []
    assert backups[0].size_bytes == path.stat().st_size > 0  # pg_dump wrote the dump through the file we opened


def test_a_failed_dump_leaves_no_partial_file(make_pipeline, open_umask, tmp_path):
    p = make_pipeline()
    with p.target() as conn:
        binary, _ = backup_step.find_pg_dump(conn.info.server_version // 10000)
    with pytest.raises(backup_step.BackupError):
        backup_step.dump(binary, p.target_url, tmp_path / "x.dump", ["--table=no_such_table_anywhere"],
                         lock_timeout="2s", app="test")
    assert list(tmp_path.glob("x.dump*")) == []


def _partial(directory: Path, name: str, age_s: float) -> Path:
    path = directory / f"{name}.dump.partial"
    path.write_bytes(b"PGDMP" + b"\0" * 4096)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def test_worker_start_removes_partial_dumps_no_live_writer_holds(make_pipeline, monkeypatch):
    """A worker killed mid-backup leaves <name>.dump.partial. Rule: at worker start one is removed when no
    process holds its lock (a writing pg_dump does, inherited from the worker that started it, even after
    that worker died) and it has not been written for STALE_AFTER_S."""
    p = make_pipeline()
    p.backup_dir.mkdir()
    os.chmod(p.backup_dir, 0o755)
    old_dump = p.backup_dir / "staging-req1-20240101T000000Z.dump"
    old_dump.write_bytes(b"PGDMP")
    os.chmod(old_dump, 0o644)
    stale = _partial(p.backup_dir, "staging-req2-20240101T000000Z", age_s=3600)
    fresh = _partial(p.backup_dir, "staging-req3-20240101T000000Z", age_s=0)
    live = _partial(p.backup_dir, "staging-req4-20240101T000000Z", age_s=3600)
    # a pg_dump whose worker was killed: it alone holds the lock now, through the file it writes to
    fd = os.open(live, os.O_WRONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    writer = subprocess.Popen(["sleep", "60"], stdout=fd)
    os.close(fd)
    for key, value in p.settings_env.items():
        monkeypatch.setenv(key, value)
    try:
        assert run_worker(Settings(), burst=True) == 0

        assert not stale.exists()
        assert fresh.exists() and live.exists()
        assert _mode(p.backup_dir) == 0o700 and _mode(old_dump) == 0o600
    finally:
        writer.kill()
        writer.wait()
    # the writer is gone: its partial dump is stale now
    assert backup_step.tidy_backup_dir(p.backup_dir) == [live]
    assert fresh.exists()


def _wait(predicate, what: str, attempts: int = 300) -> None:
    for _ in range(attempts):
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


def test_a_killed_workers_pg_dump_keeps_its_partial_until_it_exits_then_worker_start_removes_it(make_pipeline):
    """The real thing: a worker process killed with -9 while its pg_dump waits for a table lock. pg_dump
    lives on (holding the partial file and its lock); the partial is kept while it writes, and removed once
    it has exited, since nothing will ever rename it."""
    p = make_pipeline()
    with p.target() as conn:
        conn.execute("CREATE TABLE busy AS SELECT g AS id FROM generate_series(1, 1000) g")
        binary, _ = backup_step.find_pg_dump(conn.info.server_version // 10000)
    p.backup_dir.mkdir(mode=0o700)
    path = p.backup_dir / "staging-req9-20240101T000000Z.dump"
    partial = path.with_name(path.name + backup_step.PARTIAL)
    blocker = psycopg.connect(p.target_url)
    blocker.execute("LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")  # pg_dump will wait for its ACCESS SHARE
    worker = subprocess.Popen([sys.executable, "-c", "import sys; from pathlib import Path; from workers.backup "
                               "import dump; dump(sys.argv[1], sys.argv[2], Path(sys.argv[3]), [], "
                               "lock_timeout='60s', app='guardian-killed-worker')", binary, p.target_url, str(path)])
    try:
        with p.target() as watch:
            def dump_waits() -> bool:
                row = watch.execute("SELECT wait_event_type FROM pg_stat_activity "
                                    "WHERE application_name = 'guardian-killed-worker'").fetchone()
                return row is not None and row[0] == "Lock"

            _wait(dump_waits, "pg_dump to wait for the table lock")
            worker.kill()  # SIGKILL: no cleanup runs in the worker
            worker.wait()
            assert partial.exists() and _mode(partial) == 0o600
            assert backup_step.tidy_backup_dir(p.backup_dir, stale_after_s=0) == []  # pg_dump still holds it
            assert partial.exists() and dump_waits()
            blocker.rollback()  # pg_dump gets its lock, writes the whole dump and exits; nobody renames it
            _wait(lambda: watch.execute("SELECT count(*) FROM pg_stat_activity "
                                        "WHERE application_name = 'guardian-killed-worker'").fetchone()[0] == 0,
                  "pg_dump to finish")
        _wait(lambda: backup_step.tidy_backup_dir(p.backup_dir, stale_after_s=0) == [partial],
              "the lock to be released with pg_dump's exit")
        assert not partial.exists() and not path.exists()
    finally:
        worker.kill()
        blocker.close()
