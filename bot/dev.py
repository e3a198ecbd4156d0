"""``guardian dev``: PostgreSQL, Redis, the demo project, the Slack stand-in, the bot, a worker and a Slack-like page.

Usage::

    guardian dev                   # prints the page's URL; Ctrl-C (or SIGTERM) stops everything it started
    GUARDIAN_CONFIG=guardian.toml guardian dev --port 3000 --page-port 3001 --no-browser

Environment (all optional): GUARDIAN_CONFIG (your project instead of the demo), GUARDIAN_DEV_DIR
(workdir, default .guardian/dev), GUARDIAN_DEV_PAGE_PORT (--page-port's default, 3001; 0 picks one),
GUARDIAN_DEV_DB_PREFIX (database names, default "guardian"), GUARDIAN_DEV_REDIS_DB (default 1),
GUARDIAN_DEV_REMIND_AFTER (the demo's [reminders] after, default 4h),
DATABASE_ADMIN_URL (a PostgreSQL to use instead of 127.0.0.1:5432 or the embedded one).
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import faulthandler
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import webbrowser
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis as redis_lib

from bot import redaction
from bot.config import GuardianConfig, Settings, load_config
from bot.errors import GuardianError
from bot.demo import DemoProject, DevUser, create_demo, demo_people
from bot.local_services import ensure_postgres, ensure_redis, with_database, with_redis_db
from bot.schema import upgrade

log = logging.getLogger(__name__)
TOTAL_STEPS = 8


class Stopped(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C so that everything started is stopped."""


def _step(n: int, text: str) -> None:
    print(f"[{n}/{TOTAL_STEPS}] {text}", flush=True)


@dataclass
class DevOptions:
    """What ``guardian dev`` reads from the command line and the environment."""

    port: int = 3000
    page_port: int = 3001
    workdir: Path = Path(".guardian/dev")
    config: Path | None = None  # None: the demo project
    db_prefix: str = "guardian"
    redis_db: int = 1
    open_browser: bool = True
    verbose: bool = False
    admin_url: str | None = field(default=None, repr=False)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "DevOptions":
        env = os.environ
        port = int(getattr(args, "port", 3000))
        config = env.get("GUARDIAN_CONFIG")
        page_port = getattr(args, "page_port", None)
        return cls(
            port=port,
            page_port=int(page_port if page_port is not None else
                          (env.get("GUARDIAN_DEV_PAGE_PORT") or (0 if port == 0 else 3001))),
            workdir=Path(env.get("GUARDIAN_DEV_DIR") or ".guardian/dev").resolve(),
            config=Path(config).resolve() if config else None,
            db_prefix=env.get("GUARDIAN_DEV_DB_PREFIX") or "guardian",
            redis_db=int(env.get("GUARDIAN_DEV_REDIS_DB") or 1),
            open_browser=not getattr(args, "no_browser", False),
            verbose=bool(getattr(args, "verbose", False)),
            admin_url=env.get("DATABASE_ADMIN_URL") or None,
        )


def _fresh_database(admin_url: str, name: str, *, reset: bool) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if reset:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(admin_url, name)


def _drop_demo_databases(admin_url: str, prefix: str, state_db: str) -> None:
    """On stop: the demo's staging and production databases and the bot's demo state go (the seeded template
    stays, so the next start is quick); a `guardian dev` killed with -9 leaves them, and its next start
    replaces them."""
    from bot.demo import ENVIRONMENTS

    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            for name in (*(f"{prefix}_demo_{env}" for env in ENVIRONMENTS), state_db):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error as exc:
        log.warning("the demo's databases were not dropped (%s); the next start replaces them", type(exc).__name__)


def _people(config: GuardianConfig, demo: DemoProject | None) -> tuple[str, str, list[DevUser]]:
    """The channel and the people on the page: the demo's, else the config's approvers plus a requester and an outsider."""
    if demo is not None:
        return demo.channel, demo.channel_name, list(demo.users)
    channel, channel_name, _ = demo_people()
    channel = config.slack.channel or channel
    users = [DevUser("U_DEV_REQUESTER", "requester", "Dev Requester", "requester")]
    seen = {users[0].id}
    for env in config.environments.values():
        for approver in env.approvers:
            if approver not in seen and not approver.startswith("S"):
                seen.add(approver)
                users.append(DevUser(approver, approver.lower(), approver, f"approver ({env.name})"))
    users.append(DevUser("U_DEV_OUTSIDER", "outsider", "Dev Outsider", "outsider"))
    return channel, channel_name, users


def _quiet_logging(workdir: Path, verbose: bool) -> Path:
    """Logs go to a file; the terminal shows progress and warnings (everything with -v)."""
    path = workdir / "guardian.log"
    root = logging.getLogger()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    for other in root.handlers:
        if other is not handler and not verbose:
            other.setLevel(logging.WARNING)
    return path


_PR_SET_PDEATHSIG = 1


@contextlib.contextmanager
def _port_taken(port: int, what: str, option: str):
    """A port another program holds is one line naming it and the option that moves it (not a traceback)."""
    try:
        yield
    except (OSError, GuardianError) as exc:
        code = exc.errno if isinstance(exc, OSError) else errno.EADDRINUSE if exc.code == "bind-failed" else None
        if code not in (errno.EADDRINUSE, errno.EACCES):
            raise
        reason = "is taken by another program" if code == errno.EADDRINUSE else "cannot be used (permission)"
        raise GuardianError(f"port {port} ({what}) {reason}; stop that program or choose another port with "
                            f"`guardian dev {option} N` (0 picks a free one)", code="port-taken") from None


def _worker_preexec(parent: int):
    """Between fork and exec of the worker: its own process group (stopped as one) and the kernel's promise
    (PR_SET_PDEATHSIG) that it is killed when ``guardian dev`` dies, however it dies (even SIGKILL); its job and
    analysis processes die with it the same way (workers/worker.py)."""
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:  # start_new_session (setsid) is done by subprocess itself, before this
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # guardian dev died before prctl took effect
            os._exit(1)

    return preexec


OWN_KEYS = ("rq:*", "guardian:*")  # RQ's queues and jobs, and Guardian's own (leases, counters, fleet cards)


def clear_own_keys(client: redis_lib.Redis) -> int:
    """Delete the keys RQ and Guardian keep in this Redis database, and nothing else (never FLUSHDB: the database
    may hold someone else's data). Returns how many were deleted."""
    deleted = 0
    for pattern in OWN_KEYS:
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += client.delete(*batch)
                batch.clear()
        if batch:
            deleted += client.delete(*batch)
    return deleted


def _stop_worker(worker: subprocess.Popen) -> None:
    """SIGTERM the worker's process group (it and its job processes), SIGKILL what is left after 10 s."""
    if worker.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=10)
    except subprocess.TimeoutExpired:
        log.warning("the worker did not stop in 10 s; killing it")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=5)


def _start(opts: DevOptions, stack: contextlib.ExitStack) -> tuple[str, subprocess.Popen]:
    """Start everything, registering each stop on ``stack``; returns the page URL and the worker."""
    from bot.devpage.server import DevPage
    from bot.slack.sender import SlackSender
    from bot.slack.server import EVENTS_PATH, make_server, stop_server
    from bot.slack.standin import SlackStandIn

    _step(1, "PostgreSQL: the configured one, else 127.0.0.1:5432, else an embedded server")
    admin = ensure_postgres(opts.admin_url, opts.workdir)
    _step(2, "Redis: 127.0.0.1:6379, else an embedded server")
    redis_url = with_redis_db(ensure_redis(None, opts.workdir), opts.redis_db)
    demo_mode = opts.config is None
    if demo_mode:
        client = redis_lib.Redis.from_url(redis_url)
        try:  # a fresh demo: no job left over from the last run; anyone else's keys in this database stay
            clear_own_keys(client)
        finally:
            client.close()
    _step(3, "the bot's own database and schema")
    state_db = f"{opts.db_prefix}_dev{'_demo' if demo_mode else ''}"
    state_url = _fresh_database(admin, state_db, reset=demo_mode)
    if demo_mode:  # every start makes the demo afresh: nothing is lost by not leaving its databases behind
        stack.callback(_drop_demo_databases, admin, opts.db_prefix, state_db)
    upgrade(state_url)
    demo: DemoProject | None = None
    if demo_mode:
        _step(4, "demo project: git repository, guardian_demo_staging and _production (200,000 orders)")
        demo = create_demo(admin, opts.workdir, prefix=opts.db_prefix)
        os.environ.update(demo.env)
        config_path = demo.config_path
    else:
        config_path = opts.config
        _step(4, f"your project: {config_path}")
    config = load_config(config_path, required=True)
    _step(5, "the Slack API stand-in")
    standin = SlackStandIn().start()
    stack.callback(standin.stop)
    channel, channel_name, users = _people(config, demo)
    standin.add_bot_to(channel)  # the demo channel has @Guardian in it, as a real one would
    for user in users:
        standin.users[user.id] = {"name": user.name, "real_name": user.real_name}
    signing_secret = secrets.token_hex(16)
    env = {"DATABASE_URL": state_url, "REDIS_URL": redis_url, "SLACK_API_URL": standin.url,
           "SLACK_BOT_TOKEN": standin.token, "SLACK_SIGNING_SECRET": signing_secret,
           "GUARDIAN_CONFIG": str(config_path)}
    settings = Settings(database_url=state_url, redis_url=redis_url, slack_api_url=standin.url,
                        slack_bot_token=standin.token, slack_signing_secret=signing_secret,
                        guardian_config=config_path)
    redaction.register_configured(settings, config)
    redaction.install_log_scrubbing()
    _step(6, "the bot over HTTP")
    with _port_taken(opts.port, "the bot's HTTP endpoint", "--port"):
        server, port = make_server(settings, config, host="127.0.0.1", port=opts.port)
    os.environ.update(env)  # the flow's pipeline hooks in this process load settings from the environment
    serving = threading.Thread(target=server.run, name="guardian-serve", daemon=True)
    serving.start()
    stack.callback(serving.join, 5)
    stack.callback(stop_server, server)
    _step(7, "a worker")
    worker_log = open(opts.workdir / "worker.log", "ab")
    stack.callback(worker_log.close)
    worker = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], env={**os.environ, **env},
                              stdout=worker_log, stderr=subprocess.STDOUT,
                              start_new_session=True, preexec_fn=_worker_preexec(os.getpid()))
    stack.callback(_stop_worker, worker)
    _step(8, "the Slack-like page")
    sender = SlackSender(f"http://127.0.0.1:{port}{EVENTS_PATH}", signing_secret=signing_secret)
    with _port_taken(opts.page_port, "the Slack-like page", "--page-port"):
        page = DevPage(standin, sender, channel=channel, channel_name=channel_name, users=users,
                       port=opts.page_port, title="Guardian dev" + (" · demo" if demo_mode else "")).start()
    stack.callback(page.stop)
    print(f"\nGuardian is running{' the demo' if demo_mode else ''}.\n"
          f"  Bot endpoint:    http://127.0.0.1:{port}{EVENTS_PATH}\n"
          f"  Slack stand-in:  {standin.url}\n"
          f"  Logs:            {opts.workdir / 'guardian.log'}, {opts.workdir / 'worker.log'}\n"
          + (f"  Demo repository: {demo.repo}\n  Try: /migrate plan staging pending   (as Dana, then approve as "
             "Alice and Bob)\n" if demo else "")
          + f"  Page:            {page.url}\nPress Ctrl-C to stop everything.", flush=True)
    return page.url, worker


def run_dev(args: argparse.Namespace) -> int:
    """Start everything, wait for Ctrl-C, SIGTERM or a dead worker, then stop what was started, in reverse."""
    opts = DevOptions.from_args(args)
    opts.workdir.mkdir(parents=True, exist_ok=True)
    _quiet_logging(opts.workdir, opts.verbose)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 <pid>`: every thread's stack, on stderr

    def on_term(signum: int, frame: object) -> None:
        raise Stopped()

    previous = signal.signal(signal.SIGTERM, on_term)
    # Ctrl-C (or kill -INT) stops everything even when guardian dev was started with SIGINT ignored, as a shell
    # script's background job is: Python then never installs its KeyboardInterrupt handler by itself
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    code = 0
    try:
        with contextlib.ExitStack() as stack:
            try:
                url, worker = _start(opts, stack)
                if opts.open_browser and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
                    webbrowser.open(url)
                while worker.poll() is None:
                    time.sleep(0.3)
                print(f"the worker exited with {worker.returncode}; see {opts.workdir / 'worker.log'}; stopping",
                      file=sys.stderr, flush=True)
                code = 1
            except (KeyboardInterrupt, Stopped):
                pass
            finally:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                print("stopping…", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
    print("stopped.", flush=True)
    return code
