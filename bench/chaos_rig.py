"""The chaos suite's rig: PostgreSQL state + one target, a redis-server of its own, the Slack stand-in and a `guardian worker` subprocess.

Usage (bench/chaos.py and tests/workers/test_chaos.py)::

    rig = Rig()                    # or Rig(admin_url=..., state_url=..., target_url=..., workdir=...)
    rig.start_worker()
    request = rig.request("t1")    # an approved three-file request with a Slack thread
    rig.start(request.id)
    rig.kill("horse")              # kill -9 RQ's work horse (or "parent", "both")
    rig.close()
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo
from redis import Redis
from redis.exceptions import RedisError

from bot.config import BackupConfig, EnvironmentConfig, GuardianConfig, ProjectConfig, Settings, SlackConfig
from bot.local_services import create_database, drop_database, ensure_postgres
from bot.models import RequestStatus
from bot.schema import upgrade
from bot.slack.standin import SlackStandIn
from bot.store import NewMigration
from workers.pipeline import start_run
from workers.runtime import Runtime, install

ROOT = Path(__file__).resolve().parent.parent
ENV = "chaos"
ENV_VAR = "GUARDIAN_CHAOS_TARGET_URL"
CHANNEL = "C0CHAOS"


class RedisServer:
    """A redis-server of our own on a free port, so the bench may flush, restart and stop it."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            sys.exit("redis-server not found; install redis-server")
        self.binary, self.workdir = binary, workdir
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if Redis.from_url(self.url, socket_timeout=1).ping():
                    return
            except RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


def descendants(pid: int) -> list[int]:
    """Live processes below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _lineage(pid: int) -> list[int]:
    """``pid`` and its ancestors up to init (from /proc; a process gone while walking ends the list)."""
    chain = []
    while pid > 1 and len(chain) < 64:
        chain.append(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return chain


def horse_of(parent: int) -> int | None:
    """RQ's work horse: the worker's child that leads its own process group (rq calls os.setpgrp in it)."""
    for pid in descendants(parent):
        try:
            if os.getpgid(pid) == pid:
                return pid
        except ProcessLookupError:
            continue
    return None


class Rig:
    """PostgreSQL state + one target, our own Redis, the Slack stand-in and a `guardian worker` subprocess."""

    def __init__(self, *, admin_url: str | None = None, state_url: str | None = None, target_url: str | None = None,
                 workdir: Path | None = None) -> None:
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="guardian-chaos-")
        self.workdir = workdir or Path(self._tmp.name)
        self.admin_url = admin_url or ensure_postgres(os.environ.get("GUARDIAN_BENCH_DATABASE_URL"), self.workdir)
        self._dropped: list[str] = []
        if state_url is None:
            name, state_url = create_database(self.admin_url, "chaos_state")
            self._dropped.append(name)
            upgrade(state_url)
        if target_url is None:
            name, target_url = create_database(self.admin_url, "chaos_target")
            self._dropped.append(name)
        self.state_url, self.target_url = state_url, target_url
        self.state_db = conninfo.conninfo_to_dict(state_url)["dbname"]
        self.redis_server = RedisServer(self.workdir)
        self.redis_server.start()
        self.redis = Redis.from_url(self.redis_server.url)
        self.standin = SlackStandIn(rate_window=0.5).start()  # Slack's limits, 120x faster: the bench posts a lot
        os.environ[ENV_VAR] = target_url
        backup_dir = self.workdir / "backups"
        config = GuardianConfig(project=ProjectConfig(layout="sql"), slack=SlackConfig(channel=CHANNEL),
                                environments={ENV: EnvironmentConfig(name=ENV, database_url_env=ENV_VAR,
                                                                     lock_timeout="2s", statement_timeout="2min")},
                                backup=BackupConfig(dir=backup_dir, mode="schema"))
        settings = Settings(database_url=state_url, redis_url=self.redis_server.url,
                            slack_bot_token=self.standin.token, slack_api_url=self.standin.url)
        self.rt = Runtime(settings=settings, config=config)
        install(self.rt)
        self.config_path = self.workdir / "guardian.toml"
        self.config_path.write_text(
            f'[project]\nlayout = "sql"\n[slack]\nchannel = "{CHANNEL}"\n'
            f'[environments.{ENV}]\ndatabase_url_env = "{ENV_VAR}"\nlock_timeout = "2s"\nstatement_timeout = "2min"\n'
            f'[backup]\ndir = "{backup_dir}"\nmode = "schema"\n')
        self.env = {**os.environ, "DATABASE_URL": state_url, "REDIS_URL": self.redis_server.url,
                    "GUARDIAN_CONFIG": str(self.config_path), "SLACK_BOT_TOKEN": self.standin.token,
                    "SLACK_API_URL": self.standin.url, ENV_VAR: target_url, "PYTHONUNBUFFERED": "1"}
        self.worker: subprocess.Popen | None = None
        self.worker_starts = 0
        self._started_at = 0.0
        self.leftovers: list[int] = []  # processes of killed workers still alive after the trial
        self.leftover_kinds: list[str] = []  # what each was: its command line and its parent
        self._log = open(self.workdir / "worker.log", "ab")
        self._serial = 0

    # ------------------------------------------------------------------ worker
    def start_worker(self) -> None:
        guardian = Path(sys.executable).with_name("guardian")
        cmd = [str(guardian), "worker"] if guardian.exists() else [sys.executable, "-m", "bot.cli", "worker"]
        self.worker = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.worker_starts += 1
        self._started_at = time.monotonic()

    def ensure_worker(self, *, pace_s: float = 1.0) -> None:
        """Start a worker when none runs (at most once per ``pace_s``: a worker may die at once while Redis is down)."""
        if (self.worker is None or self.worker.poll() is not None) and time.monotonic() - self._started_at >= pace_s:
            self.start_worker()

    def kill(self, victim: str) -> str:
        """kill -9 the worker parent, its work horse, or both; returns what was killed."""
        assert self.worker is not None
        parent = self.worker.pid
        horse = horse_of(parent)
        killed = []
        if victim in ("horse", "both") and horse is not None:
            os.kill(horse, signal.SIGKILL)
            killed.append("horse")
        if victim in ("parent", "both") or horse is None:
            os.kill(parent, signal.SIGKILL)
            killed.append("parent")
        if "parent" in killed:
            self.worker.wait(timeout=10)
        return "+".join(killed) if killed else "nothing"

    def _was_ours(self, pid: int) -> bool:
        try:
            return "worker" in Path(f"/proc/{pid}/cmdline").read_text() and \
                Path(f"/proc/{pid}/environ").read_bytes().find(self.redis_server.url.encode()) >= 0
        except OSError:
            return False

    def sweep(self) -> int:
        """Processes of dead workers still running (an orphaned RQ scheduler or horse): counted, then ended."""
        live = self.worker.pid if self.worker and self.worker.poll() is None else None
        # below the live worker means its own (a horse or analysis process it may have started a moment ago)
        stray = [p for p in _all_pids() if p != os.getpid() and self._was_ours(p) and live not in _lineage(p)]
        for pid in stray:
            self.leftover_kinds.append(_describe(pid))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.leftovers += stray
        return len(stray)

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            for pid in [self.worker.pid] + descendants(self.worker.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.worker.wait(timeout=10)
        self.worker = None

    # ---------------------------------------------------------------- requests
    def request(self, tag: str, *, slow: bool = True) -> Any:
        """An approved request of three files (tables <tag>_a/_b/_c) with a Slack thread, as approval leaves it."""
        self._serial += 1
        version = f"{int(time.time()) % 100000:05d}{self._serial:04d}"
        sleep = "SELECT pg_sleep(0.6);\n" if slow else ""
        files = [(f"{version}1_{tag}_a", f"CREATE TABLE {tag}_a (id int PRIMARY KEY);\nINSERT INTO {tag}_a VALUES (1);"),
                 (f"{version}2_{tag}_b", f"CREATE TABLE {tag}_b (id int);\n{sleep}"),
                 (f"{version}3_{tag}_c", f"CREATE TABLE {tag}_c (id int);\n{sleep}")]
        verify = {files[2][0]: "SELECT true FROM pg_sleep(0.8)" if slow else "SELECT true"}
        store = self.rt.store
        req = store.create_request(
            ENV, "U0CHAOS", [NewMigration(name=n, version=n.split("_", 1)[0], sql=s, path=f"migrations/{n}.sql",
                                          verify_sql=verify.get(n)) for n, s in files],
            status=RequestStatus.APPROVED, source="adhoc", policy_version=self.rt.flow.policy(ENV).version)
        ts = self.rt.slack.chat_postMessage(channel=CHANNEL, text=f"request {req.id}")["ts"]
        return store.update_request(req.id, channel=CHANNEL, message_ts=ts, thread_ts=ts)

    def start(self, request_id: int) -> None:
        try:
            start_run(self.rt, request_id, connection=self.redis)
        except RedisError:  # Redis is down: the intent is in PostgreSQL; the worker's pump sends it later
            pass

    def status(self, request_id: int) -> RequestStatus:
        return self.rt.store.get_request(request_id).status

    def target(self) -> psycopg.Connection:
        return psycopg.connect(self.target_url, autocommit=True)

    def keep(self) -> None:
        """Leave the databases and the working directory for a post-mortem."""
        self._dropped.clear()
        if self._tmp is not None:
            self._tmp._finalizer.detach()  # type: ignore[attr-defined]
            self._tmp = None

    def close(self) -> None:
        self.stop_worker()
        self.sweep()
        install(None)
        self.rt.close()
        self.standin.stop()
        self.redis_server.stop()
        self._log.close()
        for name in self._dropped:
            drop_database(self.admin_url, name)
        if self._tmp is not None:
            self._tmp.cleanup()


def _describe(pid: int) -> str:
    """A process's command line, parent and state, e.g. 'python -m bot.cli worker (ppid 1, S)'."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return f"{cmd[-80:]} (ppid {fields[1]}, {fields[0]})"
    except OSError:
        return f"pid {pid} (gone)"


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
