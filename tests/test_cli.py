"""The `guardian` command line as operators and CI scripts use it (DESIGN §7), in real subprocesses."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from redis import Redis
from rq import Queue
from rq.job import Job

from bot.schema import schema_files

REPO = Path(__file__).resolve().parent.parent


def guardian(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
            "GUARDIAN_CONFIG": str(REPO / "tests" / "fixtures" / "empty.toml")}
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], env={**base, **(env or {})}, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_db_upgrade_twice_applies_nothing_the_second_time(make_database):
    url = make_database()
    first = guardian("db", "upgrade", env={"DATABASE_URL": url})
    assert first.returncode == 0, first.stderr
    assert f"applied {len(schema_files())} schema files" in first.stdout
    second = guardian("db", "upgrade", env={"DATABASE_URL": url})
    assert second.returncode == 0 and "applied 0 schema files; already current" in second.stdout
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM guardian_bot.schema_history").fetchone()[0] == len(schema_files())


def test_db_upgrade_without_database_url_is_one_line():
    out = guardian("db", "upgrade")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "DATABASE_URL" in lines[0]


def test_worker_burst_runs_what_is_queued_then_exits(redis_url, state_db_url):
    job = Queue("guardian", connection=Redis.from_url(redis_url)).enqueue("bot.schema.schema_files")
    out = guardian("worker", "--burst", env={"REDIS_URL": redis_url, "DATABASE_URL": state_db_url})
    assert out.returncode == 0, out.stderr
    done = Job.fetch(job.id, connection=Redis.from_url(redis_url))
    assert done.get_status() == "finished" and [f.name for f in done.return_value()] == [f.name for f in schema_files()]


def test_manifest_declares_the_command_and_interactivity():
    out = guardian("manifest", "--request-url", "https://guardian.example.org/slack/events")
    assert out.returncode == 0, out.stderr
    manifest = json.loads(out.stdout)
    commands = manifest["features"]["slash_commands"]
    assert commands[0]["command"] == "/migrate"
    assert commands[0]["url"] == "https://guardian.example.org/slack/events"
    assert manifest["settings"]["interactivity"]["request_url"] == "https://guardian.example.org/slack/events"


def test_unknown_command_is_a_usage_error():
    out = guardian("frobnicate")
    assert out.returncode == 2 and "invalid choice" in out.stderr


# ---- every error a person can cause is one line naming what to fix, never a traceback (issue 17)

def one_line(out: subprocess.CompletedProcess[str], code: int) -> str:
    assert "Traceback" not in out.stderr + out.stdout, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{out.stderr}"
    assert out.returncode == code, (out.returncode, out.stderr)
    return lines[0]


def test_a_malformed_database_url_is_one_line_without_the_value():
    for url in ("not a url", "postgresql://guard:S3cretPw@[db:5432/x", "http://guard:S3cretPw@host"):
        line = one_line(guardian("db", "upgrade", env={"DATABASE_URL": url}), 2)
        assert "DATABASE_URL is not a PostgreSQL URL" in line and "postgresql://USER@HOST:5432/DBNAME" in line
        assert "S3cretPw" not in line
    line = one_line(guardian("db", "upgrade", env={"DATABASE_URL": "postgresql://u@host:99999999/db"}), 2)
    assert "not a port number" in line


def test_worker_with_redis_down_is_one_line(state_db_url):
    out = guardian("worker", env={"REDIS_URL": "redis://127.0.0.1:1/0", "DATABASE_URL": state_db_url}, timeout=60)
    line = one_line(out, 1)
    assert "cannot reach Redis at 127.0.0.1:1/0 (REDIS_URL)" in line and "start Redis" in line
    line = one_line(guardian("worker", "--burst", env={"REDIS_URL": "localhost:6379",
                                                       "DATABASE_URL": state_db_url}), 2)
    assert "REDIS_URL is not a Redis URL" in line


def test_postmortem_with_the_database_down_is_one_line_and_quick():
    started = time.monotonic()
    out = guardian("postmortem", "1", env={"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/guardian"})
    took = time.monotonic() - started
    line = one_line(out, 1)  # no psycopg pool warnings either
    assert "cannot connect to the bot's database at 127.0.0.1:1/guardian (DATABASE_URL)" in line
    assert "Connection refused" in line
    assert took < 14, f"the pool's 15 s wait came back ({took:.1f} s)"  # the old behaviour, not a benchmark


def test_db_upgrade_with_the_database_down_names_host_and_port():
    line = one_line(guardian("db", "upgrade", env={"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/guardian"}), 1)
    assert "at 127.0.0.1:1/guardian (DATABASE_URL)" in line and 'port 1 failed: Connection refused' in line


def test_a_guardian_config_naming_a_missing_file_is_an_error():
    for command in (("status",), ("worker", "--burst")):
        line = one_line(guardian(*command, env={"GUARDIAN_CONFIG": "/nowhere/guardian.toml"}), 2)
        assert line == ("guardian: GUARDIAN_CONFIG names /nowhere/guardian.toml, which does not exist; fix the "
                        "path (or unset GUARDIAN_CONFIG to read ./guardian.toml)")


def test_manifest_without_a_request_url_says_which_option():
    line = one_line(guardian("manifest"), 2)
    assert "--request-url https://YOUR-HOST/slack/events" in line and "--socket-mode" in line
    out = guardian("manifest", "--socket-mode")
    assert out.returncode == 0 and json.loads(out.stdout)["settings"]["socket_mode_enabled"] is True


def _plan_project(tmp_path: Path, url: str, env_body: str = "") -> dict[str, str]:
    config = tmp_path / "guardian.toml"
    config.write_text(f'[project]\nrepo = "{tmp_path}"\n\n[environments.staging]\n'
                      f'database_url_env = "GT_PLAN_STAGING_URL"\n{env_body}')
    return {"GUARDIAN_CONFIG": str(config), "GT_PLAN_STAGING_URL": url}


def test_plan_exits_like_lint_at_high_risk(make_database, tmp_path):
    url = make_database()
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE items (id int, name text)")
    risky = tmp_path / "001_risky.sql"
    risky.write_text("ALTER TABLE items DROP COLUMN name;\n")  # destructive: high whatever the table's size
    env = _plan_project(tmp_path, url)
    lint = guardian("lint", str(risky), env=env)
    plan = guardian("plan", "--target-url", url, str(risky), env=env)
    assert lint.returncode == 1 and plan.returncode == 1, (lint.stdout, plan.stdout, plan.stderr)
    assert guardian("plan", "--target-url", url, "--fail-on", "critical", str(risky), env=env).returncode == 0
    assert guardian("lint", "--fail-on", "critical", str(risky), env=env).returncode == 0


def test_plan_on_an_environment_without_a_rehearsal_database_says_it_rehearses_there(make_database, tmp_path):
    url = make_database()
    sql = tmp_path / "001_table.sql"
    sql.write_text("CREATE TABLE t (id int);\n")
    out = guardian("plan", "--env", "staging", str(sql), env=_plan_project(tmp_path, url))
    line = one_line(out, 0)
    assert line.startswith("guardian plan: staging has no rehearsal database (rehearsal_database_url_env), so this "
                           "rehearses on staging itself")
    assert "rolled back" in line and "rehearsal on PostgreSQL" in out.stdout


def test_plan_rehearse_copy_commits_on_a_copy_and_shows_data_failures_and_hold_times(make_database, tmp_path):
    url = make_database(prefix="gt_plancopy")
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, sku text)")
        conn.execute("INSERT INTO items SELECT g, 'sku-' || (g % 40) FROM generate_series(1, 100) g")
    good, bad = tmp_path / "001_big.sql", tmp_path / "002_unique.sql"
    good.write_text("ALTER TABLE items ALTER COLUMN id TYPE bigint;\n")
    bad.write_text("CREATE UNIQUE INDEX items_sku_key ON items (sku);\n")
    env = _plan_project(tmp_path, url)
    out = guardian("plan", "--env", "staging", "--rehearse-copy", "--fail-on", "critical", str(good), str(bad), env=env)
    assert out.returncode == 1, (out.stdout, out.stderr)  # the rehearsal failed on the data
    assert out.stdout.startswith("rehearsed on a copy of staging from") and "ACCESS EXCLUSIVE on items held" in out.stdout
    assert "locks held" in out.stdout and "committed on the copy" in out.stdout
    assert "DATA FAILURE line 1: 40 duplicated (sku) in items, 100 rows; e.g. sku=sku-" in out.stdout
    assert url not in out.stdout + out.stderr
    doc = json.loads(guardian("plan", "--target-url", url, "--rehearse-copy", "--format", "json", str(good), env=env).stdout)
    (st,) = doc["files"][0]["statements"]
    assert doc["rehearsal"]["rolled_back"] is False and doc["rehearsal"]["copy"]["kind"] == "template"
    assert doc["rehearsal"]["warnings"] == []
    system = tmp_path / "003_system.sql"  # never run on a copy: the copy shares the target's server (issue 19)
    system.write_text("ALTER SYSTEM RESET guardian_test.copysafe;\n")  # were it run, a no-op
    kept = json.loads(guardian("plan", "--target-url", url, "--rehearse-copy", "--format", "json", str(system), env=env).stdout)
    (warning,) = kept["rehearsal"]["warnings"]
    assert warning.endswith("003_system.sql line 1: ALTER SYSTEM changes the whole server: not rehearsed on a copy")
    assert kept["files"][0]["statements"][0]["rehearsed"] is False
    assert st["held_ms"] >= st["duration_ms"] > 0 and st["rewrites"] == ["items"] and "held" in doc["headline"]
    with psycopg.connect(url) as conn:  # the target is unchanged and no copy is left
        assert conn.execute("SELECT data_type FROM information_schema.columns WHERE table_name = 'items' "
                            "AND column_name = 'id'").fetchone()[0] == "integer"
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'guardian_copy_adhoc_req2%'").fetchone()[0] == 0
