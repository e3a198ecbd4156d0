"""Issue 19: a rehearsal copy is recorded before it is made, so when the worker making it is killed mid-rehearsal
the reconciler's next pass drops it — a command's branch by its drop_command too — and clears the record."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap

import psycopg
from psycopg import conninfo
from redis import Redis

from bot.config import BackupConfig, EnvironmentConfig, GuardianConfig, ProjectConfig, RehearsalCopyConfig, Settings
from bot.pg.copy import CopyLock, copy_name
from workers.reconciler import reconcile
from workers.runtime import Runtime

_WORKER = textwrap.dedent("""
    import sys, time
    from bot.config import EnvironmentConfig, RehearsalCopyConfig
    from bot.pg.copy import copy_of
    from bot.store import Store
    state_url, rid, kind, command, drop = sys.argv[1:6]
    spec = RehearsalCopyConfig(copy=kind, **({"command": command, "drop_command": drop} if kind == "command" else {}))
    env = EnvironmentConfig(name="staging", database_url_env="GT_SWEEP_TARGET", rehearsal=spec)
    with copy_of(env, int(rid), registry=Store(state_url, max_size=2)):
        print("made", flush=True)
        time.sleep(120)  # mid-rehearsal: killed here
""")


def _exists(admin_url: str, name: str) -> bool:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone()[0] == 1


def _killed_mid_rehearsal(state_url: str, rid: int, kind: str, command: str = "", drop: str = "") -> None:
    """A worker process that makes a copy, then is killed (SIGKILL: no finally runs) while the copy lives."""
    worker = subprocess.Popen([sys.executable, "-c", _WORKER, state_url, str(rid), kind, command, drop],
                              stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert worker.stdout.readline().strip() == "made"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)


def _runtime(state_url: str, redis_url: str, spec: RehearsalCopyConfig, tmp_path) -> Runtime:
    env = EnvironmentConfig(name="staging", database_url_env="GT_SWEEP_TARGET", rehearsal=spec)
    return Runtime(settings=Settings(database_url=state_url, redis_url=redis_url),
                   config=GuardianConfig(project=ProjectConfig(layout="sql"), environments={"staging": env},
                                         backup=BackupConfig(dir=tmp_path)))


def test_a_command_copy_whose_worker_was_killed_is_dropped_by_its_drop_command_and_its_record_cleared(
        state_db_url, redis_url, make_database, pg_admin_url, monkeypatch, tmp_path):
    target = make_database(prefix="gt_sweep_target")
    monkeypatch.setenv("GT_SWEEP_TARGET", target)
    monkeypatch.setenv("GT_ADMIN", pg_admin_url)
    rid = random.randint(10_000_000, 99_999_999)
    branch = f"gt_branch_{rid}"  # not named like a template copy: only the record leads to it
    make = (f'psql "$GT_ADMIN" -qc "CREATE DATABASE gt_branch_$GUARDIAN_REQUEST_ID TEMPLATE '
            f'{conninfo.conninfo_to_dict(target)["dbname"]}" >/dev/null && echo "${{GT_ADMIN%/*}}/gt_branch_$GUARDIAN_REQUEST_ID"')
    drop = 'psql "$GT_ADMIN" -qc "DROP DATABASE IF EXISTS gt_branch_$GUARDIAN_REQUEST_ID" >/dev/null'
    spec = RehearsalCopyConfig(copy="command", command=make, drop_command=drop)
    rt = _runtime(state_db_url, redis_url, spec, tmp_path)
    try:
        _killed_mid_rehearsal(state_db_url, rid, "command", make, drop)
        assert _exists(pg_admin_url, branch)
        (record,) = rt.store.list_copies()
        assert (record.name, record.request_id, record.kind) == (copy_name(rid, rt.store.install_id), rid, "command")
        assert reconcile(rt, redis=Redis.from_url(redis_url), min_age_s=0) == []  # within the grace period
        assert _exists(pg_admin_url, branch)
        with psycopg.connect(state_db_url, autocommit=True) as state:  # the record is older than the grace period now
            state.execute("UPDATE guardian_bot.rehearsal_copies SET created_at = now() - interval '2 minutes'")
        assert reconcile(rt, redis=Redis.from_url(redis_url), min_age_s=0) == [
            f"staging: rehearsal copy {copy_name(rid, rt.store.install_id)} left by a dead worker: dropped"]
        assert not _exists(pg_admin_url, branch) and rt.store.list_copies() == []
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {branch}")
        rt.store.close()


def test_a_live_copy_is_left_alone_and_a_template_copy_of_a_killed_worker_is_dropped(
        state_db_url, redis_url, make_database, pg_admin_url, monkeypatch, tmp_path):
    target = make_database(prefix="gt_sweep_target")
    monkeypatch.setenv("GT_SWEEP_TARGET", target)
    rid = random.randint(10_000_000, 99_999_999)
    rt = _runtime(state_db_url, redis_url, RehearsalCopyConfig(copy="template"), tmp_path)
    holder = psycopg.connect(conninfo.make_conninfo(pg_admin_url, dbname="postgres"), autocommit=True)
    name = copy_name(rid, rt.store.install_id)
    lock = CopyLock(name, rid)
    try:
        _killed_mid_rehearsal(state_db_url, rid, "template")
        assert _exists(pg_admin_url, name)
        lock.take(holder)  # as if its worker were alive
        from workers.reconciler import sweep_rehearsal_copies
        assert sweep_rehearsal_copies(rt, grace_s=0) == []
        assert _exists(pg_admin_url, name) and len(rt.store.list_copies()) == 1
        lock.release(holder)  # it is dead after all
        assert f"staging: rehearsal copy {name} left by a dead worker: dropped" in sweep_rehearsal_copies(
            rt, grace_s=0)
        assert not _exists(pg_admin_url, name)
        assert rt.store.list_copies() == []
    finally:
        holder.close()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
        rt.store.close()
