"""Backups hold the whole database: 0600 files in a 0700 directory, and no partial dump left behind."""
from __future__ import annotations

import fcntl
import os
import stat
import subprocess
import time
from pathlib import Path

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
