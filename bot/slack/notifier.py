"""Slack as the domain sees it: post, update, upload, permalinks, user groups and names, with one error handling.

Flow and IncidentService receive a Notifier from the wiring (bot/slack/app.py, workers/runtime.py, bot/cli.py)
and never touch the Web API client nor Block Kit: they say what to tell in their own terms (a request's card
from its CardView, a thread note, the preview, a step's report, the incident card) and the notifier picks the
builders (bot/slack/cards.py, pipeline_blocks.py, fleet_blocks.py, incident_blocks.py). What it renders is a
``Message``, opaque to the domain, which posts it (a thread post Slack refuses is kept and tried again later by
Flow.post_in_thread). Every call answers instead of raising when Slack refuses, after the client's own retries
(rate limits, dropped connections, bot/slack/retries.py): ``Sent.error`` is Slack's error code, or the
transport exception's type. Without a client (CLI-only use) nothing is sent and nothing fails.

Usage::

    notifier = Notifier(client)
    sent = notifier.post("request 7", channel, notifier.thread_note("hi"), thread_ts=ts)
    if sent.error: ...    # the caller decides: try later, cancel, or just go on (already logged here)
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from bot.models import Incident, Request
from bot.slack.cards import Preview, build_preview, build_rehearsal_message, build_request_card, build_thread_note
from bot.slack.fleet_blocks import build_fleet_preview_message, build_targets_file
from bot.slack.incident_blocks import build_incident_card
from bot.slack.mrkdwn import Message
from bot.slack.pipeline_blocks import build_failure_message, build_step_message, build_summary_message
from bot.slack.retries import slack_error
from bot.views import CardView, IncidentView

__all__ = ["Message", "Notifier", "Preview", "Sent"]

log = logging.getLogger(__name__)
GROUP_CACHE_SECONDS = 300.0


@dataclass(frozen=True)
class Sent:
    """What Slack answered: the message's ts and channel, or the error that kept it out."""

    ts: str | None = None
    channel: str | None = None
    error: str | None = None


class Notifier:
    """The bot's Slack client behind the calls the domain makes."""

    def __init__(self, client: WebClient | None) -> None:
        self.client = client
        self._groups: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._groups_lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """False when no bot token is configured: every call is a no-op."""
        return self.client is not None

    # ------------------------------------------------ what the domain says, rendered as Block Kit (pure)
    def request_card(self, request: Request, view: CardView) -> Message:
        """A request's root card, re-rendered from the store after every change."""
        return build_request_card(request, view)

    def thread_note(self, text: str) -> Message:
        """A note in a thread; ``text`` is mrkdwn (the caller escapes what it quotes)."""
        return build_thread_note(text)

    def preview(self, request: Request) -> Preview:
        """The SQL and the risk of every migration: combined messages and the long files to upload."""
        return build_preview(request)

    def fleet_preview(self, environment: str, fleet: dict[str, Any], risks: dict[str, str]) -> Message:
        """A fleet request's targets grouped by ledger state, each file set's risk once, and the rollout."""
        return build_fleet_preview_message(environment, fleet, risks)

    def targets_file(self, request_id: int, columns: tuple[str, ...], rows: list[dict[str, str]]) -> str:
        """A rollout's Targets file: CSV of ``columns``, one line per row, formula-looking cells quoted."""
        return build_targets_file(request_id, columns, rows)

    def rehearsal(self, rehearsal: Any, headline: str | None = None, broken: Sequence[str] = ()) -> Message:
        """What a rehearsal observed (bot/pg/rehearsal.py's result), its headline and the app queries it breaks."""
        return build_rehearsal_message(rehearsal, headline, broken)

    def step_report(self, request_id: int, step: str, status: str, duration_ms: int | None = None,
                    lines: Sequence[str] = ()) -> Message:
        """A step of the run started / succeeded / failed (``lines`` are mrkdwn)."""
        return build_step_message(request_id, step, status, duration_ms, tuple(lines))

    def failure_report(self, request_id: int, failed_step: str, db_state: str, error: str) -> Message:
        """Where the run failed, what the database holds now, the (scrubbed) error and what to do next."""
        return build_failure_message(request_id, failed_step, db_state, error)

    def run_summary(self, request_id: int, steps: list[tuple[str, int | None]], backup: str | None,
                    events: int) -> Message:
        """The run's end: each step's timing, the backup to restore from, the audit trail's length."""
        return build_summary_message(request_id, steps, backup, events)

    def incident_card(self, incident: Incident, request: Request, view: IncidentView) -> Message:
        """An incident's card with the actions its state allows."""
        return build_incident_card(incident, request, view)

    def _call(self, what: str, call: Callable[[WebClient], Any]) -> tuple[dict[str, Any] | None, str | None]:
        """(Slack's answer, None) or (None, the error), the error logged once here with ``what`` it was for."""
        if self.client is None:
            return None, None
        try:
            return call(self.client).data, None
        except (SlackClientError, OSError) as exc:
            error = slack_error(exc) if isinstance(exc, SlackClientError) else type(exc).__name__
            log.warning("%s: Slack refused the call (%s)", what, error)
            return None, error

    def post(self, what: str, channel: str | None, message: Message, *, thread_ts: str | None = None) -> Sent:
        """chat.postMessage into ``channel`` (a thread reply with ``thread_ts``); nothing without a channel."""
        if not channel:
            return Sent()
        answer, error = self._call(what, lambda c: c.chat_postMessage(channel=channel, thread_ts=thread_ts, **message))
        return Sent(ts=answer.get("ts"), channel=answer.get("channel") or channel) if answer else Sent(error=error)

    def update(self, what: str, channel: str | None, ts: str | None, message: Message) -> Sent:
        """chat.update of the message ``ts`` (a card re-rendered from the store)."""
        if self.client is None or not channel or not ts:
            return Sent()
        _, error = self._call(what, lambda c: c.chat_update(channel=channel, ts=ts, **message))
        return Sent(ts=ts, channel=channel, error=error)

    def upload(self, what: str, channel: str | None, thread_ts: str | None, **files: Any) -> Sent:
        """files.upload_v2 into a thread (``content``/``filename``/``title`` or ``file_uploads``)."""
        if self.client is None or not channel or not thread_ts:
            return Sent()
        _, error = self._call(what, lambda c: c.files_upload_v2(channel=channel, thread_ts=thread_ts, **files))
        return Sent(channel=channel, error=error)

    def permalink(self, what: str, channel: str | None, ts: str | None) -> str | None:
        """A link to the message ``ts``, or None when Slack cannot make one."""
        if not channel or not ts:
            return None
        answer, _ = self._call(what, lambda c: c.chat_getPermalink(channel=channel, message_ts=ts))
        return answer.get("permalink") if answer else None

    def group_members(self, group_id: str) -> tuple[str, ...]:
        """Members of a Slack user group, through usergroups.users.list, cached for five minutes."""
        now = time.monotonic()
        with self._groups_lock:
            hit = self._groups.get(group_id)
            if hit and now - hit[0] < GROUP_CACHE_SECONDS:
                return hit[1]
        if self.client is None:
            return ()
        answer, _ = self._call(f"user group {group_id}", lambda c: c.usergroups_users_list(usergroup=group_id))
        users = tuple((answer or {}).get("users") or ())
        with self._groups_lock:
            self._groups[group_id] = (now, users)
        return users

    def names(self, users: Iterable[str]) -> dict[str, str]:
        """Slack user id -> the name people know them by (users.info; an id Slack cannot resolve stays an id)."""
        found: dict[str, str] = {}
        for user in sorted(u for u in users if u and u[0] in "UW"):
            answer, _ = self._call(f"the name of {user}", lambda c: c.users_info(user=user))
            info = (answer or {}).get("user") or {}
            profile = info.get("profile") or {}
            name = info.get("real_name") or profile.get("real_name") or profile.get("display_name") or info.get("name")
            if name:
                found[user] = str(name)
        return found
