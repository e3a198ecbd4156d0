"""Slack as the domain sees it: post, update, upload, permalinks, user groups and names, with one error handling.

Flow and IncidentService receive a Notifier from the wiring (bot/slack/app.py, workers/runtime.py, bot/cli.py)
and never touch the Web API client nor Block Kit: they say what to tell in their own terms (a request's card
from its CardView, a thread note, the preview, a step's report, the incident card) and the notifier renders it
(its ``Messages`` side, bot/slack/messages.py, picks the builders). The rendered ``Message`` is opaque to the
domain, which posts it (a thread post Slack refuses is kept and tried again later by Flow.post_in_thread).
Every call answers instead of raising when Slack refuses, after the client's own retries
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from bot.slack.messages import Messages, Preview
from bot.slack.mrkdwn import Message
from bot.slack.retries import LATE_POST_STEP, late_post_delay, slack_error

__all__ = ["LATE_POST_STEP", "Message", "Notifier", "Preview", "Sent"]

log = logging.getLogger(__name__)
GROUP_CACHE_SECONDS = 300.0


@dataclass(frozen=True)
class Sent:
    """What Slack answered: the message's ts and channel, or the error that kept it out."""

    ts: str | None = None
    channel: str | None = None
    error: str | None = None


class Notifier(Messages):
    """The bot's Slack client behind the calls the domain makes, and what the domain says (Messages)."""

    def __init__(self, client: WebClient | None) -> None:
        self.client = client
        self._groups: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._groups_lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """False when no bot token is configured: every call is a no-op."""
        return self.client is not None

    def late_post_delay(self, attempt: int, error: str) -> int | None:
        """Seconds before late attempt ``attempt`` of a thread post Slack refused with ``error`` (a
        ``LATE_POST_STEP`` job), or None when trying again cannot help (bot/slack/retries.py)."""
        return late_post_delay(attempt, error)

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
