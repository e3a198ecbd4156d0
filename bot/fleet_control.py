"""A fleet rollout's controls: Pause, Resume, Retry failed, Skip failed, Abort (approvers only), and Targets file
(anyone: the per-target table, read-only, uploaded into the rollout's thread).

Usage::

    control = FleetControl(flow)
    control.act(RolloutAction.PAUSE, request_id, user)          # -> the reply for the person who clicked
    control.act(RolloutAction.TARGETS_FILE, request_id, user)   # uploads rollout-<id>-targets.csv
"""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone
from enum import StrEnum
from typing import TYPE_CHECKING

from bot.errors import PolicyDenied, TransitionConflict
from bot.fleet import TABLE_COLUMNS, targets_table
from bot.models import DbState, Request, RequestStatus
from bot.store import NewMigration

if TYPE_CHECKING:
    from bot.flow import Flow

log = logging.getLogger(__name__)
ADVANCE_JOB = "fleet-advance"  # workers/fleet.advance
FILE_KEY = "guardian:fleet-file:{}"  # held while one Targets file of the rollout is being uploaded
FILE_HOLD_MS = 120_000               # the longest an upload may hold it (Slack's retries included)


class RolloutAction(StrEnum):
    """What a rollout's button asks for (bot/slack/listeners/actions.py maps Slack's action ids to these)."""

    PAUSE = "pause"
    RESUME = "resume"
    RETRY_FAILED = "retry failed"
    SKIP_FAILED = "skip failed"
    ABORT = "abort"
    TARGETS_FILE = "targets file"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class FleetControl:
    """The rollout buttons: approvers only, re-authorised from the store at every click; each one says what it did."""

    def __init__(self, flow: "Flow") -> None:
        self.flow = flow
        self.store = flow.store

    def act(self, action: RolloutAction, request_id: int, user: str) -> str:
        request = self.store.get_request(request_id)
        env = self.flow.env(request.environment)
        rollout = self.store.get_rollout(request_id) if env.fleet is not None else None
        if rollout is None:
            raise PolicyDenied(f"request #{request_id} has no fleet rollout", code="not-a-rollout")
        if action is RolloutAction.TARGETS_FILE:  # read-only: anyone who sees the card may ask for it
            return self.targets_file(request, user)
        words = {RolloutAction.PAUSE: "pause", RolloutAction.RESUME: "resume",
                 RolloutAction.RETRY_FAILED: "retry the failed targets of", RolloutAction.SKIP_FAILED:
                 "skip the failed targets of", RolloutAction.ABORT: "abort"}[action]
        self.flow.check_approver(request.environment, user, f"{words} a rollout")
        notifier = self.flow.notifier
        if action is RolloutAction.PAUSE:
            if not self.store.set_rollout_state(request_id, "paused", notifier.rollout_reason("paused", user),
                                                only_from=("running",)):
                return f"The rollout is {rollout.state}; only a running rollout can be paused."
            return self._done(request, notifier.rollout_paused(user), "Paused.")
        if action is RolloutAction.RESUME:
            problem = self.store.resume_rollout(request_id, notifier.rollout_reason("resumed", user),
                                                halt_after=env.fleet.halt_after_failures)
            if problem:
                return f"Not resumed: {problem}."
            return self._done(request, notifier.rollout_resumed(user), "Resumed.", advance=True)
        if action in (RolloutAction.RETRY_FAILED, RolloutAction.SKIP_FAILED):
            retry = action is RolloutAction.RETRY_FAILED
            moved = self.store.settle_failed_targets(request_id, "waiting" if retry else "skipped",
                                                     notifier.rollout_reason("retried" if retry else "skipped", user))
            if not moved:
                return "No target is failed; nothing changed."
            note = (notifier.failed_targets_retried(user, moved) if retry
                    else notifier.failed_targets_skipped(user, moved))
            return self._done(request, note, f"{moved} target(s) {'retried' if retry else 'skipped'}.", advance=True)
        return self.abort(request, user)

    def targets_file(self, request: Request, user: str) -> str:
        """Upload the per-target table (bot/fleet.py targets_table: state, wave, times, error, ledger at approval;
        names and host:port, never a URL) as CSV into the rollout's thread. One upload per rollout at a time: a
        click while one is on its way says so instead of posting the same table twice."""
        if not self.flow.notifier.enabled or not request.channel or not request.thread_ts:
            return "This request has no Slack thread to upload the table into."
        key, token = FILE_KEY.format(request.id), uuid.uuid4().hex
        redis = self.flow.redis
        if redis is not None and not redis.set(key, token, nx=True, px=FILE_HOLD_MS):
            return (f"The targets file of request #{request.id} is already on its way into the thread (someone asked "
                    "for it moments ago); it appears there shortly.")
        try:
            targets = self.store.list_fleet_targets(request.id)
            content = self.flow.notifier.targets_file(request.id, TABLE_COLUMNS, targets_table(request, targets))
            at = datetime.now(timezone.utc)
            sent = self.flow.notifier.upload(
                f"request {request.id}: targets file", request.channel, request.thread_ts, content=content,
                filename=f"rollout-{request.id}-targets.csv",
                title=f"Rollout #{request.id}: {len(targets)} targets as of {at:%H:%M:%S} UTC",
                initial_comment=self.flow.notifier.targets_file_uploaded(user, len(targets), at))
        finally:
            if redis is not None:
                redis.eval(_RELEASE, 1, key, token)
        self.store.record_event("fleet.targets_file", actor=user, request_id=request.id,
                                detail={"targets": len(targets), "error": sent.error})
        if sent.error:
            return f"Slack did not take the targets file ({sent.error}); try again in a minute."
        return f"Uploaded the table of {len(targets)} targets into the rollout's thread."

    def abort(self, request: Request, user: str) -> str:
        """Stop the rollout for good (targets in flight finish), fail the request with what the fleet holds, and open
        a rollback request for the targets done: their down SQL, approved like any rollback, run as a rollout."""
        notifier = self.flow.notifier
        if not self.store.set_rollout_state(request.id, "aborted", notifier.rollout_reason("aborted", user),
                                            only_from=("running", "paused", "halted")):
            return "The rollout is already finished or aborted."
        done = [t for t in self.store.list_fleet_targets(request.id) if t.state == "succeeded"]
        db_state = DbState.PARTIALLY_APPLIED if done else DbState.UNTOUCHED
        try:
            self.store.transition(request.id, RequestStatus.APPLYING, RequestStatus.FAILED, actor=user,
                                  detail={"reason": "rollout aborted"}, failed_step="apply", db_state=db_state,
                                  error=f"rollout aborted by {user}: {len(done)} target(s) done")
        except TransitionConflict as exc:
            log.info("request %s: aborted rollout, request not applying: %s", request.id, exc)
        for step in self.store.list_steps(request.id):
            if step.step == "apply" and step.status == "running":
                self.store.finish_step(step.id, "failed", error="rollout aborted")
        downs = [m for m in reversed(request.migrations) if m.down_sql]
        if not done:
            return self._done(request, notifier.rollout_aborted(user, 0), "Aborted.")
        if not downs:
            return self._done(request, notifier.rollout_aborted(user, len(done)), "Aborted.")
        rollback = self.store.create_request(
            request.environment, user,
            [NewMigration(name=f"{m.name}.down", version=m.version, ledger_name=m.ledger_name,
                          path=(m.path or m.name) + " (down)", sql=m.down_sql or "") for m in downs],
            source="rollback", channel=request.channel, parent_request_id=request.id, git_commit=request.git_commit,
            selection={"rollback_of": request.id, "fleet_targets": [
                {"id": t.target, "kind": t.kind, "server": t.server, "url_env": t.url_env,
                 "pending": [f for f in t.files]} for t in done]})
        if self.flow.notifier.enabled and request.channel and request.thread_ts:
            posted = self.flow.notifier.post(f"request {rollback.id}'s card", request.channel,
                                             self.flow.notifier.request_card(rollback, self.flow.card_view(rollback)),
                                             thread_ts=request.thread_ts)
            if posted.ts:
                self.store.update_request(rollback.id, message_ts=posted.ts, thread_ts=request.thread_ts)
        self.flow.enqueue("analyze", rollback.id)
        return self._done(request, notifier.rollout_aborted(user, len(done), rollback.id),
                          f"Aborted; rollback request #{rollback.id} needs another approver.")

    def _done(self, request: Request, note: str, reply: str, *, advance: bool = False) -> str:
        self.store.record_event("fleet.control", actor="guardian", request_id=request.id, detail={"note": note})
        self.flow.say(request, note)
        if advance:
            self.flow.enqueue(ADVANCE_JOB, request.id, attempt=int(datetime.now(timezone.utc).timestamp()))
        self.flow.refresh_card(request.id)
        return reply
