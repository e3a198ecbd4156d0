"""Ack latency of `/migrate plan`, an Approve click and a pasted-SQL modal submission, over local HTTP,
normally and on a bad day: a 2.5 s Slack, a slow git and an unreachable target.

Usage::

    .venv/bin/python bench/ack.py              # --n 30 samples per kind and scenario; --scenario slow-slack

Slack gives an app 3 s to acknowledge and users feel anything over ~300 ms; the baseline is that
300 ms target. Starts a throwaway state database, the Slack stand-in and the bolt app behind waitress
(as `guardian serve` runs it), keeps a second process analysing a 1 MB migration in a loop (what a
worker does while people click), then sends signed requests and times each HTTP response. The
scenarios put, in turn, a proxy that holds every Web API call for 2.5 s in front of the stand-in, a
`git` that sleeps 2 s before each command, and a target database URL whose server accepts the TCP
connection and never answers. Prints median, p95 and max per kind and the ratio of p95 to 300 ms.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402
from slack_sdk import WebClient  # noqa: E402

from bench import redis_db  # noqa: E402
from bot.config import GuardianConfig, Settings  # noqa: E402
from bot.flow import Flow  # noqa: E402
from bot.local_services import create_database, drop_database, ensure_postgres, ensure_redis  # noqa: E402
from bot.models import RequestStatus  # noqa: E402
from bot.schema import upgrade  # noqa: E402
from bot.slack.app import build_app  # noqa: E402
from bot.slack.ids import ActionId, CallbackId  # noqa: E402
from bot.slack.modals import ModalState  # noqa: E402
from bot.slack.notifier import Notifier  # noqa: E402
from bot.slack.sender import SlackSender, SlackUser  # noqa: E402
from bot.slack.server import EVENTS_PATH, build_wsgi_app, stop_server  # noqa: E402
from bot.slack.standin import SlackStandIn  # noqa: E402
from bot.store import NewMigration, Store  # noqa: E402

TARGET_MS = 300.0
SLOW_SLACK_S = 2.5
SLOW_GIT_S = 2.0
CORPUS = ROOT.parent / "shared" / "corpus" / "documenso-prisma"
SECRET = "bench-signing-secret"
SCENARIOS = ("normal", "slow-slack", "slow-git", "unreachable-target")
CHANNEL = "C0BENCH"


def _analyse_forever(stop: "multiprocessing.synchronize.Event", counter: "multiprocessing.sharedctypes.Synchronized") -> None:
    from bot.risk import analyze

    files = sorted(CORPUS.glob("*/migration.sql"))
    sql = ""
    while len(sql) < 1_000_000:
        sql += "\n;\n".join(f.read_text() for f in files) + "\n;\n"
    while not stop.is_set():
        analyze(sql[:1_000_000].rsplit(";", 1)[0] + ";")
        with counter.get_lock():
            counter.value += 1


def _stats(samples: list[float]) -> tuple[str, float]:
    ordered = sorted(samples)
    p95 = ordered[max(0, int(round(0.95 * len(ordered))) - 1)]
    return (f"median {statistics.median(ordered):7.1f} ms   p95 {p95:7.1f} ms   max {ordered[-1]:7.1f} ms   "
            f"p95/target {p95 / TARGET_MS:5.2f}x"), p95


class _SlowSlack:
    """An HTTP proxy in front of the stand-in that holds every Web API call for ``delay`` seconds."""

    def __init__(self, upstream: str, delay: float) -> None:
        upstream = upstream.rstrip("/")

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(delay)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                req = urllib.request.Request(upstream + self.path, data=body, headers=headers, method="POST")
                try:
                    with urllib.request.urlopen(req, timeout=30) as resp:
                        status, data, ctype = resp.status, resp.read(), resp.headers.get("Content-Type", "")
                except urllib.error.HTTPError as exc:
                    status, data, ctype = exc.code, exc.read(), exc.headers.get("Content-Type", "")
                except OSError:  # the stand-in is gone (the scenario is over)
                    status, data, ctype = 502, b"", "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", ctype or "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _silent_server() -> socket.socket:
    """A TCP port on 127.0.0.1 whose server never answers: a target that is 'up' at TCP level only."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    return sock


def _slow_git(workdir: Path) -> Path:
    """A directory holding a `git` that sleeps before running the real one."""
    real = shutil.which("git")
    assert real, "git is required"
    folder = workdir / "slow-git"
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "git"
    script.write_text(f"#!/bin/sh\nsleep {SLOW_GIT_S}\nexec {real} \"$@\"\n")
    script.chmod(0o755)
    return folder


def _repo(workdir: Path) -> Path:
    repo = workdir / "app"
    shutil.rmtree(repo, ignore_errors=True)
    (repo / "prisma" / "migrations" / "20240101000000_add_nickname").mkdir(parents=True)
    (repo / "prisma" / "migrations" / "20240101000000_add_nickname" / "migration.sql").write_text(
        "ALTER TABLE users ADD COLUMN nickname text;\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.com"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=env)
    return repo


def _run_scenario(name: str, n: int, admin: str, redis_url: str, workdir: Path) -> dict[str, list[float]]:
    db_name, state_url = create_database(admin, "gb_ack")
    target_name, target_url = create_database(admin, "gb_ack_target")
    upgrade(state_url)
    standin = SlackStandIn().start()
    proxy = _SlowSlack(standin.root_url, SLOW_SLACK_S) if name == "slow-slack" else None
    silent = _silent_server() if name == "unreachable-target" else None
    old_path = os.environ.get("PATH", "")
    if name == "slow-git":
        os.environ["PATH"] = f"{_slow_git(workdir)}:{old_path}"
    os.environ["BENCH_TARGET_URL"] = (f"postgresql://bench@127.0.0.1:{silent.getsockname()[1]}/nowhere"
                                      if silent else target_url)
    repo = _repo(workdir)
    config = GuardianConfig.model_validate({
        "project": {"repo": str(repo), "layout": "prisma", "path": "prisma/migrations", "branch": "main"},
        "environments": {"staging": {"database_url_env": "BENCH_TARGET_URL", "approvers": ["U_A"],
                                     "allow_adhoc_sql": True}}})
    api_url = proxy.url if proxy else standin.url
    settings = Settings(slack_bot_token=standin.token, slack_signing_secret=SECRET, slack_api_url=api_url,
                        database_url=state_url, redis_url=redis_url)
    client = WebClient(token=standin.token, base_url=api_url, timeout=30)
    store = Store(state_url)
    redis = Redis.from_url(redis_url)
    flow = Flow(settings, config, store, redis, Notifier(client))
    app = build_app(settings, config, client, flow=flow, verify_token=True)  # as `guardian serve` builds it
    import waitress

    server = waitress.create_server(build_wsgi_app(app), host="127.0.0.1", port=0, threads=8)
    threading.Thread(target=server.run, daemon=True).start()
    sender = SlackSender(f"http://127.0.0.1:{server.effective_port}{EVENTS_PATH}", signing_secret=SECRET)
    samples: dict[str, list[float]] = {"/migrate plan": [], "Approve click": [], "SQL modal submit": []}
    sql_state = ModalState(environment="staging", channel=CHANNEL).model_dump_json()
    try:
        for i in range(n):
            request = store.create_request("staging", "U_REQ", [NewMigration(name="1_x", sql="select 1;")],
                                           channel=CHANNEL)
            request = store.transition(request.id, RequestStatus.ANALYZING, RequestStatus.AWAITING_APPROVAL,
                                       actor="bench", git_commit="0" * 40)
            timed = (
                ("/migrate plan", lambda: sender.slash_command(
                    "plan staging pending", user=SlackUser(id="U_REQ", name="req"), channel_id=CHANNEL,
                    response_url=standin.response_url(f"p{i}"))),
                ("Approve click", lambda: sender.block_action(
                    ActionId.APPROVE.value, value=str(request.id), user=SlackUser(id="U_A", name="a"),
                    channel_id=CHANNEL, response_url=standin.response_url(f"c{i}"))),
                ("SQL modal submit", lambda: sender.view_submission(
                    CallbackId.SQL_REQUEST.value, private_metadata=sql_state, user=SlackUser(id="U_REQ", name="req"),
                    values={"sql_input": {"value": {"type": "plain_text_input", "value": "SELECT 1;"}}})),
            )
            for kind, send in timed:
                start = time.perf_counter()
                sent = send()
                samples[kind].append((time.perf_counter() - start) * 1000)
                assert sent.status == 200, (kind, sent)
            time.sleep(0.05)
    finally:
        _settle(standin)  # let the work after the acks (posts, git, target checks) finish before teardown
        stop_server(server)
        os.environ["PATH"] = old_path
        if proxy:
            proxy.close()
        if silent:
            silent.close()
        standin.stop()
        store.close()
        redis_db.clear(redis_url)
        drop_database(admin, db_name)
        drop_database(admin, target_name)
    return samples


def _settle(standin: SlackStandIn, quiet_s: float = 6.0, limit_s: float = 90.0) -> None:
    """Wait until the stand-in has seen no call for ``quiet_s`` (at most ``limit_s``)."""
    deadline, seen, since = time.monotonic() + limit_s, -1, time.monotonic()
    while time.monotonic() < deadline:
        count = len(standin.calls())
        if count != seen:
            seen, since = count, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=30, help="requests of each kind per scenario")
    parser.add_argument("--scenario", choices=SCENARIOS, action="append", help="default: all")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="guardian-bench-ack-"))
    admin = ensure_postgres(None, Path(tempfile.gettempdir()) / "guardian-bench")
    redis_url = redis_db.reserve(ensure_redis(None, Path(tempfile.gettempdir()) / "guardian-bench"))
    stop = multiprocessing.Event()
    counter = multiprocessing.Value("i", 0)
    busy = multiprocessing.Process(target=_analyse_forever, args=(stop, counter), daemon=True)
    busy.start()
    time.sleep(2.0)  # let the analysis get going
    worst = 0.0
    print(f"ack latency over local HTTP, {args.n} requests of each kind per scenario, "
          f"a 1 MB analysis looping in another process")
    try:
        for name in args.scenario or SCENARIOS:
            samples = _run_scenario(name, args.n, admin, redis_url, workdir)
            print(f"  {name}")
            for kind, values in samples.items():
                line, p95 = _stats(values)
                worst = max(worst, p95)
                print(f"    {kind:<17} {line}")
    finally:
        stop.set()
        busy.join(timeout=30)
        redis_db.release(redis_url)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"  1 MB analyses completed meanwhile: {counter.value}")
    print(f"  baseline: Slack-felt target {TARGET_MS:.0f} ms p95 (ratio < 1.0 is within target); "
          f"worst p95 {worst:.1f} ms: {'met' if worst < TARGET_MS else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
