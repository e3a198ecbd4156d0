"""Incident timelines and post-mortem drafts, built from what the store recorded (pure: no I/O).

Usage::

    entries = build_timeline(request, events, notes)
    markdown = render_postmortem(incident, request, entries, backups)
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timezone

from pydantic import BaseModel, ConfigDict

from bot.models import Backup, Event, Incident, IncidentNote, Request
from bot.slack.mrkdwn import mention, plain

_EVENT_TEXT = {
    "request.created": "requested the change",
    "request.awaiting_approval": "analysis done; awaiting approval",
    "request.approved": "quorum reached; approved",
    "request.queued": "run queued",
    "request.backing_up": "backup started",
    "request.applying": "apply started",
    "request.verifying": "verify started",
    "request.succeeded": "run succeeded",
    "request.failed": "run FAILED",
    "request.cancelled": "request cancelled",
    "request.rejected": "request rejected",
    "decision.approve": "approved",
    "decision.reject": "rejected",
    "decision.voided": "approvals voided",
    "incident.opened": "incident opened",
    "incident.mitigating": "mitigation started",
    "incident.mitigated": "mitigated",
    "incident.open": "mitigation failed; incident open again",
    "incident.resolved": "incident resolved",
    "backup.created": "backup recorded",
}


class TimelineEntry(BaseModel):
    model_config = ConfigDict(frozen=True)
    at: datetime
    actor: str
    text: str
    source: str  # event | command | thread | pin


def _describe(event: Event) -> str:
    d = event.detail or {}
    base = _EVENT_TEXT.get(event.kind)
    if event.kind.startswith("step.") and event.kind.count(".") == 2:
        _, step, outcome = event.kind.split(".")
        took = f" in {d['duration_ms']} ms" if d.get("duration_ms") is not None else ""
        err = f": {d['error']}" if d.get("error") else ""
        retries = f" ({d['lock_retries']} lock-timeout retries)" if d.get("lock_retries") else ""
        return f"{step} {outcome}{took}{retries}{err}"
    if base is None:
        base = event.kind.replace(".", " ")
    extra = d.get("reason") or d.get("error") or d.get("code")
    return f"{base}" + (f" ({extra})" if extra and isinstance(extra, str) else "")


def build_timeline(events: Sequence[Event], notes: Sequence[IncidentNote]) -> list[TimelineEntry]:
    """Events (request, approvals, steps with timings, errors, retries) and people's notes, in time order."""
    entries = [TimelineEntry(at=e.created_at, actor=e.actor, text=_describe(e), source="event")
               for e in events if not e.kind.startswith("incident.note")]
    # a note is kept as Slack delivered it; the timeline shows what the person wrote, whichever way it came
    entries += [TimelineEntry(at=n.created_at, actor=n.author, text=plain(n.text), source=n.source) for n in notes]
    return sorted(entries, key=lambda t: t.at)


def _who(actor: str) -> str:
    if actor == "guardian":
        return "Guardian"
    shown = mention(actor)  # a Slack user id as <@U…>, as people's notes show mentions; anything else as written
    return shown if shown.startswith("<@") else actor


def _fenced(text: str, info: str = "") -> list[str]:
    """A Markdown code block its content cannot close: the fence is longer than any backtick run inside."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + info, text, fence]


def render_timeline(entries: Sequence[TimelineEntry]) -> list[str]:
    marks = {"pin": "📌 ", "thread": "💬 ", "command": "📝 ", "event": ""}
    return [f"- {e.at.astimezone(timezone.utc).strftime('%Y-%m-%d %H:%M:%S')} UTC — {_who(e.actor)}: {marks.get(e.source, '')}{e.text}"
            for e in entries]


def failing_statement(request: Request) -> str | None:
    """The statement the error names, else the first statement of the first migration."""
    error = request.error or ""
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
) -> str:
    """A Markdown draft people finish: every fact Guardian knows is filled in, judgement is left open."""
    actions = [e.text.split(":", 1)[1].strip() for e in entries
               if e.source != "event" and e.text.lower().startswith("action:")]
    done = [e for e in entries if e.source == "event" and any(w in e.text for w in ("mitigat", "rollback", "restore", "retry", "resolved", "fixed forward"))]
    statement = failing_statement(request)
    migrations = ", ".join(f"`{m.name}` (sha256 {m.sha256[:12]})" for m in request.migrations) or "—"
    lines = [
        f"# Post-mortem: incident #{incident.id} — request #{request.id} on {request.environment}",
        "",
        "## Summary",
        f"- Migration(s): {migrations}",
        f"- Failed at: **{request.failed_step or 'n/a'}**; database afterwards: **{(request.db_state.value if request.db_state else 'unknown').replace('_', ' ')}**",
        f"- Requested by {_who(request.requester)}" + (f"; approved by {', '.join(_who(a) for a in approvers)}" if approvers else ""),
        f"- Incident status: {incident.status.value}; opened {incident.created_at:%Y-%m-%d %H:%M} UTC"
        + (f", resolved {incident.resolved_at:%Y-%m-%d %H:%M} UTC" if incident.resolved_at else ""),
        "",
        "## Impact",
        "_Who or what was affected, for how long? (fill in)_",
        "",
        "## Timeline (UTC)",
        *render_timeline(entries),
        "",
        "## Root cause",
        "_Why did it happen? (fill in)_ Guardian recorded:",
        "",
        "Failing statement:",
        *_fenced(statement or "-- unknown", "sql"),
        "Error:",
        *_fenced(request.error or "-- none recorded"),
        "",
        "## What was done",
        *([f"- {e.at:%H:%M:%S} {_who(e.actor)}: {e.text}" for e in done] or ["- nothing recorded yet"]),
        *([f"- Backup available: #{b.id} `{b.path.rsplit('/', 1)[-1]}` ({b.size_bytes} bytes, sha256 {str(b.sha256)[:12]})" for b in backups]),
        "",
        "## Action items",
        *([f"- [ ] {a}" for a in actions] or ["- [ ] (notes starting with `action:` appear here)"]),
        "",
    ]
    return "\n".join(lines)
