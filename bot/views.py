"""What a card shows besides the request or incident itself: view models the domain computes from the store and
the Block Kit builders (bot/slack/cards.py, fleet_blocks.py, incident_blocks.py) render (pure: no I/O).

Usage::

    view = flow.card_view(request)                       # CardView, computed from the store
    flow.notifier.update(..., flow.notifier.request_card(request, view))
"""
from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from bot.models import Backup


class FleetView(BaseModel):
    """A rollout as its card shows it, computed from the store at each refresh."""

    model_config = ConfigDict(frozen=True)

    state: str                                  # running | paused | halted | succeeded | aborted
    wave: int
    waves: int
    counts: dict[str, int]                      # targets per state
    failed: tuple[tuple[str, str], ...] = ()    # (target, one-line reason), the first few
    reason: str | None = None                   # why it halted, paused or was aborted
    eta_s: float | None = None                  # the remaining targets at the pace so far


class CardView(BaseModel):
    """What the request card shows besides the request itself, computed by the flow from the store."""

    model_config = ConfigDict(frozen=True)
    approvals_required: int = 1
    approvers: tuple[str, ...] = ()
    rejected_by: tuple[str, ...] = ()
    stale: tuple[tuple[str, str], ...] = ()
    env_color: str | None = None
    production: bool = False
    requires_missing: tuple[str, ...] = ()
    requires_met: tuple[str, ...] = ()
    gate_note: str | None = None  # freeze or maintenance window
    thread_behind: int = 0  # thread messages Slack did not take yet; a job tries again
    thread_lost: int = 0  # thread messages Slack refused for good (e.g. invalid_blocks)
    note: str | None = None  # mrkdwn (callers escape what they quote): e.g. "approvals voided: the SQL changed"
    waiting_for: tuple[str, ...] = ()  # approver entries (users, user groups) who could give a missing approval
    rendered_at: datetime | None = None  # the card's "updated" time: when it was last re-rendered from the store
    fleet: FleetView | None = None  # a fleet request's rollout (rendered by bot/slack/fleet_blocks.py)


class IncidentView(BaseModel):
    """What the incident card shows besides the incident and its request."""

    model_config = ConfigDict(frozen=True)
    approvers: tuple[str, ...] = ()
    backups: tuple[Backup, ...] = ()
    request_link: str | None = None
    note: str | None = None  # mrkdwn: callers escape what they quote
    rollback_waiting: bool = False  # the incident's rollback request has not started running (Restore stays offered)
    error_above: bool = False  # the card sits in the request's thread, under the failure message that shows the error
