"""Incident threads: open on failure, roll back / restore / retry (re-authorised, approval-gated), timeline, post-mortem.

Usage::

    service = IncidentService(flow)
    incident = service.open(request_id, opened_by="guardian")   # idempotent: one open incident per request
    service.rollback(incident.id, "U_APPROVER")                 # creates a rollback request (approvals, pipeline)
    markdown = service.postmortem(incident.id)
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.errors import ConfirmationNeeded, NotFound, PolicyDenied, TransitionConflict
from bot.models import Backup, DbState, Incident, IncidentStatus, Request, RequestStatus
from bot.postmortem import build_timeline, render_postmortem
from bot.run import RUN
from bot.sources.apply import repository_paths, rollback_advice
from bot.store import NewMigration
from bot.store.outbox import JobIntent
from bot.views import IncidentView

if TYPE_CHECKING:
    from bot.flow import Flow

log = logging.getLogger(__name__)
I = IncidentStatus
PIN_REACTION = "pushpin"


@dataclass(frozen=True)
class RestorePlan:
    """A restore someone may start: the backup it uses and the tables it overwrites."""

    incident: Incident
    request: Request
    backup: Backup
    tables: list[str]


class IncidentService:
    """Domain service over the flow's store, config and Slack client."""

    def __init__(self, flow: "Flow") -> None:
        self.flow = flow
        self.store = flow.store
        self.notifier = flow.notifier

    # ------------------------------------------------------------- opening
    def open(self, request_id: int, *, opened_by: str = "guardian") -> Incident:
        """Open (or return) the incident of a request; a person opening one is checked by policy first."""
        request = self.store.get_request(request_id)
        if opened_by != "guardian":
            self.flow.policy(request.environment).check_can_open_incident(request, opened_by,
                                                                          groups=self.flow.group_members)
        summary = self.notifier.incident_summary(request.environment, request.id, request.failed_step, request.db_state,
                                                 opened_by, request.status is RequestStatus.SUCCEEDED)
        channel = self.flow.config.slack.incident_channel or request.channel
        incident, created = self.store.create_incident(request_id, opened_by=opened_by, summary=summary, channel=channel)
        if not created:
            return incident
        log.info("request %s: incident %s opened by %s", request_id, incident.id, opened_by)
        if not self.notifier.enabled or not channel:
            return incident
        in_request_thread = channel == request.channel and not self.flow.config.slack.incident_channel
        posted = self.notifier.post(f"incident {incident.id}'s card", channel,
                                    self.notifier.incident_card(incident, request, self._view(incident, request)),
                                    thread_ts=request.thread_ts if in_request_thread else None)
        if posted.error:
            return incident
        incident = self.store.update_incident(incident.id, channel=channel,
                                              thread_ts=request.thread_ts if in_request_thread else posted.ts)
        self.store.record_event("incident.card", actor="guardian", request_id=request.id,
                                incident_id=incident.id, detail={"ts": posted.ts})
        if not in_request_thread:
            permalink = self.notifier.permalink(f"incident {incident.id}'s card", channel, posted.ts)
            self.flow.say(request, self.notifier.incident_opened(incident.id, permalink))
        return incident

    def _view(self, incident: Incident, request: Request, note: str | None = None) -> IncidentView:
        approvers = tuple(d.user_id for d in self.store.list_decisions(request.id) if d.decision == "approve")
        if incident.opened_by != "guardian":  # a person opened it: say who and why, on every render of the card
            note = self.notifier.incident_opened_note(incident.summary) + (f"\n{note}" if note else "")
        return IncidentView(approvers=approvers, backups=tuple(self.store.list_backups(request_id=request.id)),
                            request_link=self._request_link(request), note=note,
                            rollback_waiting=self._waiting_rollback(incident, request) is not None,
                            error_above=(not self.flow.config.slack.incident_channel
                                         and incident.channel == request.channel))

    def _rollback_request(self, incident: Incident, request: Request) -> Request | None:
        """The newest rollback request started from this incident, if any."""
        found = [r for r in self.store.list_requests(limit=200) if r.parent_request_id == request.id
                 and r.source == "rollback" and (r.selection or {}).get("incident") == incident.id]
        return max(found, key=lambda r: r.id) if found else None

    def _waiting_rollback(self, incident: Incident, request: Request) -> Request | None:
        """The incident's rollback request while it still waits (analysis or approvals): a restore may replace it."""
        if incident.status is not I.MITIGATING:
            return None
        rollback = self._rollback_request(incident, request)
        waiting = (RequestStatus.ANALYZING, RequestStatus.AWAITING_APPROVAL)
        return rollback if rollback is not None and rollback.status in waiting else None

    def _request_link(self, request: Request) -> str | None:
        """A permalink to the request's card when the incident lives in another channel."""
        if not self.flow.config.slack.incident_channel:
            return None  # same thread: no link needed
        return self.flow.card_link(request)

    def _card_message_ts(self, incident: Incident) -> str | None:
        for event in reversed(self.store.list_events(incident_id=incident.id)):
            if event.kind == "incident.card":
                return event.detail.get("ts")
        return None

    def refresh(self, incident_id: int, note: str | None = None) -> None:
        incident = self.store.get_incident(incident_id)
        request = self.store.get_request(incident.request_id)
        ts = self._card_message_ts(incident)
        if not self.notifier.enabled or not incident.channel or not ts:
            return
        self.notifier.update(f"incident {incident_id}'s card", incident.channel, ts,
                             self.notifier.incident_card(incident, request, self._view(incident, request, note)))

    def say(self, incident: Incident, text: str) -> None:
        """A note in the incident's thread, through Flow.post_in_thread: a post Slack refuses is recorded
        (slack.post_failed) and tried again later, as in a request's thread; the action goes on."""
        self.flow.post_in_thread(self.store.get_request(incident.request_id), self.notifier.thread_note(text),
                                 incident=incident)

    # ------------------------------------------------------------- authorisation
    def _check_actor(self, incident: Incident, request: Request, user: str, what: str) -> None:
        if incident.status is I.RESOLVED:
            raise PolicyDenied(f"incident #{incident.id} is resolved; open a new one with `/migrate incident {request.id}`",
                               code="incident-resolved")
        self.flow.check_approver(request.environment, user, what)

    def _start_mitigating(self, incident: Incident, user: str, detail: dict) -> str | None:
        """open -> mitigating for one action (compare-and-set); the reply to give instead when another
        action, or a double click, got there first."""
        try:
            self.store.transition_incident(incident.id, I.OPEN, I.MITIGATING, actor=user, detail=detail)
        except TransitionConflict:
            return f"Incident #{incident.id} is already being mitigated; nothing was started twice."
        return None

    # ------------------------------------------------------------- queries
    def get(self, incident_id: int) -> tuple[Incident, Request]:
        """The incident and the request it is about (NotFound that says so for an unknown id)."""
        try:
            incident = self.store.get_incident(incident_id)
        except NotFound:
            raise NotFound(f"there is no incident #{incident_id}") from None
        return incident, self.store.get_request(incident.request_id)

    def in_thread(self, channel: str | None, thread_ts: str | None) -> Incident | None:
        """The incident whose thread this is, if any (replies and pins there become timeline notes)."""
        return self.store.find_incident(channel=channel, thread_ts=thread_ts)

    def open_for(self, request: Request, user: str) -> Incident:
        """`/migrate incident|rollback|restore <request>`: the request's unresolved incident, else a new one
        opened by ``user`` (policy-checked); PolicyDenied for a request that never ran."""
        found = self.store.find_incident(request_id=request.id)
        if found is not None and found.status is not I.RESOLVED:
            return found
        if request.status not in (RequestStatus.FAILED, RequestStatus.SUCCEEDED):
            raise PolicyDenied(f"request #{request.id} is {request.status.value.replace('_', ' ')}; incidents are for "
                               "requests that ran", code="not-ran")
        return self.open(request.id, opened_by=user)

    def prepare_restore(self, incident_id: int, user: str) -> RestorePlan:
        """What a restore by ``user`` would do, once they may (approvers other than the requester, a backup
        exists): the confirmation modal shows it, the restore itself checks it again."""
        incident, request = self.get(incident_id)
        self._check_actor(incident, request, user, "restore a backup")
        if user == request.requester:
            raise PolicyDenied("you ran the failed request; another approver must restore", code="self-approval")
        backups = self.store.list_backups(request_id=request.id)
        if not backups:
            raise PolicyDenied(f"request #{request.id} has no backup to restore; roll back or fix forward",
                               code="no-backup")
        return RestorePlan(incident=incident, request=request, backup=backups[-1], tables=touched_relations(request))

    # ------------------------------------------------------------- actions
    def rollback(self, incident_id: int, user: str) -> str:
        """Start a rollback: a new request with the down SQL, approved by another approver, run by the pipeline."""
        incident, request = self.get(incident_id)
        self._check_actor(incident, request, user, "roll back")
        downs = [m for m in reversed(request.migrations) if m.down_sql]
        if not downs:
            raise PolicyDenied(f"request #{request.id} has no down SQL (`.down.sql` or a `-- down:` section); "
                               "use Restore backup or fix forward", code="no-down-sql")
        busy = self._start_mitigating(incident, user, {"action": "rollback"})
        if busy:
            return busy
        migrations = [NewMigration(name=f"{m.name}.down", version=m.version, ledger_name=m.ledger_name,
                                   path=(m.path or m.name) + " (down)", sql=m.down_sql or "") for m in downs]
        rollback = self.store.create_request(
            request.environment, user, migrations, source="rollback", channel=incident.channel,
            parent_request_id=request.id, git_commit=request.git_commit,
            selection={"rollback_of": request.id, "incident": incident.id})
        if self.notifier.enabled and incident.channel:
            posted = self.notifier.post(f"request {rollback.id}'s card", incident.channel,
                                        self.notifier.request_card(rollback, self.flow.card_view(rollback)),
                                        thread_ts=incident.thread_ts)
            if posted.ts:
                self.store.update_request(rollback.id, message_ts=posted.ts, thread_ts=incident.thread_ts)
        self.flow.enqueue("analyze", rollback.id)
        self.say(incident, self.notifier.rollback_started(user, rollback.id))
        self.refresh(incident.id)
        return f"Rollback request #{rollback.id} created; another approver must approve it."

    def restore(self, incident_id: int, user: str, *, confirmed_environment: str | None = None) -> str:
        """Restore the touched tables from this request's backup (typed confirmation; approvers only)."""
        plan = self.prepare_restore(incident_id, user)
        incident, request, backup = plan.incident, plan.request, plan.backup
        if confirmed_environment != request.environment:
            raise ConfirmationNeeded(f"type {request.environment} to confirm the restore")
        waiting = self._waiting_rollback(incident, request)
        if waiting is not None:  # the restore replaces a rollback nobody approved yet
            try:
                self.store.transition(waiting.id, waiting.status, RequestStatus.CANCELLED, actor=user,
                                      detail={"reason": f"replaced by a restore of backup #{backup.id}"})
            except TransitionConflict:
                return (f"Rollback request #{waiting.id} has just started running; wait for it to finish, then "
                        "restore if it is still needed.")
            self.flow.refresh_card(waiting.id)
            self.store.record_event("incident.action", actor=user, request_id=request.id, incident_id=incident.id,
                                    detail={"action": "restore", "replaces_rollback": waiting.id,
                                            "backup_id": backup.id})
        else:
            busy = self._start_mitigating(incident, user, {"action": "restore", "backup_id": backup.id})
            if busy:
                return busy
        self.flow.enqueue("restore", request.id)
        self.say(incident, self.notifier.restore_started(user, backup.id, waiting.id if waiting else None))
        self.refresh(incident.id)
        return f"Restoring backup #{backup.id}; follow the incident thread."

    def retry(self, incident_id: int, user: str) -> str:
        incident, request = self.get(incident_id)
        self._check_actor(incident, request, user, "retry")
        if request.status is not RequestStatus.FAILED or request.db_state not in (DbState.UNTOUCHED, DbState.ROLLED_BACK):
            raise PolicyDenied("retry is only possible when the run failed and the database is untouched; "
                               "roll back or restore first", code="retry-unsafe")
        busy = self._start_mitigating(incident, user, {"action": "retry"})
        if busy:
            return busy
        attempt = 1 + sum(1 for s in self.store.list_steps(request.id) if s.step == RUN.first.name)
        self.store.transition(request.id, RequestStatus.FAILED, RequestStatus.QUEUED, actor=user, detail={"retry": True},
                              enqueue=JobIntent(step=RUN.first.name, attempt=attempt))  # the run's intent, same commit
        self.flow.dispatch()
        self.say(incident, self.notifier.incident_retried(user, request.id, attempt))
        self.refresh(incident.id)
        return f"Retrying request #{request.id}."

    def mark_fixed_forward(self, incident_id: int, user: str) -> str:
        incident, request = self.get(incident_id)
        self._check_actor(incident, request, user, "mark it fixed forward")
        try:
            self.store.transition_incident(incident.id, [I.OPEN, I.MITIGATING], I.MITIGATED, actor=user,
                                           detail={"action": "fixed forward"})
        except TransitionConflict as exc:
            raise PolicyDenied(exc.message, code="incident-moved") from None
        self.say(incident, self.notifier.incident_fixed_forward(user))
        self.refresh(incident.id)
        return "Marked fixed forward."

    def resolve(self, incident_id: int, user: str) -> str:
        incident, request = self.get(incident_id)
        self._check_actor(incident, request, user, "resolve it")
        try:
            self.store.transition_incident(incident.id, [I.OPEN, I.MITIGATING, I.MITIGATED], I.RESOLVED, actor=user)
        except TransitionConflict as exc:
            raise PolicyDenied(exc.message, code="incident-moved") from None
        self.publish_postmortem(incident.id, user)
        self.refresh(incident.id)
        return f"Incident #{incident.id} resolved; the post-mortem draft is in the thread."

    # ----------------------------------------------------- pipeline outcomes
    def on_request_failed(self, request_id: int) -> None:
        """A run failed: open its incident (a rollback request reports to its parent's instead)."""
        request = self.store.get_request(request_id)
        if request.source == "rollback":
            self.on_request_finished(request_id)
            return
        self.open(request_id)

    def on_request_finished(self, request_id: int) -> None:
        """A rollback request ended: mitigated on success, back to open on failure."""
        request = self.store.get_request(request_id)
        if request.source != "rollback" or request.parent_request_id is None:
            return
        incident = self.store.find_incident(request_id=request.parent_request_id)
        if incident is None:
            return
        if request.status is RequestStatus.SUCCEEDED:
            self.store.update_request(request.parent_request_id, db_state=DbState.ROLLED_BACK)
            try:
                self.store.transition_incident(incident.id, I.MITIGATING, I.MITIGATED, actor="guardian",
                                               detail={"rollback_request": request_id})
            except TransitionConflict:
                pass
            advice = rollback_advice(self.flow.config.project.layout,
                                     repository_paths(self.flow.config.project.layout,
                                                      self.store.get_request(request.parent_request_id).migrations))
            self.say(incident, self.notifier.rollback_succeeded(request_id, advice))
        elif request.status in (RequestStatus.FAILED, RequestStatus.CANCELLED, RequestStatus.REJECTED):
            try:
                self.store.transition_incident(incident.id, I.MITIGATING, I.OPEN, actor="guardian",
                                               detail={"rollback_request": request_id, "status": request.status.value})
            except TransitionConflict:
                pass
            self.say(incident, self.notifier.rollback_failed(request_id, request.status.value))
        self.refresh(incident.id)

    def on_restore_finished(self, request_id: int, ok: bool, detail: str) -> None:
        incident = self.store.find_incident(request_id=request_id)
        if incident is None:
            return
        try:
            self.store.transition_incident(incident.id, I.MITIGATING, I.MITIGATED if ok else I.OPEN, actor="guardian",
                                           detail={"action": "restore", "ok": ok, "detail": detail[:500]})
        except TransitionConflict:
            pass
        self.say(incident, self.notifier.restore_finished(detail) if ok else self.notifier.restore_failed(detail))
        self.refresh(incident.id)

    # ------------------------------------------------------- timeline, notes
    def note(self, incident_id: int, author: str, text: str, *, source: str = "command", slack_ts: str | None = None,
             posted_at: datetime | None = None, added_by: str | None = None) -> bool:
        """Record a note attributed to ``author``; ``added_by`` (who pinned it; default the author) must be allowed
        by the environment's ``incident_notes``."""
        _, request = self.get(incident_id)
        policy = self.flow.policy(request.environment)
        policy.check_can_note(request, added_by or author, groups=self.flow.group_members)
        return self.store.add_incident_note(incident_id, author=author, text=text, source=source, slack_ts=slack_ts,
                                            created_at=posted_at)

    def timeline(self, incident_id: int) -> list[Any]:
        incident = self.store.get_incident(incident_id)
        events = self.store.list_events(request_id=incident.request_id, incident_id=incident.id)
        children = [r for r in self.store.list_requests(limit=50) if r.parent_request_id == incident.request_id]
        for child in children:
            events += self.store.list_events(request_id=child.id)
        events = sorted({e.id: e for e in events}.values(), key=lambda e: e.id)
        return build_timeline(events, self.store.list_incident_notes(incident_id),
                              note_text=self.notifier.postmortem_note)

    def postmortem(self, incident_id: int) -> str:
        incident = self.store.get_incident(incident_id)
        request = self.store.get_request(incident.request_id)
        approvers = [d.user_id for d in self.store.list_decisions(request.id) if d.decision == "approve"]
        entries = self.timeline(incident_id)
        people = {request.requester, *approvers, *(e.actor for e in entries)}
        for entry in entries:  # people mentioned in notes too
            people.update(self.notifier.people_mentioned(entry.text))
        return render_postmortem(incident, request, entries, self.store.list_backups(request_id=request.id), approvers,
                                 names=self.notifier.names(people), person=self.notifier.postmortem_person)

    def publish_postmortem(self, incident_id: int, user: str) -> str:
        """Store and post the post-mortem draft, if the environment's ``incident_managers`` allows ``user``."""
        _, request = self.get(incident_id)
        policy = self.flow.policy(request.environment)
        policy.check_can_publish_postmortem(request, user, groups=self.flow.group_members)
        markdown = self.postmortem(incident_id)
        incident = self.store.update_incident(incident_id, postmortem=markdown)
        self.notifier.upload(f"incident {incident_id}'s post-mortem", incident.channel, incident.thread_ts,
                             content=markdown, filename=f"postmortem-incident-{incident_id}.md",
                             title=f"Post-mortem draft, incident #{incident_id}")
        return markdown


def touched_relations(request: Request) -> list[str]:
    """Tables the request's statements lock or change, from its risk reports (what a restore overwrites)."""
    seen: dict[str, None] = {}
    for m in request.migrations:
        for st in (m.report or {}).get("statements", []):
            for lock in st.get("locks", []):
                seen.setdefault(lock["relation"], None)
    return list(seen)
