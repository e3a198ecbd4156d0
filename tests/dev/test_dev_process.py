"""`guardian dev` as a process: progress lines, the page served with its composer, the demo, a clean stop on SIGTERM."""
from __future__ import annotations

import fnmatch
import json
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest
import redis

from bot.local_services import with_database
from dev_harness import ROOT, alive, cleanup_dev, descendants, dev_command, start_dev


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_dev_starts_serves_the_page_and_stops_cleanly_on_sigterm(tmp_path: Path, pg_admin_url: str,
                                                                 _redis_server_url: str) -> None:
    # the Redis database it is given may hold someone else's keys: the demo clears only RQ's and Guardian's
    shared = redis.Redis.from_url(_redis_server_url)
    shared.set("someone-else:keep", "theirs")
    shared.set("guardian:lease:left-over", "1")
    shared.hset("rq:job:left-over", "status", "queued")
    run = start_dev(tmp_path, pg_admin_url, _redis_server_url)
    try:
        for n in range(1, 9):
            assert f"[{n}/8]" in run.output
        assert shared.get("someone-else:keep") == b"theirs"
        assert not shared.exists("guardian:lease:left-over", "rq:job:left-over")
        page = run.page_url
        status, html = get(page)
        assert status == 200
        assert 'data-testid="composer"' in html and 'data-testid="user-switcher"' in html
        for asset in ("app.js", "blocks.js", "style.css"):
            assert get(page + "static/" + asset)[0] == 200
        config = json.loads(get(page + "dev/config")[1])
        assert {u["id"] for u in config["users"]} == {"U_DANA", "U_ALICE", "U_BOB", "U_EVE"}
        bot = run.wait_for_line(r"Bot endpoint:\s+(http://127\.0\.0\.1:\d+)", 1).group(1)
        assert get(bot + "/healthz") == (200, '{"ok": true}')
        # the demo: a git repository with the branch that fails verify, seeded databases, the page answers a command
        repo = tmp_path / "demo-repo"
        branches = subprocess.run(["git", "-C", str(repo), "branch", "--list"], capture_output=True, text=True).stdout
        assert "main" in branches and "demo/verify-fails" in branches
        with psycopg.connect(with_database(pg_admin_url, f"{run.prefix}_demo_staging")) as conn:
            assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 200_000
            assert conn.execute("SELECT migration_name FROM _prisma_migrations").fetchall() == [("20240101000000_init",)]
        request = urllib.request.Request(page + "dev/command", method="POST",
                                         data=json.dumps({"user": "U_EVE", "text": "/migrate help"}).encode())
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert json.loads(resp.read())["status"] == 200
        state = json.loads(get(page + "dev/state?user=U_EVE")[1])
        assert any("/migrate plan" in item["text"] or "/migrate plan" in json.dumps(item["blocks"])
                   for item in state["timeline"] if item.get("private"))
        assert not any(item.get("private") for item in json.loads(get(page + "dev/state?user=U_BOB")[1])["timeline"])
        said = urllib.request.Request(page + "dev/message", method="POST",
                                      data=json.dumps({"user": "U_DANA", "text": "deploying at 3pm"}).encode())
        with urllib.request.urlopen(said, timeout=10) as resp:
            assert json.loads(resp.read())["status"] == 200  # the bot acknowledged the signed message event
        seen = json.loads(get(page + "dev/state?user=U_BOB")[1])["timeline"]
        assert [(i["user"], i["text"]) for i in seen if i["kind"] == "message"] == [("U_DANA", "deploying at 3pm")]

        children = descendants(run.proc.pid)
        assert children, "the worker subprocess should be running"
        started = time.monotonic()
        assert run.stop(timeout=60) == 0, run.output
        assert time.monotonic() - started < 30
        assert "stopped." in run.output
        left = [pid for pid in children if alive(pid)]
        assert not left, f"processes left running after SIGTERM: {left}"
        with psycopg.connect(pg_admin_url) as conn:  # the demo's databases go with it (the template stays)
            names = {r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                                (f"{run.prefix}%",))}
        assert names <= {f"{run.prefix}_demo_template"}, names
        try:
            get(page)
        except urllib.error.URLError:
            pass
        else:
            raise AssertionError("the page still answers after SIGTERM")
    finally:
        cleanup_dev(run, pg_admin_url)
        shared.delete("someone-else:keep")
        shared.close()


@pytest.mark.parametrize("sigint", [signal.SIG_DFL, signal.SIG_IGN], ids=["terminal", "script-background-job"])
def test_ctrl_c_stops_everything_too(tmp_path: Path, pg_admin_url: str, _redis_server_url: str, sigint) -> None:
    """Also when started with SIGINT ignored (`guardian dev &` in a script): Python installs no KeyboardInterrupt
    handler then, and guardian dev used to go on running, so the stop timed out."""
    run = start_dev(tmp_path, pg_admin_url, _redis_server_url, sigint=sigint)
    try:
        children = descendants(run.proc.pid)
        assert children
        run.proc.send_signal(signal.SIGINT)
        assert run.wait(60) == 0, run.output
        assert "stopped." in run.output
        assert not [pid for pid in children if alive(pid)]
    finally:
        cleanup_dev(run, pg_admin_url)


def test_package_data_ships_the_page_and_the_demo() -> None:
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["bot"]
    for folder in ("bot/devpage/static", "bot/demo"):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and path.suffix != ".py" and "__pycache__" not in path.parts:
                rel = str(path.relative_to(ROOT / "bot"))
                assert any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(rel, g.replace("**/", "")) for g in globs), \
                    f"{rel} is not covered by [tool.setuptools.package-data] bot = {globs}"


def test_sigkill_leaves_no_process_of_it_running(tmp_path: Path, pg_admin_url: str, _redis_server_url: str) -> None:
    """`kill -9` of `guardian dev` cannot run its clean-up: the kernel's parent-death signal ends its worker
    (own process group), and the worker's analysis and job processes die with the worker in turn."""
    run = start_dev(tmp_path, pg_admin_url, _redis_server_url)
    try:
        deadline = time.monotonic() + 60
        children = descendants(run.proc.pid)
        while len(children) < 2 and time.monotonic() < deadline:  # the worker and its analysis process
            time.sleep(0.2)
            children = descendants(run.proc.pid)
        assert len(children) >= 2, f"expected the worker and its analysis process, found {children}"
        run.proc.kill()
        run.proc.wait(timeout=30)
        deadline = time.monotonic() + 20
        while [pid for pid in children if alive(pid)] and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [pid for pid in children if alive(pid)]
        assert not left, f"processes of a SIGKILLed `guardian dev` still running: {left}"
    finally:
        cleanup_dev(run, pg_admin_url)


def _held_port() -> tuple[socket.socket, int]:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    return holder, holder.getsockname()[1]


def test_a_taken_port_is_one_line_naming_the_option(tmp_path: Path, pg_admin_url: str, _redis_server_url: str) -> None:
    """Both ports: the page's used to end in a Python traceback after seven steps, the bot's gave no hint."""
    for option, what in (("--page-port", "the Slack-like page"), ("--port", "the bot's HTTP endpoint")):
        holder, port = _held_port()
        try:
            args = ["--port", "0", "--page-port", str(port)] if option == "--page-port" else ["--port", str(port),
                                                                                                   "--page-port", "0"]
            proc = dev_command(tmp_path / option.strip("-"), pg_admin_url, _redis_server_url, *args)
        finally:
            holder.close()
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stdout + proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.strip()]
        assert errors == [f"guardian: port {port} ({what}) is taken by another program; stop that program or choose "
                          f"another port with `guardian dev {option} N` (0 picks a free one)"], proc.stderr


def test_help_names_both_ports() -> None:
    out = subprocess.run([sys.executable, "-m", "bot.cli", "dev", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert "--port" in out.stdout and "--page-port" in out.stdout and "GUARDIAN_DEV_PAGE_PORT" in out.stdout


def test_sigusr1_prints_every_threads_stack_and_keeps_running(tmp_path: Path, pg_admin_url: str,
                                                              _redis_server_url: str) -> None:
    """What a stop that hangs shows (DevRun.wait): `kill -USR1` prints each thread's stack and changes nothing."""
    run = start_dev(tmp_path, pg_admin_url, _redis_server_url)
    try:
        run.proc.send_signal(signal.SIGUSR1)
        run.wait_for_line(r"^Current thread 0x|^Thread 0x", 30)
        run.wait_for_line(r'File ".*bot/dev\.py", line \d+ in run_dev', 5)
        assert run.proc.poll() is None
        assert run.stop() == 0 and "stopped." in run.output
    finally:
        cleanup_dev(run, pg_admin_url)
