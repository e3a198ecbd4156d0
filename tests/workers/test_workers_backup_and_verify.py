"""Backups (scope, pg_dump choice, retention) and verify's RLS probes."""
from __future__ import annotations

import subprocess
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from bot.models import DbState, RequestStatus
from workers import backup as backup_step
from workers.enqueue import enqueue_step
from workers.pipeline import start_run


def test_retention_cleanup_deletes_expired_backups_only(make_pipeline):
    p = make_pipeline()
    p.backup_dir.mkdir(parents=True)
    now = datetime.now(timezone.utc)
    old, fresh, gone = (p.backup_dir / f"staging-req{n}-20250101T000000Z.dump" for n in (1, 2, 3))
    old.write_bytes(b"x" * 1024)
    fresh.write_bytes(b"y")
    kept = p.store.create_backup("staging", str(fresh), sha256="b" * 64, size_bytes=1, duration_ms=1, verified=True,
                                 expires_at=now + timedelta(days=30))
    p.store.create_backup("staging", str(old), sha256="a" * 64, size_bytes=1024, duration_ms=1, verified=True,
                          expires_at=now - timedelta(days=1))
    p.store.create_backup("staging", str(gone), sha256="c" * 64, size_bytes=1, duration_ms=1, verified=True,
                          expires_at=now - timedelta(seconds=1))  # its file was already removed by hand

    enqueue_step(p.redis, "cleanup", 0)  # as a job, the way the worker's maintenance loop or an operator runs it
    p.work()

    assert not old.exists() and fresh.exists()
    assert [b.id for b in p.store.list_backups()] == [kept.id]
    assert backup_step.cleanup_backups(p.rt) == 0
    assert any("2 expired backups deleted" in m.get("text", "") for m in p.standin.messages("C0PIPELINE"))


def test_touched_scope_dumps_only_the_tables_the_migration_touches(make_pipeline):
    p = make_pipeline(backup_mode="touched")
    with p.target() as conn:
        conn.execute('CREATE TABLE "Touched" (id int PRIMARY KEY)')
        conn.execute("CREATE TABLE untouched (id int PRIMARY KEY)")
    req = p.request([("001_alter", 'ALTER TABLE "Touched" ADD COLUMN note text;')])
    start_run(p.rt, req.id)
    p.work()
    assert p.store.get_request(req.id).status is RequestStatus.SUCCEEDED
    (saved,) = p.store.list_backups(request_id=req.id)
    assert saved.scope == "touched"
    with p.target() as conn:  # the pg_restore that reads what the server's pg_dump wrote
        binary, _ = backup_step.find_pg_dump(conn.info.server_version // 10000)
    listing = subprocess.run([str(Path(binary).with_name("pg_restore")), "--list", saved.path],
                             capture_output=True, text=True, check=True).stdout
    assert "TABLE public Touched" in listing and "untouched" not in listing


def test_pg_dump_choice_is_at_least_the_server_major():
    path, major = backup_step.find_pg_dump(15)
    assert major >= 15 and Path(path).name == "pg_dump"
    with pytest.raises(backup_step.BackupError) as info:
        backup_step.find_pg_dump(99)
    assert info.value.code == "pg-dump-missing" and "postgresql-client-99" in str(info.value)


def test_libpq_env_carries_the_password_not_argv():
    env = backup_step.libpq_env("postgresql://app:s3cret@db.example:6543/prod?sslmode=require", "guardian-req1-backup")
    assert env["PGPASSWORD"] == "s3cret" and env["PGHOST"] == "db.example" and env["PGPORT"] == "6543"
    assert env["PGDATABASE"] == "prod" and env["PGSSLMODE"] == "require" and env["PGAPPNAME"] == "guardian-req1-backup"


@pytest.fixture
def probe_role(pg_admin_url):
    role = f"gt_probe_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} NOLOGIN")
    yield role
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")


def test_rls_probe_catches_a_policy_that_opens_rows(make_pipeline, probe_role):
    probes = [{"name": "tenant sees own docs", "role": probe_role, "claims": {"sub": "u1"},
               "query": "SELECT id FROM docs", "expect_rows": 1}]
    p = make_pipeline(rls_probes=probes)
    with p.target() as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, owner text)")
        conn.execute("INSERT INTO docs VALUES (1, 'u1'), (2, 'u2')")
        conn.execute("ALTER TABLE docs ENABLE ROW LEVEL SECURITY")
        conn.execute("CREATE POLICY own ON docs USING (owner = current_setting('request.jwt.claims', true)::json->>'sub')")
        conn.execute(f"GRANT SELECT ON docs TO {probe_role}")
    req = p.request([("001_open_docs", "DROP POLICY own ON docs;\nCREATE POLICY own ON docs USING (true);\n")])
    try:
        start_run(p.rt, req.id)
        p.work()
    finally:
        with p.target() as conn:
            conn.execute(f"REVOKE ALL ON docs FROM {probe_role}")
    failed = p.store.get_request(req.id)
    assert failed.status is RequestStatus.FAILED, failed
    assert failed.failed_step == "verify" and failed.db_state is DbState.APPLIED_UNVERIFIED
    assert "saw 2 row(s), expected 1" in failed.error
    thread = "\n".join(p.thread_texts(failed))
    assert "changed: 1 -&gt; 2 row(s)" in thread and "~ policy public.docs.own" in thread  # mrkdwn-escaped
