"""Reminders for requests waiting for approval, and escalation when nobody acts ([reminders] in guardian.toml).

Usage (the worker's maintenance loop calls it on every reconciler pass)::

    lines = remind(rt)            # one line per reminder or escalation sent

A request is "waiting" from when it reached awaiting approval or got its last approval, whichever is later.
After ``after`` of waiting, the thread gets a reminder mentioning who can still approve (and each of those
users a DM linking the card); again every ``after`` until ``max_reminders``. Once ``after + escalate_after``
has passed since it started waiting, the thread mentions ``escalate_to`` (or the environment's user groups)
once. During ``quiet_hours`` nothing is sent. A request still waiting after its environment's
``approval_expiry`` ends as ``expired`` (the thread says so and the card shows it). Each reminder is an event (request.reminded /
request.escalated) written before it is posted, so two workers or a restart never send one twice.
"""
from __future__ import annotations

import logging
from datetime import datetime, time as clock, timezone
from typing import Any
from zoneinfo import ZoneInfo

from bot.config import RemindersConfig, parse_duration
from bot.errors import TransitionConflict
from bot.models import Request, RequestStatus

log = logging.getLogger(__name__)
RESTART_KINDS = ("request.awaiting_approval", "decision.approve")


def in_quiet_hours(cfg: RemindersConfig, now: datetime) -> bool:
    if not cfg.quiet_hours:
        return False
    start_s, end_s = cfg.quiet_hours.split("-")
    start, end = clock.fromisoformat(start_s), clock.fromisoformat(end_s)
    local = now.astimezone(ZoneInfo(cfg.timezone)).time()
    return start <= local < end if start <= end else (local >= start or local < end)


def remind(rt: Any, now: datetime | None = None) -> list[str]:
    cfg: RemindersConfig = rt.config.reminders
    now = now or datetime.now(timezone.utc)
    after = parse_duration(cfg.after)
    quiet = in_quiet_hours(cfg, now)
    escalate = parse_duration(cfg.escalate_after)
    done: list[str] = []
    for request in rt.store.list_requests(statuses=[RequestStatus.AWAITING_APPROVAL], limit=1000):
        if not request.channel or not request.thread_ts:
            continue
        events = rt.store.list_events(request_id=request.id)
        starts = [e for e in events if e.kind in RESTART_KINDS]
        if not starts:
            continue
        since = starts[-1].created_at
        later = [e for e in events if e.created_at >= since]
        reminders = [e for e in later if e.kind == "request.reminded"]
        escalated = any(e.kind == "request.escalated" for e in later)
        waited = (now - since).total_seconds()
        expiry = parse_duration(rt.flow.env(request.environment).approval_expiry)
        waiting_since = [e for e in events if e.kind == "request.awaiting_approval"][-1:] or starts
        if expiry > 0 and (now - waiting_since[0].created_at).total_seconds() >= expiry:
            done += _expire(rt, request, rt.flow.env(request.environment).approval_expiry)
            continue
        last = reminders[-1].created_at if reminders else since
        if after <= 0 or quiet:
            continue
        if len(reminders) < cfg.max_reminders and (now - last).total_seconds() >= after:
            done += _send_reminder(rt, request, waited, len(reminders) + 1)
        elif not escalated and escalate > 0 and waited >= after + escalate and reminders:
            done += _escalate(rt, request, waited)
    return done


def _tally(rt: Any, request: Request) -> Any:
    return rt.flow.policy(request.environment).tally(request, rt.store.list_decisions(request.id),
                                                     datetime.now(timezone.utc))


def _send_reminder(rt: Any, request: Request, waited: float, n: int) -> list[str]:
    tally = _tally(rt, request)
    waiting = rt.flow.waiting_for(request, tally.approvers)
    if not waiting or tally.reached:
        return []
    rt.store.record_event("request.reminded", actor="guardian", request_id=request.id,
                          detail={"n": n, "waiting_for": list(waiting)})
    words = rt.flow.waiting_words(request, tally.approvers, tally.required)
    rt.flow.say(request, rt.flow.notifier.reminder(request.id, request.environment, waited, tally.count,
                                                   tally.required, words))
    if rt.config.reminders.dm and rt.notifier.enabled:
        dm = rt.notifier.reminder_dm(request.id, request.environment, rt.flow.card_link(request), tally.count,
                                     tally.required, waited)
        for user in waiting:
            if user.startswith("S"):
                continue  # a group is mentioned in the thread; DMs go to people
            rt.notifier.post(f"request {request.id}: reminder DM to {user}", user, rt.notifier.thread_note(dm))
    return [f"request {request.id}: reminder {n} sent"]


def _expire(rt: Any, request: Request, expiry: str) -> list[str]:
    """Nobody gave the approvals within the environment's approval_expiry: the request ends as expired."""
    try:
        rt.store.transition(request.id, RequestStatus.AWAITING_APPROVAL, RequestStatus.EXPIRED, actor="guardian",
                            detail={"reason": f"no quorum within approval_expiry ({expiry})"})
    except TransitionConflict:
        return []  # approved, rejected or cancelled meanwhile
    rt.flow.say(request, rt.flow.notifier.request_expired(request.id, request.environment, expiry))
    rt.flow.refresh_card(request.id)
    return [f"request {request.id}: expired"]


def _escalate(rt: Any, request: Request, waited: float) -> list[str]:
    tally = _tally(rt, request)
    if tally.reached:
        return []
    env = rt.flow.env(request.environment)
    targets = rt.config.reminders.escalate_to or [a for a in env.approvers if a.startswith("S")]
    if not targets:
        return []
    rt.store.record_event("request.escalated", actor="guardian", request_id=request.id, detail={"to": targets})
    rt.flow.say(request, rt.flow.notifier.escalation(request.id, request.environment, waited,
                                                     tally.required - tally.count, targets))
    return [f"request {request.id}: escalated"]
