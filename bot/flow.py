"""The request flow as a domain service: plan, analyse, decide, void, cancel, freeze — and the card.

Slack listeners and workers both call this; neither writes SQL (the store does) nor builds the
state machine themselves. Every public method reloads from the store, so a retried job or a
duplicate click sees the current truth.

Usage::

    flow = Flow(settings, config, store, redis, Notifier(slack_client))
    request = flow.start_plan("staging", "U123", "C1", migrations=(), pending=True, ref=None)
    flow.analyze(request.id)                       # in the worker
    message = flow.decide(request.id, "U456", "approve")
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from datetime import datetime, timedelta, timezone

from redis import Redis

from bot.fleet import FleetPlan, discover, fleet_view
from bot.config import EnvironmentConfig, GuardianConfig, Settings
from bot.errors import (
    ConfirmationNeeded,
    GuardianError,
    NotFound,
    PolicyDenied,
    PreviewOutdated,
    StoreError,
    TransitionConflict,
)
from bot.models import TERMINAL, UNKNOWN_PREVIEW, DbState, Freeze, Incident, Request, RequestStatus
from bot.pg.connect import TargetInfo
from bot.policy import Policy
from bot.run import RUN
from bot.slack.notifier import LATE_POST_STEP, Message, Notifier
from bot.sources.layouts import load_snapshot
from bot.sources.models import SourceSnapshot, StatusReport
from bot.sources.status import environment_status
from bot.store import NewMigration, Store
from bot.store.outbox import JobIntent
from bot.views import CardView

if TYPE_CHECKING:
    from bot.flow_analysis import CopyRehearsal


log = logging.getLogger(__name__)
S = RequestStatus


@dataclass
class StatusOverview:
    """What `/migrate status` shows, read in one place; ``ledgers`` holds each environment's (target, status)
    or the error that kept it unread."""

    environments: list[str]
    open_requests: list[Request]
    freezes: dict[str, Freeze | None]
    failed: list[tuple[Request, Incident | None]]
    snapshot: SourceSnapshot | None = None
    ledgers: dict[str, tuple[TargetInfo, StatusReport] | FleetPlan | GuardianError] = field(default_factory=dict)


class Flow:
    """Requests from `/migrate plan` to an enqueued run."""

    def __init__(
        self,
        settings: Settings,
        config: GuardianConfig,
        store: Store,
        redis: Redis | None,
        notifier: Notifier,
        *,
        dispatch: Callable[[], object] | None = None,
    ) -> None:
        """``notifier`` is Slack (bot/slack/notifier.py; ``Notifier(None)`` for none). ``dispatch`` hands
        committed job intents to the queue at once (the worker's wiring passes its outbox pump); without it
        the worker's pump picks them up (woken by NOTIFY, else within a second)."""
        self.settings, self.config, self.store, self.redis = settings, config, store, redis
        self.notifier = notifier
        self._dispatch = dispatch

    # ------------------------------------------------------------------ helpers
    def env(self, name: str) -> EnvironmentConfig:
        return self.config.environment(name)

    def policy(self, name: str) -> Policy:
        return Policy(self.env(name), self.notifier)

    def group_members(self, group_id: str) -> tuple[str, ...]:
        """Members of a Slack user group (cached by the notifier)."""
        return self.notifier.group_members(group_id)

    def post_in_thread(self, request: Request, message: Message, *, incident: Incident | None = None) -> str | None:
        """A reply in the request's thread, or with ``incident`` in that incident's thread: the one way the domain
        and the workers post into a thread. Nothing without Slack or a thread yet; a post Slack does not take,
        after the client's own retries, is recorded and tried again later (post_later). Returns the reply's ts.

        Usage::

            flow.post_in_thread(request, notifier.step_report(request.id, "run", "queued"))
            flow.post_in_thread(request, notifier.thread_note("Restore finished"), incident=incident)
        """
        channel, thread_ts = (incident.channel, incident.thread_ts) if incident else (request.channel, request.thread_ts)
        if not thread_ts:
            return None
        what = f"incident {incident.id}" if incident else f"request {request.id}"
        sent = self.notifier.post(what, channel, message, thread_ts=thread_ts)
        if sent.error:
            self.post_later(request.id, message, sent.error, incident_id=incident.id if incident else None)
        return sent.ts

    def thread_of(self, request_id: int, incident_id: int | None) -> tuple[str | None, str | None, bool]:
        """(channel, thread_ts, elsewhere) a thread post goes to: the request's thread, or the incident's, which
        is ``elsewhere`` when it is not the request's own thread (an incident channel)."""
        request = self.store.get_request(request_id)
        if incident_id is None:
            return request.channel, request.thread_ts, False
        incident = self.store.get_incident(incident_id)
        return (incident.channel, incident.thread_ts,
                (incident.channel, incident.thread_ts) != (request.channel, request.thread_ts))

    def post_later(self, request_id: int, message: Message, error: str, attempt: int = 1, *,
                   incident_id: int | None = None) -> None:
        """A thread post Slack did not take (in the request's thread, or ``incident_id``'s): recorded
        (slack.post_failed) and, unless ``error`` says trying again cannot help, queued as a ``slack-post`` job
        for late attempt ``attempt`` (bot/slack/retries.py)."""
        delay = self.notifier.late_post_delay(attempt, error)
        where = f"incident {incident_id}'s thread" if incident_id is not None else "the thread"
        log.error("request %s: could not post in %s (%s); %s", request_id, where, error,
                  "giving up" if delay is None else f"a job tries again in {delay}s (late attempt {attempt})")
        try:  # like the post itself, recording it never fails the step that posted
            detail = {"what": str(message.get("text") or "")[:200], "error": error, "retry_in": delay,
                      "attempt": attempt}
            if incident_id is not None:
                detail["elsewhere"] = self.thread_of(request_id, incident_id)[2]
            self.store.record_event("slack.post_failed", actor="guardian", request_id=request_id,
                                    incident_id=incident_id, detail=detail)
            if delay is not None:
                args = (request_id, message, attempt) + ((incident_id,) if incident_id is not None else ())
                self.store.enqueue_job(JobIntent(step=LATE_POST_STEP, args=args,
                                                 run_at=datetime.now(timezone.utc) + timedelta(seconds=delay)))
        except StoreError as exc:
            log.error("request %s: the post Slack refused is lost: the bot's database is unavailable (%s)",
                      request_id, exc.code)
            return
        if delay is not None:
            self.dispatch()
        self.refresh_card(request_id)  # the card says the thread is behind (or lost a message)

    def say(self, request: Request, text: str) -> None:
        """A note in the request's thread (``text`` is mrkdwn, e.g. from the notifier's Messages), through
        post_in_thread."""
        self.post_in_thread(request, self.notifier.thread_note(text))

    def note(self, request_id: int, text: str) -> None:
        self.say(self.store.get_request(request_id), text)

    def card_view(self, request: Request, note: str | None = None) -> CardView:
        env = self.env(request.environment)
        policy = Policy(env, self.notifier)
        tally = policy.tally(request, self.store.list_decisions(request.id), datetime.now(timezone.utc))
        met = self.store.succeeded_environments(request.sha256s) if env.requires and request.migrations else []
        gate = None
        if request.status is S.APPROVED and request.run_after:
            gate = self.notifier.run_waits_until(request.run_after)
        behind, lost = self.thread_backlog(request.id)
        waiting = self.waiting_for(request, tally.approvers) if request.status is S.AWAITING_APPROVAL else ()
        return CardView(
            waiting_for=waiting, rendered_at=datetime.now(timezone.utc),
            approvals_required=tally.required, approvers=tally.approvers, rejected_by=tally.rejected_by,
            stale=tally.stale, env_color=env.color, production=env.production,
            requires_missing=tuple(policy.missing_prerequisites(met)),
            requires_met=tuple(e for e in env.requires if e in met), gate_note=gate, note=note,
            thread_behind=behind, thread_lost=lost, fleet=fleet_view(self.store, request, env),
        )

    def waiting_for(self, request: Request, approved: Sequence[str] = ()) -> tuple[str, ...]:
        """The approver entries (users and user groups) who could still give a missing approval: everyone
        listed for the environment except who already approved and the requester."""
        return tuple(a for a in self.env(request.environment).approvers if a not in approved and a != request.requester)

    def waiting_words(self, request: Request, approved: Sequence[str], required: int) -> str:
        """'Waiting for <@B> or <!subteam^S1>.' (mentions: post it once per change), or '' when nobody is."""
        waiting = self._still_waiting(request, approved, required)
        return self.notifier.waiting_for_approvals(waiting, required - len(approved)) if waiting else ""

    def _still_waiting(self, request: Request, approved: Sequence[str], required: int) -> tuple[str, ...]:
        """Who could still approve (waiting_for) while approvals are missing; nobody once ``required`` is reached."""
        return self.waiting_for(request, approved) if len(approved) < required else ()

    def thread_backlog(self, request_id: int) -> tuple[int, int]:
        """(thread messages waiting for a late attempt, messages given up on), from post_later's events:
        each late attempt ends in slack.post_delivered_late or in another slack.post_failed (attempt > 1)."""
        events = [e for e in self.store.list_events(request_id=request_id)  # not an incident channel's thread
                  if e.kind in ("slack.post_failed", "slack.post_delivered_late") and not e.detail.get("elsewhere")]
        failed = [e.detail for e in events if e.kind == "slack.post_failed"]
        retrying = sum(1 for d in failed if d.get("retry_in") is not None)
        attempts_ended = (sum(1 for e in events if e.kind == "slack.post_delivered_late")
                          + sum(1 for d in failed if (d.get("attempt") or 1) > 1))
        return max(0, retrying - attempts_ended), sum(1 for d in failed if d.get("retry_in") is None)

    def refresh_card(self, request_id: int, note: str | None = None) -> None:
        """Re-render the root card from the store (never patched from a payload)."""
        request = self.store.get_request(request_id)
        if not self.notifier.enabled or not request.channel or not request.message_ts:
            return
        self.notifier.update(f"request {request.id}'s card", request.channel, request.message_ts,
                             self.notifier.request_card(request, self.card_view(request, note)))

    # --------------------------------------------------------------------- plan
    def start_plan(
        self,
        environment: str,
        requester: str,
        channel: str | None,
        *,
        migrations: Sequence[str] = (),
        pending: bool = True,
        ref: str | None = None,
        adhoc_sql: str | None = None,
    ) -> Request:
        """Record the request, post its card, and queue the analysis (the slow part runs in a worker)."""
        self.env(environment)  # unknown environment: ConfigError listing the known ones
        if adhoc_sql is not None:
            self.check_adhoc(environment)
        initial: list[NewMigration] = []
        if adhoc_sql is not None:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
            initial = [NewMigration(name=f"{stamp}_adhoc", version=stamp, ledger_name=stamp, sql=adhoc_sql)]
        request = self.store.create_request(
            environment, requester, initial, source="adhoc" if adhoc_sql is not None else "repo",
            git_ref=None if adhoc_sql is not None else (ref or self.config.project.branch),
            channel=self.config.slack.channel or channel,
            selection={"migrations": list(migrations), "pending": bool(pending and not migrations), "ref": ref},
        )
        if self.notifier.enabled and request.channel:
            posted = self.notifier.post(f"request {request.id}'s card", request.channel,
                                        self.notifier.request_card(request, self.card_view(request)))
            if posted.error:
                raise self._card_not_posted(request, posted.error)
            request = self.store.update_request(request.id, message_ts=posted.ts, thread_ts=posted.ts,
                                                channel=posted.channel or request.channel, enqueue="analyze")
            self.dispatch()
        else:
            self.enqueue("analyze", request.id)
        log.info("request %s: planned on %s by %s", request.id, environment, requester)
        return request

    def check_adhoc(self, environment: str) -> None:
        """ConfigError for an unknown environment, PolicyDenied where pasted SQL is not allowed (no I/O)."""
        if not self.env(environment).allow_adhoc_sql:
            raise PolicyDenied(self.notifier.adhoc_not_allowed(environment), code="adhoc-not-allowed")

    def _card_not_posted(self, request: Request, error: str) -> GuardianError:
        """A request whose card cannot be posted (Slack's ``error``) is cancelled at once (nothing was analysed
        or run, and it is not left in `analyzing`), and the person is told what to do instead."""
        self.store.transition(request.id, S.ANALYZING, S.CANCELLED, actor="guardian",
                              detail={"reason": f"the card could not be posted ({error})"})
        log.warning("request %s: card not posted in %s (%s); cancelled", request.id, request.channel, error)
        return PolicyDenied(self.notifier.card_not_posted(request.id, request.channel, error), code="card-not-posted")

    def enqueue(self, step: str, request_id: int, *, attempt: int = 1, at: datetime | None = None) -> None:
        """Record the intent to run ``step`` in the job outbox (PostgreSQL); the worker's pump moves it to
        RQ. Redis being down delays the step, it never loses it, so callers can say it is queued."""
        self.store.enqueue_job(JobIntent(step=step, attempt=attempt, run_at=at), request_id=request_id)
        self.dispatch()

    def dispatch(self) -> None:
        """Hand committed intents to the queue now when this process can (errors there are the pump's to retry)."""
        if self._dispatch is not None:
            self._dispatch()

    # ------------------------------------------------------------------ analyze
    def analyze(self, request_id: int) -> Request:
        """Read the files at a pinned commit, pick what runs, analyse each, then await approval."""
        from bot.flow_analysis import analyse_request

        request = self.store.get_request(request_id)
        if request.status is not S.ANALYZING:
            log.info("request %s: analyze skipped, status is %s", request_id, request.status.value)
            return request
        step = self.store.start_step(request_id, "analyze")
        try:
            result = analyse_request(self.config, request, self.store)
        except GuardianError as exc:
            self.store.finish_step(step.id, "failed", error=exc.message)
            request = self.store.transition(request_id, S.ANALYZING, S.FAILED, actor="guardian",
                                            failed_step="analyze", db_state=DbState.UNTOUCHED, error=exc.message)
            self.say(request, self.notifier.analysis_failed(exc.message))
            self.refresh_card(request_id)
            return request
        if not result.migrations:
            self.store.finish_step(step.id, "succeeded", outcome={"pending": 0})
            request = self.store.transition(request_id, S.ANALYZING, S.CANCELLED, actor="guardian",
                                            detail={"reason": "nothing pending"}, target=result.target,
                                            git_commit=result.commit)
            self.say(request, self.notifier.nothing_to_do(request.environment, result.commit))
            self.refresh_card(request_id)
            return request
        self.store.replace_migrations(request_id, result.migrations)
        rehearsed = self._rehearse(self.store.get_request(request_id))
        failures = rehearsed.failures if rehearsed is not None and not isinstance(rehearsed, str) else []
        risk = "critical" if failures else result.risk  # known before anyone approves
        policy = self.policy(request.environment)
        request = self.store.transition(
            request_id, S.ANALYZING, S.AWAITING_APPROVAL, actor="guardian",
            risk=risk, risk_reasons=failures + list(result.reasons), git_commit=result.commit,
            target_fingerprint=result.fingerprint, policy_version=policy.version, target=result.target,
            rehearsal=rehearsed.binding() if rehearsed is not None and not isinstance(rehearsed, str) else None,
        )
        self.store.finish_step(step.id, "succeeded", outcome={"risk": risk, "migrations": len(result.migrations)})
        self._post_preview(request)
        self._post_fleet_preview(request)
        self._post_rehearsal(request, rehearsed)
        self.refresh_card(request_id)
        self._ask_approvers(request)
        return request

    def _ask_approvers(self, request: Request) -> None:
        """Once, when a request starts waiting: who must approve, mentioned (a card update notifies nobody)."""
        tally = self.policy(request.environment).tally(request, self.store.list_decisions(request.id),
                                                       datetime.now(timezone.utc))
        waiting = self._still_waiting(request, tally.approvers, tally.required)
        if waiting:
            self.say(request, self.notifier.needs_approvals(tally.required, tally.count, waiting))

    def _post_fleet_preview(self, request: Request) -> None:
        """A fleet request: its targets grouped by ledger state, each file set's risk once, and the rollout."""
        fleet = (request.target or {}).get("fleet")
        if fleet:
            risks = {m.ledger_name or m.name: m.risk or "low" for m in request.migrations}
            self.post_in_thread(request, self.notifier.fleet_preview(request.environment, fleet, risks))

    def _rehearse(self, request: Request) -> "CopyRehearsal | str | None":
        """Where the environment names a rehearsal database or copy: the rehearsal, else None, or why it could not
        run."""
        from bot.flow_analysis import rehearse_request
        from bot.pg.summary import statement_timings

        env = self.env(request.environment)
        if not env.rehearsal_database_url_env and env.rehearsal is None:
            return None
        try:
            rehearsed = rehearse_request(env, request, self.store.list_backups(), registry=self.store)
        except GuardianError as exc:
            return exc.message
        self.store.record_event("request.rehearsed", actor="guardian", request_id=request.id, detail={
            "failed": rehearsed.rehearsal.failed, "copy": rehearsed.copy_ and rehearsed.copy_.summary(),
            "data_failures": len(rehearsed.rehearsal.data_failures), "headline": rehearsed.headline(request.environment),
            "statements": statement_timings(rehearsed.rehearsal)})
        return rehearsed

    def _post_rehearsal(self, request: Request, rehearsed: "CopyRehearsal | str | None") -> None:
        """The headline, the locks really taken, rewrites, timings, data failures and breaking app queries."""
        if isinstance(rehearsed, str):
            self.say(request, self.notifier.rehearsal_skipped(rehearsed))
        elif rehearsed is not None:
            self.post_in_thread(request, self.notifier.rehearsal(
                rehearsed.rehearsal, rehearsed.headline(request.environment),
                [p.line for p in (rehearsed.app.broken if rehearsed.app else ())]))

    def _post_preview(self, request: Request) -> None:
        """The SQL and risk of every migration in a few combined messages (Slack takes about one a second
        per channel) and the long files uploaded ten at a time, instead of one message per migration."""
        if not self.notifier.enabled or not request.thread_ts:
            return
        preview = self.notifier.preview(request)
        for message in preview.sql:
            self.post_in_thread(request, message)
        for files in preview.uploads:
            sent = self.notifier.upload(f"request {request.id}: SQL upload of {len(files)} file(s)", request.channel,
                                        request.thread_ts, file_uploads=files)
            if sent.error:
                self.store.record_event("slack.post_failed", actor="guardian", request_id=request.id,
                                        detail={"what": "sql upload", "error": sent.error})
        for message in preview.risk:
            self.post_in_thread(request, message)

    # ----------------------------------------------------------------- decide
    def decide(
        self,
        request_id: int,
        user_id: str,
        decision: str,
        *,
        reason: str | None = None,
        confirmed_environment: str | None = None,
        shown: str | None = None,
    ) -> str:
        """Approve or reject; returns the line to show the clicker. Raises PolicyDenied when refused.

        ``shown`` is the fingerprint of the preview the person clicked under (Slack echoes it back from
        the button's block id); a decision binds to exactly that preview, and one clicked under an older
        preview records nothing (PreviewOutdated, with a link to the card). None: the current preview.
        """
        request = self.store.get_request(request_id)
        self.check_preview(request, user_id, decision, shown)
        env = self.env(request.environment)
        policy = Policy(env, self.notifier)
        policy.check_can_decide(request, user_id, groups=self.group_members)
        if decision == "approve":
            if env.production and confirmed_environment != env.name:
                raise ConfirmationNeeded(self.notifier.confirm_approval(env.name))
            voided = self.revalidate(request_id, actor=user_id)
            if voided:
                return self.notifier.approval_not_recorded(voided)
            met = self.store.succeeded_environments(request.sha256s) if env.requires else []
            missing = policy.missing_prerequisites(met)
            if missing:
                raise PolicyDenied(self.notifier.requires_unmet(env.name, missing), code="requires-unmet")
        try:
            saved, created = self.store.record_decision(request, user_id, decision, reason=reason,
                                                        shown=request.preview_fingerprint)
        except PreviewOutdated:
            raise self._outdated(self.store.get_request(request_id), user_id, decision, request.preview_fingerprint,
                                 recorded=True) from None
        except TransitionConflict as exc:
            raise PolicyDenied(self.notifier.decision_not_recorded(exc.message),
                               code="not-awaiting-approval") from None
        if not created:
            return self.notifier.already_decided(request_id, saved.decision)
        if decision == "reject":
            self.say(request, self.notifier.rejected(user_id, reason))
            try:
                self.store.transition(request_id, S.AWAITING_APPROVAL, S.REJECTED, actor=user_id,
                                      detail={"reason": reason})
            except TransitionConflict:
                pass
            self.refresh_card(request_id)
            return self.notifier.you_rejected(request_id)
        tally = policy.tally(request, self.store.list_decisions(request_id), datetime.now(timezone.utc))
        waiting = () if tally.reached else self._still_waiting(request, tally.approvers, tally.required)
        self.say(request, self.notifier.approved(user_id, tally.count, tally.required, waiting))
        if tally.reached:
            self._on_quorum(request)
        self.refresh_card(request_id)
        return self.notifier.you_approved(request_id, tally.count, tally.required)

    def check_preview(self, request: Request, user_id: str, decision: str, shown: str | None) -> None:
        """PreviewOutdated when ``shown`` (a clicked card's fingerprint) is not ``request``'s current preview."""
        if shown is not None and shown != request.preview_fingerprint:
            raise self._outdated(request, user_id, decision, shown)

    def shown_preview(self, request: Request, fingerprint: str | None) -> str:
        """The preview a click was made under: the fingerprint its button carried, or for a card posted
        without one (before fingerprints existed) the current preview only while the request has never
        shown another; otherwise a value that matches no preview, so the click is refused."""
        if fingerprint:
            return fingerprint
        return request.preview_fingerprint if self.previews_shown(request.id) <= 1 else UNKNOWN_PREVIEW

    def _outdated(self, request: Request, user_id: str, decision: str, shown: str,
                  *, recorded: bool = False) -> PreviewOutdated:
        """The refusal of a click under a preview that is no longer current: why, and where the new one is."""
        if not recorded:  # the store records its own refusals (under the request's row lock)
            self.store.record_event("decision.refused", actor=user_id, request_id=request.id,
                                    detail={"decision": decision, "why": "preview-outdated", "shown": shown,
                                            "current": request.preview_fingerprint})
        log.info("request %s: %s by %s refused, preview %s is outdated", request.id, decision, user_id, shown)
        voided = [e for e in self.store.list_events(request_id=request.id) if e.kind == "decision.voided"]
        reason = voided[-1].detail.get("reason") if voided else None
        return PreviewOutdated(self.notifier.preview_outdated(request.id, reason, self.card_link(request)),
                               shown=shown, current=request.preview_fingerprint)

    def card_link(self, request: Request) -> str | None:
        """A permalink to the request's card (None without Slack or when Slack cannot make one)."""
        return self.notifier.permalink(f"request {request.id}'s card", request.channel, request.message_ts)

    def previews_shown(self, request_id: int) -> int:
        """How many previews the request has posted (each successful analysis posts one)."""
        return sum(1 for st in self.store.list_steps(request_id)
                   if st.step == "analyze" and st.status == "succeeded" and "risk" in (st.outcome or {}))

    def _on_quorum(self, request: Request) -> None:
        try:
            request = self.store.transition(request.id, S.AWAITING_APPROVAL, S.APPROVED, actor="guardian",
                                            detail={"quorum": True})
        except TransitionConflict:
            return  # another click reached the quorum first and started the run
        self.say(request, self.notifier.quorum_reached())
        self.schedule_run(request.id)

    def schedule_run(self, request_id: int) -> None:
        """Start an approved request now, or hold it for a freeze or a maintenance window and say until when."""
        request = self.store.get_request(request_id)
        if request.status is not S.APPROVED:
            return
        policy = self.policy(request.environment)
        now = datetime.now(timezone.utc)
        may_run, when, why = policy.run_gate(now, self.store.get_active_freeze(request.environment))
        if not may_run:
            self.store.update_request(request_id, run_after=when,
                                      enqueue=JobIntent(step="start", attempt=int(when.timestamp()), run_at=when))
            self.say(request, self.notifier.not_running_yet(why))
            self.refresh_card(request_id)
            return
        self.start_run(request_id)

    def start_run(self, request_id: int) -> bool:
        """approved -> queued (compare-and-set) with the intent of the run's first step (bot/run.py: backup) in
        the same transaction.

        Returns False, changing nothing, when the request is no longer approved (a second click, the
        reconciler got there first, a cancel).
        """
        try:
            request = self.store.transition(request_id, S.APPROVED, S.QUEUED, actor="guardian", enqueue=RUN.first.name)
        except TransitionConflict as exc:
            log.info("request %s: not started: %s", request_id, exc)
            return False
        self.dispatch()
        log.info("request %s: queued; backup enqueued", request_id)
        self.refresh_card(request_id)
        self.post_in_thread(request, self.notifier.step_report(request_id, "run", "queued"))
        return True

    # -------------------------------------------------------------- binding
    def revalidate(self, request_id: int, *, actor: str = "guardian") -> str | None:
        """Check that approvals still bind (SQL, commit, target, policy); if not, void them, say why, re-analyse.

        Returns None when nothing changed, else the reason (the approvals are already voided).
        """
        from bot.flow_analysis import current_binding

        request = self.store.get_request(request_id)
        if request.status not in (S.AWAITING_APPROVAL, S.APPROVED, S.QUEUED):
            return None
        reason = current_binding(self.config, request)
        if reason is None and request.policy_version != self.policy(request.environment).version:
            reason = f"the {request.environment} approval policy changed"
        reason = reason or self._rehearsal_expired(request)
        if reason is None:
            return None
        voided = self.store.void_decisions(request_id, reason=reason, actor=actor)
        back = {S.APPROVED: S.AWAITING_APPROVAL, S.QUEUED: S.AWAITING_APPROVAL}
        current = request.status
        try:
            if current in back:
                request = self.store.transition(request_id, current, back[current], actor="guardian",
                                                detail={"reason": reason})
                current = back[current]
            self.store.transition(request_id, current, S.ANALYZING, actor="guardian", detail={"reason": reason})
        except TransitionConflict:
            log.info("request %s: moved while voiding approvals", request_id)
        self.say(request, self.notifier.approvals_voided(voided, reason))
        self.enqueue("analyze", request_id, attempt=int(time.time()))
        self.refresh_card(request_id, note=self.notifier.approvals_voided_note(reason))
        return reason

    def _rehearsal_expired(self, request: Request) -> str | None:
        """Approvals bind the rehearsal's result: once the copy it ran on (fresh then) is older than the
        environment's max_age, the request is rehearsed again on a fresh copy. While it awaits approval it is
        re-analysed (and approved again); at run time (queued) it is rehearsed again now, and the approvals stand
        when the result is the one approved (same digest), else they are voided saying what changed."""
        from bot.config import parse_duration

        spec = self.env(request.environment).rehearsal
        events = [e for e in self.store.list_events(request_id=request.id) if e.kind == "request.rehearsed"]
        copy = (events[-1].detail or {}).get("copy") if events else None
        if spec is None or not copy or copy.get("stale"):
            return None  # a copy stale from the start is flagged in the preview; rehearsing again would not help
        age = (datetime.now(timezone.utc) - datetime.fromisoformat(copy["taken_at"])).total_seconds()
        if age <= parse_duration(spec.max_age):
            return None
        stale = f"the rehearsal ran on a copy of {request.environment} older than max_age ({spec.max_age}) now"
        if request.status is not S.QUEUED or not (request.rehearsal or {}).get("digest"):
            return f"{stale}; it is rehearsed again on a fresh copy"
        return self._rehearse_again(request, stale)

    def _rehearse_again(self, request: Request, stale: str) -> str | None:
        """At run time: the request rehearsed on a fresh copy; None when its outcome is the approved one (recorded
        with the new copy), else why the approvals no longer bind."""
        from bot.pg.summary import outcome_change

        rehearsed = self._rehearse(request)
        if rehearsed is None or isinstance(rehearsed, str):
            return f"{stale}, and rehearsing it again failed: {rehearsed or 'no rehearsal is configured'}"
        binding, approved = rehearsed.binding(), request.rehearsal or {}
        if binding["digest"] != approved.get("digest"):
            return (f"the rehearsal on a fresh copy of {request.environment} now "
                    f"{outcome_change(approved.get('outcome') or {}, binding['outcome'])}")
        self.store.update_request(request.id, rehearsal=binding)
        log.info("request %s: rehearsed again before the run, same outcome %s", request.id, binding["digest"])
        self.say(request, self.notifier.rehearsed_again(stale, rehearsed.headline(request.environment)))
        return None

    # ------------------------------------------------------------ cancel etc.
    def cancel(self, request_id: int, user_id: str) -> str:
        request = self.store.get_request(request_id)
        self.policy(request.environment).check_can_cancel(request, user_id)
        try:
            self.store.transition(request_id, request.status, S.CANCELLED, actor=user_id)
        except TransitionConflict as exc:
            raise PolicyDenied(exc.message, code="cancel-raced") from None
        self.say(request, self.notifier.cancelled(user_id))
        self.refresh_card(request_id)
        return self.notifier.you_cancelled(request_id)

    def freeze(self, environment: str, seconds: float, reason: str, user_id: str) -> str:
        self.check_approver(environment, user_id, "freeze it")
        ends = datetime.fromtimestamp(time.time() + seconds, timezone.utc)
        self.store.create_freeze(environment, reason=reason, created_by=user_id, ends_at=ends)
        return self.notifier.freeze_started(environment, ends, reason)

    def unfreeze(self, environment: str, user_id: str) -> str:
        self.check_approver(environment, user_id, "unfreeze it")
        lifted = self.store.lift_freezes(environment, lifted_by=user_id)
        if not lifted:
            return self.notifier.not_frozen(environment)
        for request in self.store.list_requests(environment=environment, statuses=[S.APPROVED]):
            self.schedule_run(request.id)
        return self.notifier.unfrozen(environment)

    def request_backup(self, environment: str, user_id: str, channel: str | None) -> str:
        """`/migrate backup <env>`: approvers of the environment may take a backup on demand (it changes nothing)."""
        self.check_approver(environment, user_id, "take an on-demand backup of it")
        self.store.enqueue_job(JobIntent(step="ondemand-backup",
                                         args=(environment, user_id, self.config.slack.channel or channel)))
        self.dispatch()
        self.store.record_event("backup.requested", actor=user_id, detail={"environment": environment})
        return self.notifier.backup_requested(environment)

    def check_approver(self, environment: str, user_id: str, what: str) -> None:
        """PolicyDenied unless ``user_id`` is an approver of ``environment`` (directly or by user group)."""
        if not self.policy(environment).is_approver(user_id, self.group_members):
            raise PolicyDenied(self.notifier.only_approvers(environment, self.env(environment).approvers, what),
                               code="not-an-approver")

    # ------------------------------------------------------------ queries
    def status_overview(self, environment: str | None) -> StatusOverview:
        """`/migrate status [env]`: requests in flight, freezes, failed requests with their incidents, and what
        each environment's ledger says (read from the target; an unreadable one says why)."""
        envs = [environment] if environment else sorted(self.config.environments)
        for name in envs:
            self.env(name)
        overview = StatusOverview(
            environments=envs,
            open_requests=[r for r in self.store.list_requests(limit=200) if r.status not in TERMINAL
                           and r.environment in envs],
            freezes={name: self.store.get_active_freeze(name) for name in envs},
            failed=[(r, self.store.find_incident(request_id=r.id))
                    for r in self.store.list_requests(statuses=[S.FAILED], limit=30) if r.environment in envs])
        try:
            overview.snapshot = load_snapshot(self.config.project)
        except GuardianError as exc:
            overview.ledgers = dict.fromkeys(envs, exc)
            return overview
        for name in envs:
            try:
                if self.env(name).fleet is not None:  # every target's ledger, grouped
                    overview.ledgers[name] = discover(self.env(name), self.config.project.layout, overview.snapshot)
                    continue
                overview.ledgers[name] = environment_status(self.config, name, overview.snapshot)
            except GuardianError as exc:
                overview.ledgers[name] = exc
        return overview

    def history(self, environment: str | None, *, limit: int = 15) -> list[Request]:
        """`/migrate history [env]`: the newest requests, of one environment or all."""
        if environment:
            self.env(environment)
        return self.store.list_requests(environment=environment, limit=limit)

    def check_can_reject(self, request: Request, user_id: str, shown: str) -> None:
        """Before the reason modal opens, what decide() checks first: the preview is current, the policy allows."""
        self.check_preview(request, user_id, "reject", shown)
        self.policy(request.environment).check_can_decide(request, user_id, groups=self.group_members)

    def get_request(self, request_id: int) -> Request:
        try:
            return self.store.get_request(request_id)
        except NotFound:
            raise NotFound(self.notifier.no_such_request(request_id)) from None
