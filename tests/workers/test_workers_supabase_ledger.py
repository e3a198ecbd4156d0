"""Supabase through the real pipeline (backup → apply → verify in a worker): a file fixed after a failure plans and
applies, its row is what `supabase db push` writes, and RESET ALL runs between files as the CLI does (issue 21)."""
from __future__ import annotations

import subprocess
from pathlib import Path

from bot.config import ProjectConfig
from bot.models import RequestStatus
from bot.sources.layouts import load_snapshot
from bot.sources.ledgers import read_ledger
from bot.sources.models import MigrationState
from bot.sources.status import compute_status, plannable
from bot.sources.supabase_parser import split_and_trim
from workers.pipeline import start_run

NAME = "20240102000000_add_email"
BROKEN = "-- add the email\nalter table account add column email text;\nalter table no_such add column x int;\n"
FIXED = "-- add the email\nalter table account add column email text; -- nullable for now\n"


def _repo(path: Path, files: dict[str, str]) -> ProjectConfig:
    folder = path / "supabase" / "migrations"
    folder.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (folder / name).write_text(sql)
    if not (path / ".git").exists():
        subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(path), "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "m"],
                   check=True)
    return ProjectConfig(repo=path, layout="supabase", path="supabase/migrations")


def test_supabase_file_fixed_after_a_failure_plans_and_applies(make_pipeline, tmp_path):
    p = make_pipeline(layout="supabase")
    with p.target() as conn:
        conn.execute("CREATE TABLE account (id int PRIMARY KEY)")
    failed = p.request([(NAME, BROKEN)])
    start_run(p.rt, failed.id)
    p.work()
    failed = p.store.get_request(failed.id)
    assert failed.status is RequestStatus.FAILED and failed.failed_step == "apply", failed.error

    cfg = _repo(tmp_path / "app", {f"{NAME}.sql": BROKEN})
    with p.target() as conn:
        report = compute_status(load_snapshot(cfg), read_ledger(conn, "supabase"))
    # no tool row after a failed push (the CLI's batch rolls back with the file): pending, not failed for ever
    assert report.migrations[0].state is MigrationState.PENDING and "last attempt failed" in report.migrations[0].detail
    cfg = _repo(tmp_path / "app", {f"{NAME}.sql": FIXED})  # fixed on the branch
    with p.target() as conn:
        report = compute_status(load_snapshot(cfg), read_ledger(conn, "supabase"))
    assert plannable(report, "staging") == ["20240102000000"]

    done = p.request([(NAME, FIXED)])
    start_run(p.rt, done.id)
    p.work()
    done = p.store.get_request(done.id)
    assert done.status is RequestStatus.SUCCEEDED, done.error
    with p.target() as conn:
        row = conn.execute("SELECT version, name, statements FROM supabase_migrations.schema_migrations").fetchall()
        report = compute_status(load_snapshot(cfg), read_ledger(conn, "supabase"))
    assert row == [("20240102000000", "add_email", split_and_trim(FIXED))]
    assert row[0][2] == ["-- add the email\nalter table account add column email text", "-- nullable for now"]
    assert report.migrations[0].state is MigrationState.APPLIED


def test_reset_all_between_supabase_files(make_pipeline):
    p = make_pipeline(layout="supabase")
    with p.target() as conn:
        conn.execute("CREATE SCHEMA elsewhere")
    req = p.request([("20240101000000_path", "SELECT set_config('search_path', 'elsewhere', false);\n"),
                     ("20240102000000_table", "CREATE TABLE placed (id int);\n")])
    start_run(p.rt, req.id)
    p.work()
    assert p.store.get_request(req.id).status is RequestStatus.SUCCEEDED, p.store.get_request(req.id).error
    with p.target() as conn:
        where = conn.execute("SELECT to_regclass('public.placed')::text, to_regclass('elsewhere.placed')::text"
                             ).fetchone()
    assert where == ("placed", None)  # the first file's session setting did not leak into the second
