"""`--log-format json` / GUARDIAN_LOG_FORMAT=json: one JSON object per line, with the request id, secrets scrubbed;
and `guardian --version`."""
from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from bot import logs, redaction

REPO = Path(__file__).resolve().parent.parent


def guardian(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
            "GUARDIAN_CONFIG": str(REPO / "tests" / "fixtures" / "empty.toml")}
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], env={**base, **(env or {})}, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_version_is_the_installed_distributions():
    out = guardian("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"guardian {version('migration-guardian')}\n"


def _json_lines(stderr: str) -> list[dict]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]  # every line is one JSON object


@pytest.mark.parametrize("how", ["flag", "env"])
def test_worker_logs_json_lines(how, redis_url, state_db_url):
    from redis import Redis
    from rq import Queue

    # a job named as workers/enqueue.py names a request's step: RQ's lines about it carry the request id
    Queue("guardian", connection=Redis.from_url(redis_url)).enqueue("bot.schema.schema_files", job_id="guardian-req7-noop-1")
    env = {"REDIS_URL": redis_url, "DATABASE_URL": state_db_url}
    args = ["worker", "--burst"]
    if how == "flag":
        args = ["--log-format", "json", *args]
    else:
        env["GUARDIAN_LOG_FORMAT"] = "json"
    out = guardian(*args, env=env)
    assert out.returncode == 0, out.stderr
    records = _json_lines(out.stderr)
    assert all({"ts", "level", "logger", "message", "process", "thread"} <= r.keys() for r in records)
    assert any("listening on guardian" in r["message"] for r in records), records
    assert all(r["ts"].endswith("+00:00") for r in records)
    about_job = [r for r in records if "guardian-req7-noop-1" in r["message"]]
    assert about_job and all(r["request_id"] == 7 for r in about_job), records


def test_a_bad_log_format_variable_is_one_line():
    out = guardian("manifest", env={"GUARDIAN_LOG_FORMAT": "xml"})
    assert out.returncode == 2
    assert out.stderr == "guardian: environment variable GUARDIAN_LOG_FORMAT must be one of text | json, got 'xml'\n"
    assert guardian("--log-format", "xml", "manifest").returncode == 2  # argparse's usage error


def test_json_record_names_its_request_and_scrubs_secrets(monkeypatch):
    monkeypatch.setattr(redaction, "_current", redaction.Secrets())
    redaction.register("hunter2-target-password")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    log = logging.getLogger("tests.json_logs")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        log.warning("request %s: apply failed on postgresql://app:%s@db/prod", 42, "hunter2-target-password")
        try:
            raise RuntimeError("connect to postgresql://app:other-pw@db/prod with hunter2-target-password")
        except RuntimeError:
            log.exception("analysis crashed", extra={"request_id": 7, "step": "analyze"})
        log.info("worker started")
        log.info("guardian: workers.apply.run(12) (guardian-req12-apply-1)")  # RQ's line names the job
    finally:
        log.removeHandler(handler)
    first, second, third, fourth = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["request_id"] == 42 and first["level"] == "WARNING" and first["logger"] == "tests.json_logs"
    assert first["message"] == "request 42: apply failed on postgresql://app:[secret]@db/prod"
    assert second["request_id"] == 7 and second["step"] == "analyze"
    assert "RuntimeError" in second["exc_info"] and "other-pw" not in second["exc_info"]
    assert "hunter2" not in stream.getvalue() and "other-pw" not in stream.getvalue()
    assert "request_id" not in third
    assert fourth["request_id"] == 12


def test_the_flag_wins_over_the_variable(redis_url, state_db_url):
    out = guardian("--log-format", "text", "worker", "--burst",
                   env={"REDIS_URL": redis_url, "DATABASE_URL": state_db_url, "GUARDIAN_LOG_FORMAT": "json"})
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines and not any(line.startswith("{") for line in lines)
    assert any(" INFO " in line and "listening on guardian" in line for line in lines)
