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
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bench.chaos_rig import ENV, ENV_VAR, RedisServer, Rig, descendants, horse_of  # noqa: E402,F401
from bot.models import DbState, RequestStatus  # noqa: E402
from workers.watchdog import application_name, lock_holder, target_lock_key  # noqa: E402

logging.getLogger("psycopg.pool").setLevel(logging.ERROR)  # the cut state database is expected to refuse us
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
    for kind in rig.leftover_kinds:
        print(f"  left running: {kind}")
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
    for number, trial in enumerate(trials, start=1):
        trial.number = number
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
