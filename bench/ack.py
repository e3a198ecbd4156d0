"""Ack latency of `/migrate plan` and of a button click over local HTTP, with a 1 MB analysis in flight.

Usage::

    .venv/bin/python bench/ack.py              # --n 100 for more samples

Slack gives an app 3 s to acknowledge and users feel anything over ~300 ms; the baseline is that
300 ms target. Starts a throwaway state database, the Slack stand-in and `guardian serve`
(waitress + bolt, as in production), keeps a second process analysing a 1 MB migration in a loop
(what a worker does while people click), then sends signed requests and times each HTTP response.
Prints median, p95 and max per kind and the ratio of p95 to the 300 ms target.
"""
from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402
from slack_sdk import WebClient  # noqa: E402

from bot.config import GuardianConfig, Settings  # noqa: E402
from bot.flow import Flow  # noqa: E402
from bot.local_services import create_database, drop_database, ensure_postgres, ensure_redis, with_redis_db  # noqa: E402
from bot.schema import upgrade  # noqa: E402
from bot.slack.app import build_app  # noqa: E402
from bot.slack.ids import ActionId  # noqa: E402
from bot.slack.sender import SlackSender, SlackUser  # noqa: E402
from bot.slack.server import EVENTS_PATH, build_wsgi_app, stop_server  # noqa: E402
from bot.slack.standin import SlackStandIn  # noqa: E402
from bot.store import NewMigration, Store  # noqa: E402

TARGET_MS = 300.0
CORPUS = ROOT.parent / "shared" / "corpus" / "documenso-prisma"
SECRET = "bench-signing-secret"


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


def _stats(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, int(round(0.95 * len(ordered))) - 1)]
    return (f"median {statistics.median(ordered):7.1f} ms   p95 {p95:7.1f} ms   max {ordered[-1]:7.1f} ms   "
            f"p95/target {p95 / TARGET_MS:5.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=60, help="requests of each kind")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args()

    workdir = Path(tempfile.gettempdir()) / "guardian-bench"
    admin = ensure_postgres(None, workdir)
    name, state_url = create_database(admin, "gb_ack")
    upgrade(state_url)
    redis_url = with_redis_db(ensure_redis(None, workdir), 14)
    standin = SlackStandIn().start()
    config = GuardianConfig.model_validate({"environments": {"staging": {
        "database_url_env": "BENCH_UNUSED_URL", "approvers": ["U_A"], "allow_adhoc_sql": True}}})
    settings = Settings(slack_bot_token=standin.token, slack_signing_secret=SECRET, slack_api_url=standin.url,
                        database_url=state_url, redis_url=redis_url)
    client = WebClient(token=standin.token, base_url=standin.url)
    store = Store(state_url)
    redis = Redis.from_url(redis_url)
    flow = Flow(settings, config, store, redis, client)
    app = build_app(settings, config, client, flow=flow)
    import waitress

    server = waitress.create_server(build_wsgi_app(app), host="127.0.0.1", port=0, threads=8)
    threading.Thread(target=server.run, daemon=True).start()
    sender = SlackSender(f"http://127.0.0.1:{server.effective_port}{EVENTS_PATH}", signing_secret=SECRET)
    request = store.create_request("staging", "U_REQ", [NewMigration(name="1_x", sql="select 1;")])

    stop = multiprocessing.Event()
    counter = multiprocessing.Value("i", 0)
    busy = multiprocessing.Process(target=_analyse_forever, args=(stop, counter), daemon=True)
    busy.start()
    import logging; logging.basicConfig(level=logging.DEBUG) if "--debug" in sys.argv else None
    time.sleep(2.0)  # let the analysis get going
    plan_ms, click_ms = [], []
    try:
        for i in range(args.n):
            start = time.perf_counter()
            sent = sender.slash_command("plan staging pending", user=SlackUser(id="U_REQ", name="req"),
                                        response_url=standin.response_url(f"p{i}"))
            plan_ms.append((time.perf_counter() - start) * 1000)
            assert sent.status == 200, sent
            start = time.perf_counter()
            sent = sender.block_action(ActionId.APPROVE.value, value=str(request.id),
                                       user=SlackUser(id="U_OUT", name="out"),
                                       response_url=standin.response_url(f"c{i}"))
            click_ms.append((time.perf_counter() - start) * 1000)
            assert sent.status == 200, sent
            time.sleep(0.05)
    finally:
        stop.set()
        busy.join(timeout=30)
        stop_server(server)
        standin.stop()
        store.close()
        redis.flushdb()
        drop_database(admin, name)
    print(f"ack latency over local HTTP, {args.n} requests each, 1 MB analyses completed meanwhile: {counter.value}")
    print(f"  /migrate plan   {_stats(plan_ms)}")
    print(f"  button click    {_stats(click_ms)}")
    print(f"  baseline: Slack-felt target {TARGET_MS:.0f} ms p95 (ratio < 1.0 is within target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
