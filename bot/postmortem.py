"""Incident timelines and post-mortem drafts, built from what the store recorded (pure: no I/O).

Usage::

    entries = build_timeline(events, notes, note_text=notifier.postmortem_note)
    markdown = render_postmortem(incident, request, entries, backups, person=notifier.postmortem_person)
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone

from pydantic import BaseModel, ConfigDict

from bot.models import Backup, Event, Incident, IncidentNote, Request

_EVENT_TEXT = {
    "request.created": "asked for the change",
    "request.analyzing": "analysis started again",
    "request.awaiting_approval": "analysed the SQL; waiting for approval",
    "request.approved": "got the approvals it needed",
    "request.queued": "queued the run",
    "request.succeeded": "the run succeeded",
    "request.failed": "the run failed",
    "request.cancelled": "cancelled the request",
    "request.rejected": "rejected the request",
    "request.expired": "the request expired",
    "request.rehearsed": "rehearsed the SQL on the rehearsal database",
    "request.reminded": "reminded the approvers",
    "request.escalated": "escalated to the approver groups",
    "decision.approve": "approved",
    "decision.reject": "rejected",
    "decision.refused": "tried to decide and was refused",
    "decision.voided": "approvals no longer count",
    "incident.opened": "opened the incident",
    "incident.mitigating": "started mitigating",
    "incident.mitigated": "mitigated the incident",
    "incident.open": "mitigation failed; the incident is open again",
    "incident.resolved": "resolved the incident",
    "incident.action": "restored the backup instead of the waiting rollback",
    "backup.created": "took a backup",
    "backup.requested": "asked for a backup",
}
# Bookkeeping, not things that happened: the status changes a step's own start/finish entries already say,
# where Guardian posted what in Slack
_NOT_IN_TIMELINE = {"request.backing_up", "request.applying", "request.verifying", "request.migrations",
                    "incident.card"}
_STEP_WORDS = {"started": "started", "succeeded": "succeeded", "failed": "failed"}


class TimelineEntry(BaseModel):
    model_config = ConfigDict(frozen=True)
    at: datetime
    actor: str
    text: str
    source: str  # event | command | thread | pin


def _took(ms: object) -> str:
    if not isinstance(ms, (int, float)):
        return ""
    return f" in {ms / 1000:.1f} s" if ms >= 1000 else f" in {int(ms)} ms"


def _describe(event: Event) -> str:
    d = event.detail or {}
    base = _EVENT_TEXT.get(event.kind)
    if event.kind.startswith("step.") and event.kind.count(".") == 2:
        _, step, outcome = event.kind.split(".")
        err = f": {d['error']}" if d.get("error") else ""
        retries = d.get("lock_retries")
        again = f" (after {retries} lock-timeout {'retry' if retries == 1 else 'retries'})" if retries else ""
        return f"{step} {_STEP_WORDS.get(outcome, outcome)}{_took(d.get('duration_ms'))}{again}{err}"
    if base is None:
        base = event.kind.replace("_", " ").replace(".", ": ")
    extra = d.get("reason") or d.get("error") or d.get("code")
    return f"{base}" + (f" ({extra})" if extra and isinstance(extra, str) else "")


def build_timeline(events: Sequence[Event], notes: Sequence[IncidentNote], *,
                   note_text: Callable[[str], str]) -> list[TimelineEntry]:
    """Events (request, approvals, steps with timings, errors, retries) and people's notes, in time order:
    one entry per thing that happened (bookkeeping events and Slack delivery left out). ``note_text``: a note as
    Slack delivered it -> what the person wrote (Notifier.postmortem_note)."""
    entries = [TimelineEntry(at=e.created_at, actor=e.actor, text=_describe(e), source="event")
               for e in events if not e.kind.startswith(("incident.note", "slack."))
               and e.kind not in _NOT_IN_TIMELINE]
    # a note is kept as Slack delivered it; the timeline shows what the person wrote, whichever way it came
    entries += [TimelineEntry(at=n.created_at, actor=n.author, text=note_text(n.text), source=n.source) for n in notes]
    return sorted(entries, key=lambda t: t.at)


def _who(actor: str, names: Mapping[str, str], person: Callable[[str], str]) -> str:
    """A person's name when Slack told us (users.info), else ``person(actor)``; Guardian as Guardian."""
    if actor == "guardian":
        return "Guardian"
    if names.get(actor):
        return names[actor]
    return person(actor)


def _named(text: str, names: Mapping[str, str]) -> str:
    """Mentions inside a note (``<@U…>``, or ``@U…`` once made plain) shown as the names Slack gave."""
    for uid, name in names.items():
        text = text.replace(f"<@{uid}>", f"@{name}").replace(f"@{uid}", f"@{name}")
    return text


def _fenced(text: str, info: str = "") -> list[str]:
    """A Markdown code block its content cannot close: the fence is longer than any backtick run inside."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + info, text, fence]


def render_timeline(entries: Sequence[TimelineEntry], names: Mapping[str, str] | None = None, *,
                    person: Callable[[str], str]) -> list[str]:
    marks = {"pin": "📌 ", "thread": "💬 ", "command": "📝 ", "event": ""}
    names = names or {}
    return [f"- {e.at.astimezone(timezone.utc).strftime('%Y-%m-%d %H:%M:%S')} UTC — "
            f"{_who(e.actor, names, person)}: {marks.get(e.source, '')}{_named(e.text, names)}" for e in entries]


_VERIFY_QUERY = re.compile(r"verify query `([^`]+)`")


def failing_statement(request: Request) -> str | None:
    """What failed: the verify query when verification failed, else the statement the error names, else
    the first statement of the first migration."""
    error = request.error or ""
    if request.failed_step == "verify":
        found = _VERIFY_QUERY.search(error)
        if found:
            return found.group(1).strip().rstrip(";") + ";"
    for m in request.migrations:
        for line in m.sql.splitlines():
            stripped = line.strip()
            if stripped and not stripped.startswith("--") and stripped.rstrip(";") and stripped in error:
                return stripped
    for m in request.migrations:
        for stmt in m.sql.split(";"):
            text = "\n".join(line for line in stmt.strip().splitlines() if not line.strip().startswith("--")).strip()
            if text:
                return text + ";"
    return None


def render_postmortem(
    incident: Incident,
    request: Request,
    entries: Sequence[TimelineEntry],
    backups: Sequence[Backup] = (),
    approvers: Sequence[str] = (),
    names: Mapping[str, str] | None = None,
    *,
    person: Callable[[str], str],
) -> str:
    """A Markdown draft people finish: every fact Guardian knows is filled in, judgement is left open.
    ``names``: Slack user id -> the person's name; ``person`` shows anyone without one (Notifier.postmortem_person:
    a user id as a mention)."""
    names = names or {}
    actions = [e.text.split(":", 1)[1].strip() for e in entries
               if e.source != "event" and e.text.lower().startswith("action:")]
    done = [e for e in entries if e.source == "event" and any(w in e.text for w in ("mitigat", "rollback", "restore", "retry", "resolved", "fixed forward"))]
    statement = failing_statement(request)
    migrations = ", ".join(f"`{m.name}` (sha256 {m.sha256[:12]})" for m in request.migrations) or "—"
    verify_failed = request.failed_step == "verify" and bool(_VERIFY_QUERY.search(request.error or ""))
    lines = [
        f"# Post-mortem: incident #{incident.id} — request #{request.id} on {request.environment}",
        "",
        "## Summary",
        f"- {'Migration' if len(request.migrations) == 1 else 'Migrations'}: {migrations}",
        f"- Failed at: **{request.failed_step or 'n/a'}**; database afterwards: **{(request.db_state.value if request.db_state else 'unknown').replace('_', ' ')}**",
        f"- Requested by {_who(request.requester, names, person)}"
        + (f"; approved by {', '.join(_who(a, names, person) for a in approvers)}" if approvers else ""),
        f"- Incident status: {incident.status.value}; opened {incident.created_at:%Y-%m-%d %H:%M} UTC"
        + (f", resolved {incident.resolved_at:%Y-%m-%d %H:%M} UTC" if incident.resolved_at else ""),
        "",
        "## Impact",
        "_Who or what was affected, for how long? (fill in)_",
        "",
        "## Timeline (UTC)",
        *render_timeline(entries, names, person=person),
        "",
        "## Root cause",
        "_Why did it happen? (fill in)_ Guardian recorded:",
        "",
        "The verify query that failed (the migration itself ran):" if verify_failed else "Failing statement:",
        *_fenced(statement or "-- unknown", "sql"),
        "Error:",
        *_fenced(request.error or "-- none recorded"),
        "",
        "## What was done",
        *([f"- {e.at:%H:%M:%S} {_who(e.actor, names, person)}: {e.text}" for e in done] or ["- nothing recorded yet"]),
        *([f"- Backup available: #{b.id} `{b.path.rsplit('/', 1)[-1]}` ({(b.size_bytes or 0) / 2**20:.1f} MiB, "
           f"sha256 {str(b.sha256)[:12]})" for b in backups]),
        "",
        "## Action items",
        *([f"- [ ] {a}" for a in actions] or ["- [ ] (notes starting with `action:` appear here)"]),
        "",
    ]
    return "\n".join(lines)
