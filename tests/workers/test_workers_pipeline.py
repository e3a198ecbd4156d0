"""The worker pipeline end to end on real PostgreSQL and Redis: backup -> apply -> verify, and the ways it fails."""
from __future__ import annotations

import subprocess
from pathlib import Path

from psycopg import conninfo

from bot.models import DbState, RequestStatus
from workers import backup as backup_step
from workers.pipeline import start_run

CREATE = "CREATE TABLE items (id bigint PRIMARY KEY, v int NOT NULL);\nINSERT INTO items SELECT g, g FROM generate_series(1, 100) g;\n"
INDEX = "CREATE INDEX CONCURRENTLY items_v ON items (v);\nALTER TABLE items ADD COLUMN note text;\n-- verify: SELECT count(*) = 100 FROM items\n"


def test_happy_path_backup_apply_verify_ledgers_and_thread(make_pipeline):
    p = make_pipeline()
    req = p.request([("001_create_items", CREATE), ("002_index_items", INDEX)])

    assert start_run(p.rt, req.id) is True
    assert start_run(p.rt, req.id) is False  # a second click or reconciler: nothing happens twice
    p.work()

    done = p.store.get_request(req.id)
    assert done.status is RequestStatus.SUCCEEDED, done.error
    with p.target() as conn:
        history = conn.execute("SELECT version, name FROM guardian.schema_history ORDER BY version").fetchall()
        sidecar = conn.execute("SELECT version, request_id, succeeded, backup_id FROM guardian.applied_migrations "
                               "ORDER BY id").fetchall()
        valid = conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_v'::regclass").fetchone()[0]
    assert history == [("001", "create_items"), ("002", "index_items")]
    assert [(r[0], r[1], r[2]) for r in sidecar] == [("001", str(req.id), True), ("002", str(req.id), True)]
    assert valid is True

    backups = p.store.list_backups(request_id=req.id)
    assert len(backups) == 1 and backups[0].verified and backups[0].size_bytes > 0
    path = Path(backups[0].path)
    assert path.parent == p.backup_dir and path.name.startswith(f"staging-req{req.id}-") and path.suffix == ".dump"
    assert sidecar[0][3] == str(backups[0].id)
    with p.target() as conn:  # the pg_restore that reads what the server's pg_dump wrote
        binary, _ = backup_step.find_pg_dump(conn.info.server_version // 10000)
    listed = subprocess.run([str(Path(binary).with_name("pg_restore")), "--list", str(path)], capture_output=True)
    assert listed.returncode == 0

    steps = [(s.step, s.status) for s in p.store.list_steps(req.id)]
    assert steps == [("backup", "succeeded"), ("apply", "succeeded"), ("verify", "succeeded")]
    thread = "\n".join(p.thread_texts(done))
    for word in ("*backup* succeeded", "*apply* succeeded", "*verify* succeeded", "verification passed",
                 "+ index public.items_v", "+ column public.items.note"):
        assert word in thread
    assert "postgresql://" not in thread and "password" not in thread.lower()
    assert f"Request #{req.id} succeeded in" in thread and path.name in thread
    assert any(c.params.get("ts") == req.message_ts for c in p.standin.calls("chat.update"))  # the card
    # per statement actuals: the index built alone (held while it ran), then the ADD COLUMN in the ledger's transaction
    (apply,) = [s for s in p.store.list_steps(req.id) if s.step == "apply"]
    first, second = apply.outcome["files"]
    assert [(s["index"], s["line"], s["kind"]) for s in first["statements"]] == [(0, 1, "CreateStmt"), (1, 2, "InsertStmt")]
    assert first["statements"][0]["held_ms"] >= first["statements"][0]["duration_ms"] + first["statements"][1]["duration_ms"]
    built, added = second["statements"]
    assert (built["index"], built["kind"], added["index"], added["kind"]) == (0, "IndexStmt", 1, "AlterTableStmt")
    assert built["held_ms"] == built["duration_ms"] > 0 and added["held_ms"] >= added["duration_ms"] > 0
    assert all("_started" not in s for f in apply.outcome["files"] for s in f["statements"])


def test_duplicate_or_orphaned_step_job_does_nothing(make_pipeline):
    p = make_pipeline()
    req = p.request([("001_create_items", CREATE)])
    start_run(p.rt, req.id)
    p.work()
    assert p.store.get_request(req.id).status is RequestStatus.SUCCEEDED
    before = len(p.store.list_steps(req.id))

    from workers import apply, verify
    backup_step.run(req.id)
    apply.run(req.id)
    verify.run(req.id)

    assert len(p.store.list_steps(req.id)) == before
    assert len(p.store.list_backups(request_id=req.id)) == 1


def test_verify_sql_failure_fails_applied_unverified(make_pipeline):
    p = make_pipeline()
    req = p.request([("001_create_items", CREATE)],
                    verify_sql={"001_create_items": "SELECT count(*) = 5 FROM items;"})
    start_run(p.rt, req.id)
    p.work()

    failed = p.store.get_request(req.id)
    assert failed.status is RequestStatus.FAILED
    assert failed.failed_step == "verify" and failed.db_state is DbState.APPLIED_UNVERIFIED
    assert "returned false" in failed.error
    with p.target() as conn:  # applied, just not verified
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 100
    assert any("verification failed" in t for t in p.thread_texts(failed))


def test_failing_create_index_concurrently_leaves_no_invalid_index(make_pipeline):
    p = make_pipeline()
    with p.target() as conn:
        conn.execute("CREATE TABLE dup (id bigint PRIMARY KEY, email text)")
        conn.execute("INSERT INTO dup VALUES (1, 'a@x'), (2, 'a@x')")
    req = p.request([("001_unique_email", "CREATE UNIQUE INDEX CONCURRENTLY dup_email ON dup (email);")])
    start_run(p.rt, req.id)
    p.work()

    failed = p.store.get_request(req.id)
    assert failed.status is RequestStatus.FAILED
    assert failed.failed_step == "apply" and failed.db_state is DbState.UNTOUCHED
    assert "could not create unique index" in failed.error
    with p.target() as conn:
        assert conn.execute("SELECT count(*) FROM pg_index WHERE NOT indisvalid").fetchone()[0] == 0
        assert conn.execute("SELECT to_regclass('dup_email')").fetchone()[0] is None
        row = conn.execute("SELECT succeeded, error FROM guardian.applied_migrations").fetchone()
    assert row[0] is False and "could not create unique index" in row[1]


def test_batched_update_runs_in_keyset_batches(make_pipeline):
    p = make_pipeline()
    with p.target() as conn:
        conn.execute("CREATE TABLE big (id bigint PRIMARY KEY, v int NOT NULL)")
        conn.execute("INSERT INTO big SELECT g, 0 FROM generate_series(1, 2500) g")
    sql = ("ALTER TABLE big ADD COLUMN flag boolean;\n"
           "-- guardian: batch 1000 pause 10ms\n"
           "UPDATE big SET v = v + 1, flag = true WHERE v >= 0 AND v < 100;\n")
    req = p.request([("001_backfill", sql)])
    start_run(p.rt, req.id)
    p.work()

    done = p.store.get_request(req.id)
    assert done.status is RequestStatus.SUCCEEDED, done.error
    with p.target() as conn:
        # the SET leaves the WHERE true: only the keyset stops the batches from updating rows twice
        assert conn.execute("SELECT min(v), max(v), count(*) FILTER (WHERE flag) FROM big").fetchone() == (1, 1, 2500)
        assert conn.execute("SELECT count(*) FROM guardian.schema_history").fetchone()[0] == 1
    thread = "\n".join(p.thread_texts(done))
    assert "2500 row(s) in 3 batch(es), done" in thread
    (apply,) = [s for s in p.store.list_steps(req.id) if s.step == "apply"]
    added, batched = apply.outcome["files"][0]["statements"]
    assert added["index"] == 0 and added["held_ms"] >= added["duration_ms"]
    assert batched["index"] == 1 and batched["batched"] and batched["held_ms"] is None and batched["duration_ms"] >= 20
    assert "rows in public.big" not in thread  # UPDATE changes no row count


def test_backup_failure_fails_untouched(make_pipeline, monkeypatch):
    p = make_pipeline()
    req = p.request([("001_create_items", CREATE)])
    # the variable now points at a database that does not exist, with a password that must never show
    url = conninfo.make_conninfo(p.target_url, dbname="gt_does_not_exist", password="s3cret")
    monkeypatch.setenv(p.env_var, url)
    start_run(p.rt, req.id)
    p.work()
    failed = p.store.get_request(req.id)
    assert failed.status is RequestStatus.FAILED
    assert failed.failed_step == "backup" and failed.db_state is DbState.UNTOUCHED
    assert "s3cret" not in failed.error and "postgresql://" not in failed.error
    assert not any("s3cret" in t for t in p.thread_texts(failed))


def test_failure_after_a_committed_part_is_partially_applied(make_pipeline):
    p = make_pipeline()
    sql = ("CREATE TABLE parted (id int);\nCREATE INDEX CONCURRENTLY parted_id ON parted (id);\n"
           "ALTER TABLE parted ADD COLUMN broken int REFERENCES nowhere (id);\n")
    req = p.request([("001_parted", sql)])
    start_run(p.rt, req.id)
    p.work()
    failed = p.store.get_request(req.id)
    assert failed.status is RequestStatus.FAILED
    assert failed.failed_step == "apply" and failed.db_state is DbState.PARTIALLY_APPLIED
    assert 'relation "nowhere" does not exist' in failed.error
    with p.target() as conn:  # what committed before the CONCURRENTLY statement, and the index itself, remain
        assert conn.execute("SELECT to_regclass('parted_id') IS NOT NULL").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM guardian.schema_history").fetchone()[0] == 0
        assert conn.execute("SELECT succeeded FROM guardian.applied_migrations").fetchone()[0] is False


def test_comment_only_migration_is_recorded(make_pipeline):
    p = make_pipeline()
    req = p.request([("001_noop", "-- nothing to do here\n")])
    start_run(p.rt, req.id)
    p.work()
    assert p.store.get_request(req.id).status is RequestStatus.SUCCEEDED
    with p.target() as conn:
        assert conn.execute("SELECT version FROM guardian.schema_history").fetchall() == [("001",)]
