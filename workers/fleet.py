"""Fleet rollouts: one approved request applied to many targets, one RQ job per target, canary first, then waves.

Usage (the apply step of a fleet request calls ``start``; the queue runs the rest, each target's job in
workers/fleet_target.py)::

    start(rt, step)                      # the approved target set -> rollout rows; the canary is claimed
    advance(request_id)                  # claim what the caps allow; between waves the health gate; finish or halt

State lives in PostgreSQL only (bot/store/fleet.py): claims count queued and running targets under one lock, so
``parallel`` and ``per_server`` hold across any number of workers. Each target's apply is the apply step's code
with the target's own advisory lock, ledger and timeouts; its ledger is the truth, so a target whose worker died
is sent back to waiting and its next job applies only what the ledger still lacks.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job

from bot.errors import GuardianError
from bot.fleet import FleetTarget, current_targets, open_target
from bot.models import Request
from bot.store.fleet import RolloutTarget
from bot.store.outbox import JobIntent
from workers import pipeline, report
from workers.enqueue import deliver
from workers.liveness import job_live, running_elsewhere
from workers.runtime import Runtime, runtime
from workers.watchdog import application_name, fleet_session_name

log = logging.getLogger(__name__)

TARGET_JOB = "fleet-target"  # workers/fleet_target.run
ADVANCE_JOB = "fleet-advance"
CARD_EVERY_S = 3.0  # Slack's chat.update allows about 50 a minute; the halt, the end and every control refresh at once
CARD_KEY = "guardian:fleet-card:{}"
BREACH_KEY = "guardian:fleet-breaches:{}"  # lock-wait breaches since the last wave, one JSON line each


def start(rt: Runtime, step: pipeline.StepRun) -> None:
    """The apply step of a fleet request: write the approved target set as the rollout (once), list targets added
    since the approval as excluded, say so in the thread, and claim the canary. The apply step stays running until
    the rollout succeeds (``advance`` then moves the request on)."""
    request = step.request
    env = rt.config.environment(request.environment)
    approved = (request.target or {}).get("fleet", {}).get("targets", [])
    rows = [{"target": t["id"], "kind": t["kind"], "url_env": t.get("url_env"), "server": t["server"],
             "wave": t.get("wave"), "files": t.get("files") or [],
             "state": "waiting" if t.get("wave") is not None else "excluded",
             "note": None if t.get("wave") is not None else
             f"{t['state']} at approval" + (f": {t['reason']}" if t.get("reason") else "")} for t in approved]
    if rt.store.create_rollout(request.id, rows):
        pipeline.redis_for(rt).delete(BREACH_KEY.format(request.id))  # none from an earlier database's request id
        known = {t["id"] for t in approved}
        try:
            late = [t for t in current_targets(env) if t.id not in known]
        except GuardianError as exc:  # the approved set still runs; what was added cannot be listed now
            log.warning("request %s: targets added since the approval cannot be listed: %s", request.id, exc)
            late = []
        rt.store.add_fleet_targets(request.id, [
            {"target": t.id, "kind": t.kind, "url_env": t.url_env, "server": t.server,
             "note": "added after the approval: not migrated; plan the fleet again to include it"} for t in late])
        runs = sum(1 for r in rows if r["state"] == "waiting")
        report.post(rt, request, rt.notifier.thread_note(rt.notifier.rollout_started(runs, [t.id for t in late])))
    advance(request.id)


def advance(request_id: int) -> None:
    """Claim the targets the caps allow; when a wave is done, run the health gate and open the next wave (after
    ``pause``); halt on the failure count or a false gate; when nothing is left, finish the request's apply step.
    Called by every target job when it ends, by the reconciler, and as the delayed job that ends a pause."""
    rt = runtime()
    request = rt.store.get_request(request_id)
    fleet = rt.config.environment(request.environment).fleet
    while True:
        claim = rt.store.claim_fleet_targets(request_id, parallel=fleet.parallel, per_server=fleet.per_server,
                                             halt_after=fleet.halt_after_failures, job=TARGET_JOB)
        if claim.halted:
            halted(rt, request, claim.halted)
        elif claim.finished:
            _finish(rt, request)
        elif claim.not_before is not None:
            rt.store.enqueue_job(JobIntent(step=ADVANCE_JOB, args=(request_id,), run_at=claim.not_before))
        elif claim.wave_done is not None:
            problem = health_problem(rt, request, claim.wave_done)
            if problem is not None:
                if rt.store.set_rollout_state(request_id, "halted", problem, only_from=("running",)):
                    halted(rt, request, problem)
                return
            pause = fleet.pause_s
            at = datetime.now(timezone.utc) + timedelta(seconds=pause) if pause else None
            if rt.store.open_wave(request_id, claim.wave_done, at):
                log.info("request %s: wave %s done and healthy; wave %s opens%s", request_id, claim.wave_done,
                         claim.wave_done + 1, f" at {at:%H:%M:%S}" if at else "")
                continue  # claims the next wave now, or finds it paused and schedules this again
        elif claim.claimed:
            log.info("request %s: claimed %s", request_id, ", ".join(claim.claimed))
        break
    redis = pipeline.redis_for(rt)
    deliver(rt.store, redis)
    if redis.set(CARD_KEY.format(request_id), 1, nx=True, px=int(CARD_EVERY_S * 1000)):
        report.refresh_card(rt, request_id)  # one card, updated in place at most every CARD_EVERY_S


def record_breach(redis: Redis, request_id: int, target: str, waiting: list[dict[str, Any]]) -> None:
    """A lock-wait breach on one target (sessions waited behind its apply past the watchdog's threshold), kept for
    the health gate after this wave."""
    line = json.dumps({"target": target, "waiters": len(waiting), "wait_s": max(w["wait_s"] for w in waiting)})
    redis.append(BREACH_KEY.format(request_id), line + "\n")
    redis.expire(BREACH_KEY.format(request_id), 7 * 24 * 3600)


def health_problem(rt: Runtime, request: Request, wave: int) -> str | None:
    """Why the rollout must halt after ``wave``, or None: a lock-wait breach the watchdog recorded since the last
    wave, the health query false (or failing) on a database of the
    targets done so far (once per database: tenant schemas share theirs)."""
    env = rt.config.environment(request.environment)
    breaches = pipeline.redis_for(rt).getdel(BREACH_KEY.format(request.id))
    if breaches:
        worst = max((json.loads(b) for b in breaches.decode().splitlines()), key=lambda b: b["wait_s"])
        return (f"the lock-wait watchdog saw {worst['waiters']} session(s) waiting {worst['wait_s']:.1f} s behind "
                f"the migration on {worst['target']} during wave {wave}")
    query = env.fleet.health_query
    if not query:
        return None
    done = [t for t in rt.store.list_fleet_targets(request.id) if t.state == "succeeded"]
    seen: set[str] = set()
    for t in done:
        key = "schemas" if t.kind == "schema" else t.target
        if key in seen:
            continue
        seen.add(key)
        ft = FleetTarget(id=t.target, kind=t.kind, server=t.server, url_env=t.url_env)
        try:
            with open_target(env, ft, application_name=application_name(request.id, "fleet-health")) as conn:
                row = conn.execute(query).fetchone()
        except (GuardianError, psycopg.Error) as exc:
            return f"the health query failed on {t.target} after wave {wave}: {pipeline.step_error(exc, env.name)}"
        if not row or row[0] is not True:
            return f"the health query returned {row[0] if row else 'no row'} on {t.target} after wave {wave}"
    return None


def halted(rt: Runtime, request: Request, reason: str) -> None:
    """One thread message per halt: why, and that nothing new starts while the targets in flight finish."""
    failed = [t for t in rt.store.list_fleet_targets(request.id) if t.state == "failed"]
    report.post(rt, request, rt.notifier.thread_note(
        rt.notifier.rollout_halted(reason, [(t.target, t.note) for t in failed])))
    report.refresh_card(rt, request.id)


def _finish(rt: Runtime, request: Request) -> None:
    """Nothing waits, is queued or runs: with no failure the rollout succeeded and the apply step is done
    (verify follows); failures below halt_after_failures halt it for a decision instead."""
    counts = rt.store.fleet_counts(request.id)
    if counts.get("failed"):
        reason = f"{counts['failed']} target(s) failed; every other target is done"
        if rt.store.set_rollout_state(request.id, "halted", reason, only_from=("running",)):
            halted(rt, request, reason)
        return
    if not rt.store.set_rollout_state(request.id, "succeeded", None, only_from=("running",)):
        return
    steps = [s for s in rt.store.list_steps(request.id) if s.step == "apply" and s.status == "running"]
    if not steps:
        log.warning("request %s: rollout succeeded but no apply step is running", request.id)
        return
    words = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    pipeline.succeed(pipeline.StepRun(rt=rt, request=rt.store.get_request(request.id), step=steps[-1]),
                     {"fleet": counts}, [f"rollout done: {words}"])


def verify_result(rt: Runtime, request: Request) -> dict[str, Any]:
    """The verify step of a fleet request: each target was verified in its own job; this sums them up."""
    counts = rt.store.fleet_counts(request.id)
    failures = [f"{counts['failed']} target(s) failed"] if counts.get("failed") else []
    warnings = [f"{counts[s]} target(s) {s}" for s in ("skipped", "excluded") if counts.get(s)]
    return {"diff": [], "warnings": warnings, "failures": failures, "fleet": counts}


def reconcile(rt: Runtime, redis: Redis, request: Request) -> str | None:
    """A fleet request in flight: targets whose job died go back to waiting (their ledgers are the truth), and a
    running rollout is advanced (a worker that died between finishing a target and claiming the next)."""
    rollout = rt.store.get_rollout(request.id)
    if rollout is None:
        return None
    released = []
    env = rt.config.environment(request.environment)
    for t in rt.store.list_fleet_targets(request.id):
        if t.state in ("queued", "running") and not _alive(redis, t):
            if t.state == "running" and _orphan_session(env, request, t):
                continue  # terminated now; released on the next pass, once its locks are gone
            if rt.store.release_fleet_target(request.id, t.target, t.attempt, "its worker died; resumed from its "
                                                                                "ledger"):
                released.append(t.target)
    if rollout.state == "running":
        advance(request.id)
    return f"rollout: {len(released)} target(s) whose worker died resumed ({', '.join(released[:5])})" if released \
        else None


def _orphan_session(env: Any, request: Request, t: RolloutTarget) -> bool:
    """A dead worker's apply session on the target, still there: terminate it (its transaction rolls back) and say
    so. A target that cannot be reached has none the reconciler could end; its next attempt finds out."""
    ft = FleetTarget(id=t.target, kind=t.kind, server=t.server, url_env=t.url_env)
    try:
        with open_target(env, ft, application_name=application_name(request.id, "reconcile")) as conn:
            found = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s "
                                 "AND datname = current_database()",  # not a same-named session elsewhere
                                 (fleet_session_name(request.id, t.target),)).fetchall()
    except (GuardianError, psycopg.Error) as exc:
        log.warning("request %s: target %s: its orphaned session could not be checked: %s", request.id, t.target,
                    type(exc).__name__)
        return False
    if found:
        log.info("request %s: target %s: terminated the session its dead worker left", request.id, t.target)
    return bool(found)


def _alive(redis: Redis, t: RolloutTarget) -> bool:
    """The target's job will still run: its intent is unsent, or its RQ job is queued or running on a live worker."""
    if t.state == "queued" and t.intent_unsent:
        return True
    jid = t.job_id or t.sent_job_id
    if jid is None:
        return False
    try:
        if job_live(redis, Job.fetch(jid, connection=redis)):
            return True
    except NoSuchJobError:
        pass
    return running_elsewhere(redis, jid)
