"""Chaos suite: kill -9 a real `guardian worker` (parent, work horse or both) at random points of backup, apply and
verify; flush, restart and stop Redis; cut the bot's database; terminate the target session. Every outcome is
checked against the truth.

Usage::

    .venv/bin/python bench/chaos.py                     # 100 kill -9 trials + 3 of every other fault at each step
    .venv/bin/python bench/chaos.py --trials 12 --others 1 --seed 7

Per trial: a request of three migration files (the second and third sleep, so a kill lands mid-apply, and a
verify query that sleeps) on one throwaway target, approved and run by a `guardian worker` subprocess; when the
request reaches the step, after a random part of it, the fault; then a worker is started again (as a process
manager would) and the request must settle. Correct means: every file all-or-nothing with its ledger row (its
table exists iff its ledger row does), the recorded status and db_state match what the target holds, an
incident exists where the request failed after touching the database, no step left running, the target's
advisory lock free and no session of the request left, and (after a failed request) a next request on the same
target succeeds. Printed: trials per step and fault, correct outcomes, each incorrect trial, the slowest
recovery (fault -> the request settled). Services: GUARDIAN_BENCH_DATABASE_URL, else local PostgreSQL; Redis is
a redis-server of the bench's own on a free port (it gets flushed, restarted and stopped).
"""
from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import conninfo  # noqa: E402
from redis import Redis  # noqa: E402
from redis.exceptions import RedisError  # noqa: E402

from bot.config import BackupConfig, EnvironmentConfig, GuardianConfig, ProjectConfig, Settings, SlackConfig  # noqa: E402
from bot.local_services import create_database, drop_database, ensure_postgres  # noqa: E402
from bot.models import DbState, RequestStatus  # noqa: E402
from bot.schema import upgrade  # noqa: E402
from bot.slack.standin import SlackStandIn  # noqa: E402
from bot.store import NewMigration  # noqa: E402
from workers.pipeline import start_run  # noqa: E402
from workers.runtime import Runtime, install  # noqa: E402
from workers.watchdog import application_name, lock_holder, target_lock_key  # noqa: E402

logging.getLogger("psycopg.pool").setLevel(logging.ERROR)  # the cut state database is expected to refuse us
ENV = "chaos"
ENV_VAR = "GUARDIAN_CHAOS_TARGET_URL"
CHANNEL = "C0CHAOS"
PHASES = {"backup": RequestStatus.BACKING_UP, "apply": RequestStatus.APPLYING, "verify": RequestStatus.VERIFYING}
PHASE_S = {"backup": 0.25, "apply": 1.3, "verify": 0.9}  # about how long each step lasts with the files below
VICTIMS = ("parent", "horse", "both")
FAULTS = {"kill": VICTIMS, "redis": ("flush", "restart", "down"), "statedb": ("cut",), "target": ("terminate",)}
TERMINAL = {RequestStatus.SUCCEEDED, RequestStatus.FAILED}
SETTLE_TIMEOUT_S = 120.0
REDIS_DOWN_S = 3.0
STATE_CUT_S = 2.0


@dataclass
class Trial:
    number: int
    kind: str  # kill / redis / statedb / target
    phase: str  # backup / apply / verify
    fault: str  # parent / horse / both / flush / restart / down / cut / terminate
    at: float  # fraction of the step's usual length after which the fault lands


@dataclass
class Result:
    trial: Trial
    request_id: int = 0
    correct: bool = True
    problems: list[str] = field(default_factory=list)
    recovery_s: float = 0.0
    status: str = ""
    db_state: str | None = None
    applied: int = 0
    note: str = ""
    landed: str = ""  # the step the request was in when the fault struck

    def wrong(self, problem: str) -> None:
        self.correct = False
        self.problems.append(problem)


# ---------------------------------------------------------------------------------------------- services
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
        self.standin = SlackStandIn().start()
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
        current = set([self.worker.pid] + descendants(self.worker.pid)) if self.worker and self.worker.poll() is None \
            else set()
        stray = [p for p in _all_pids() if p not in current and p != os.getpid() and self._was_ours(p)]
        for pid in stray:
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


def _all_pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


# ---------------------------------------------------------------------------------------------- faults
def _cut_state(rig: Rig, seconds: float) -> None:
    with psycopg.connect(rig.admin_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{rig.state_db}" ALLOW_CONNECTIONS false')
        try:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                         "AND pid <> pg_backend_pid()", (rig.state_db,))
            time.sleep(seconds)
        finally:
            conn.execute(f'ALTER DATABASE "{rig.state_db}" ALLOW_CONNECTIONS true')


def _terminate_target(rig: Rig, request_id: int, phase: str) -> str:
    names = {"backup": [application_name(request_id, "backup")], "apply": [application_name(request_id)],
             "verify": [application_name(request_id, "verify")]}[phase]
    with rig.target() as conn:
        ended = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                             "WHERE application_name = ANY(%s)", (names,)).fetchone()[0]
    return f"{ended} session(s) terminated"


def inject(rig: Rig, trial: Trial, request_id: int) -> str:
    """The fault itself; returns what was done."""
    if trial.kind == "kill":
        killed = rig.kill(trial.fault)
        rig.ensure_worker(pace_s=0)  # a process manager restarts a dead worker
        return f"killed {killed}"
    if trial.kind == "redis":
        if trial.fault == "flush":
            rig.redis.flushall()
        else:
            rig.redis_server.stop()
            time.sleep(0.3 if trial.fault == "restart" else REDIS_DOWN_S)
            rig.redis_server.start()
        return f"redis {trial.fault}"
    if trial.kind == "statedb":
        _cut_state(rig, STATE_CUT_S)
        return f"state database cut for {STATE_CUT_S:g}s"
    return _terminate_target(rig, request_id, trial.phase)


# ---------------------------------------------------------------------------------------------- checks
def _truth(rig: Rig, request: Any) -> tuple[int, list[str]]:
    """(files applied, problems) from the target: each file's table exists iff its ledger row does."""
    problems, applied = [], 0
    with rig.target() as conn:
        history = conn.execute("SELECT to_regclass('guardian.schema_history') IS NOT NULL").fetchone()[0]
        for ref in request.migrations:
            table = ref.name.split("_", 1)[1]
            exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]
            ledger = history and conn.execute("SELECT EXISTS (SELECT 1 FROM guardian.schema_history WHERE version = %s)",
                                              (ref.version,)).fetchone()[0]
            if exists != ledger:
                problems.append(f"{ref.name}: table {'present' if exists else 'absent'} but ledger row "
                                f"{'present' if ledger else 'absent'}")
            applied += bool(exists and ledger)
        if lock_holder(conn, target_lock_key(ENV)) is not None:
            problems.append("the target's advisory lock is still held")
        deadline = time.monotonic() + 5  # a session closing as the request settles is gone within moments
        while True:
            left = [r[0] for r in conn.execute("SELECT application_name || ' (' || state || ')' FROM pg_stat_activity "
                                               "WHERE application_name LIKE %s",
                                               (application_name(request.id) + "%",)).fetchall()]
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if left:
            problems.append(f"session(s) of the request still on the target 5 s after it settled: {left}")
    return applied, problems


def check(rig: Rig, result: Result) -> None:
    store = rig.rt.store
    request = store.get_request(result.request_id)
    result.status, result.db_state = request.status.value, request.db_state.value if request.db_state else None
    applied, problems = _truth(rig, request)
    result.applied = applied
    for problem in problems:
        result.wrong(problem)
    total = len(request.migrations)
    if request.status is RequestStatus.SUCCEEDED:
        if applied != total:
            result.wrong(f"succeeded with {applied} of {total} files in the database")
    elif request.status is RequestStatus.FAILED:
        expected = {0: {DbState.UNTOUCHED}, total: {DbState.APPLIED_UNVERIFIED, DbState.APPLIED}}.get(
            applied, {DbState.PARTIALLY_APPLIED})
        if request.db_state not in expected:
            result.wrong(f"failed saying the database is {result.db_state} but {applied} of {total} files are in it")
        if applied and not _incident(rig, request.id):
            result.wrong("failed after touching the database, but no incident was opened")
        if request.error and "fix the file" in request.error and result.trial.kind != "kill":
            result.wrong(f"an infrastructure fault blamed on the file: {request.error[:200]}")
    else:
        result.wrong(f"did not settle within {SETTLE_TIMEOUT_S:g}s: still {request.status.value}")
    running = [s.step for s in store.list_steps(request.id) if s.status == "running"]
    if running and request.status in TERMINAL:
        result.wrong(f"step(s) {running} left running")


def _incident(rig: Rig, request_id: int, wait_s: float = 10.0) -> bool:
    """An incident for the request exists (it is opened just after the failure is recorded: allow a moment)."""
    deadline = time.monotonic() + wait_s
    while rig.rt.store.find_incident(request_id=request_id) is None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def next_request_succeeds(rig: Rig, tag: str) -> str | None:
    """A small request on the same target must run to succeeded; None, or what went wrong."""
    req = rig.request(tag, slow=False)
    rig.start(req.id)
    status = _settle(rig, req.id, 90)
    if status is not RequestStatus.SUCCEEDED:
        error = rig.rt.store.get_request(req.id).error
        return f"the next request on the target ended {status.value}: {error}"
    return None


def _settle(rig: Rig, request_id: int, timeout: float) -> RequestStatus:
    deadline = time.monotonic() + timeout
    while True:
        rig.ensure_worker()  # a worker that Redis or a fault took down is restarted, as a process manager would
        try:
            status = rig.status(request_id)
        except Exception:  # noqa: BLE001 - the state database may be cut right now; ask again
            status = RequestStatus.APPLYING
        if status in TERMINAL or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------- one trial
def run_trial(rig: Rig, trial: Trial) -> Result:
    """One request, one fault at ``trial.phase``, then the checks. The bench and tests/workers/test_chaos.py call this."""
    result = Result(trial=trial)
    rig.ensure_worker()
    request = rig.request(f"t{trial.number}_{trial.kind[:2]}")
    result.request_id = request.id
    rig.start(request.id)
    want = PHASES[trial.phase]
    order = list(PHASES.values())
    deadline = time.monotonic() + 60
    while True:
        status = rig.status(request.id)
        if status is want:
            break
        if status in TERMINAL or (status in order and order.index(status) > order.index(want)) \
                or time.monotonic() > deadline:
            result.note = f"step {trial.phase} missed (request was {status.value}); fault landed late"
            break
        time.sleep(0.01)
    if trial.kind == "target":  # wait for the session to be in a statement worth cutting
        time.sleep(0.3 if trial.phase != "backup" else 0.05)
    else:
        time.sleep(trial.at * PHASE_S[trial.phase])
    result.landed = _step_now(rig.status(request.id))
    clock = time.monotonic()
    if trial.kind == "statedb":
        cutter = threading.Thread(target=inject, args=(rig, trial, request.id))
        cutter.start()
        done = f"state database cut for {STATE_CUT_S:g}s"
    else:
        cutter = None
        done = inject(rig, trial, request.id)
    result.note = (result.note + "; " if result.note else "") + done
    status = _settle(rig, request.id, SETTLE_TIMEOUT_S)
    result.recovery_s = time.monotonic() - clock
    if cutter is not None:
        cutter.join()
    check(rig, result)
    stray = rig.sweep()
    if stray:
        result.note += f"; {stray} process(es) of a dead worker were still running"
    if status is RequestStatus.FAILED:
        problem = next_request_succeeds(rig, f"n{trial.number}")
        if problem:
            result.wrong(problem)
    return result


def _step_now(status: RequestStatus) -> str:
    return {v: k for k, v in PHASES.items()}.get(status, status.value)


def plan(trials: int, others: int, seed: int) -> list[Trial]:
    """``trials`` kill -9 trials over every (step, victim), then ``others`` of every other fault at every step."""
    rng = random.Random(seed)
    combos = [(p, v) for p in PHASES for v in VICTIMS]
    planned = [Trial(0, "kill", *combos[i % len(combos)], at=rng.random()) for i in range(trials)]
    for kind in ("redis", "statedb", "target"):
        for fault in FAULTS[kind]:
            for phase in PHASES:
                planned += [Trial(0, kind, phase, fault, at=rng.random()) for _ in range(others)]
    rng.shuffle(planned)
    for number, trial in enumerate(planned, start=1):
        trial.number = number
    return planned


def report(results: list[Result], rig: Rig, elapsed: float) -> None:
    by = Counter((r.trial.kind, r.trial.fault, r.landed) for r in results)
    ok = Counter((r.trial.kind, r.trial.fault, r.landed) for r in results if r.correct)
    print(f"\n{'fault':<18}{'struck in':<12}{'trials':>7}{'correct':>9}")
    for (kind, fault, landed), n in sorted(by.items()):
        print(f"{kind + ' ' + fault:<18}{landed:<12}{n:>7}{ok[(kind, fault, landed)]:>9}")
    kills = [r for r in results if r.trial.kind == "kill"]
    correct = sum(r.correct for r in results)
    print(f"\ntrials: {len(results)} ({len(kills)} kill -9), correct: {correct} "
          f"({100 * correct / max(1, len(results)):.1f}%), kill -9 correct: {sum(r.correct for r in kills)}")
    outcomes = Counter(f"{r.status}/{r.db_state}" if r.status == "failed" else r.status for r in results)
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    slowest = max(results, key=lambda r: r.recovery_s, default=None)
    if slowest is not None:
        s = slowest.trial
        print(f"slowest recovery: {slowest.recovery_s:.1f}s (trial {s.number}: {s.kind} {s.fault} at {s.phase}, "
              f"request {slowest.request_id} {slowest.status}) — target <= 15 s")
        kill_times = sorted(r.recovery_s for r in kills)
        if kill_times:
            print(f"kill -9 recovery: median {kill_times[len(kill_times) // 2]:.1f}s, max {kill_times[-1]:.1f}s")
    print(f"worker starts: {rig.worker_starts}; processes of dead workers found still running: {len(rig.leftovers)}")
    print(f"elapsed: {elapsed / 60:.1f} min")
    for r in results:
        if not r.correct:
            t = r.trial
            print(f"\nINCORRECT trial {t.number}: {t.kind} {t.fault} at {t.phase} (+{t.at:.2f}, struck in "
                  f"{r.landed}), request "
                  f"{r.request_id} {r.status}/{r.db_state}, {r.applied} file(s) in the database; {r.note}")
            for problem in r.problems:
                print(f"  - {problem}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100, help="kill -9 trials (default 100)")
    parser.add_argument("--others", type=int, default=3, help="trials of every other fault at every step (default 3)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--kinds", default="kill,redis,statedb,target", help="which faults to run")
    parser.add_argument("--keep", action="store_true", help="keep the databases and the worker log for a post-mortem")
    args = parser.parse_args(argv)
    kinds = set(args.kinds.split(","))
    trials = [t for t in plan(args.trials, args.others, args.seed) if t.kind in kinds]
    rig = Rig()
    results: list[Result] = []
    clock = time.monotonic()
    try:
        rig.start_worker()
        for trial in trials:
            result = run_trial(rig, trial)
            results.append(result)
            mark = "ok " if result.correct else "BAD"
            print(f"[{mark}] {trial.number:>3}/{len(trials)} {trial.kind:<7} {trial.fault:<9} in {result.landed:<9} "
                  f"-> {result.status}/{result.db_state or '-'} ({result.applied}/3 in db) in {result.recovery_s:.1f}s"
                  f"  {result.note}", flush=True)
    except KeyboardInterrupt:
        print("interrupted; reporting what ran")
    finally:
        elapsed = time.monotonic() - clock
        report(results, rig, elapsed)
        if args.keep:
            print(f"kept: worker log {rig.workdir / 'worker.log'}, state {rig.state_url}, target {rig.target_url}")
            rig.keep()
        rig.close()
    return 0 if results and all(r.correct for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
