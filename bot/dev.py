"""``guardian dev``: everything locally — PostgreSQL, Redis, the Slack stand-in, the bot and a worker.

Usage::

    guardian dev            # prints the URLs; Ctrl-C stops everything it started
"""
from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psycopg

from bot.config import Settings, load_config
from bot.local_services import ensure_postgres, ensure_redis, with_database, with_redis_db
from bot.schema import upgrade

WORKDIR = Path(os.environ.get("GUARDIAN_DEV_DIR", ".guardian/dev"))
DEV_DATABASE = "guardian_dev"


def _step(n: int, total: int, text: str) -> None:
    print(f"[{n}/{total}] {text}", flush=True)


def _ensure_database(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(admin_url, name)


def run_dev(args: argparse.Namespace) -> int:
    from bot.slack.server import make_server, stop_server
    from bot.slack.standin import SlackStandIn

    total = 5
    WORKDIR.mkdir(parents=True, exist_ok=True)
    _step(1, total, "PostgreSQL: looking for one on 127.0.0.1:5432, else starting an embedded server")
    admin = ensure_postgres(os.environ.get("DATABASE_ADMIN_URL"), WORKDIR)
    state_url = _ensure_database(admin, DEV_DATABASE)
    _step(2, total, "Redis: looking for one on 127.0.0.1:6379, else starting an embedded server")
    redis_url = with_redis_db(ensure_redis(None, WORKDIR), 1)
    _step(3, total, "applying the bot's schema")
    upgrade(state_url)
    _step(4, total, "starting the Slack API stand-in")
    standin = SlackStandIn().start()
    signing_secret = secrets.token_hex(16)
    env = {
        **os.environ,
        "DATABASE_URL": state_url,
        "REDIS_URL": redis_url,
        "SLACK_API_URL": standin.url,
        "SLACK_BOT_TOKEN": standin.token,
        "SLACK_SIGNING_SECRET": signing_secret,
    }
    settings = Settings(
        database_url=state_url, redis_url=redis_url, slack_api_url=standin.url,
        slack_bot_token=standin.token, slack_signing_secret=signing_secret,
        guardian_config=Path(os.environ.get("GUARDIAN_CONFIG", "guardian.toml")),
    )
    config = load_config(settings.guardian_config)
    _step(5, total, "starting the bot (HTTP) and a worker")
    server, port = make_server(settings, config, host="127.0.0.1", port=args.port)
    worker = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], env=env)
    serving = threading.Thread(target=server.run, name="guardian-serve", daemon=True)
    serving.start()
    print(f"\nGuardian is running.\n  Slack endpoint:  http://127.0.0.1:{port}/slack/events\n"
          f"  Slack stand-in:  {standin.url}\n  Press Ctrl-C to stop everything.", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            if worker.poll() is not None:
                print("the worker exited; stopping", file=sys.stderr)
                break
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping…", flush=True)
        stop_server(server)
        serving.join(timeout=5)
        worker.terminate()
        try:
            worker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            worker.kill()
        standin.stop()
    return 0
