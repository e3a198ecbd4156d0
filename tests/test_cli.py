"""The `guardian` command line as operators and CI scripts use it (DESIGN §7), in real subprocesses."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
from redis import Redis
from rq import Queue
from rq.job import Job

from bot.schema import schema_files

REPO = Path(__file__).resolve().parent.parent


def guardian(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
            "GUARDIAN_CONFIG": str(REPO / "does-not-exist.toml")}
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], env={**base, **(env or {})}, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_db_upgrade_twice_applies_nothing_the_second_time(make_database):
    url = make_database()
    first = guardian("db", "upgrade", env={"DATABASE_URL": url})
    assert first.returncode == 0, first.stderr
    assert f"applied {len(schema_files())} schema file(s)" in first.stdout
    second = guardian("db", "upgrade", env={"DATABASE_URL": url})
    assert second.returncode == 0 and "applied 0 schema file(s); already current" in second.stdout
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
