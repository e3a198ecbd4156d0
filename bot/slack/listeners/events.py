"""Events API callbacks: replies in incident threads and 📌 reactions become timeline notes; Slack's
app_rate_limited notice is acknowledged and logged."""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from collections.abc import Callable

from slack_bolt import App, BoltRequest, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from bot.config import GuardianConfig
from bot.errors import PolicyDenied
from bot.flow import Flow
from bot.incidents import PIN_REACTION, IncidentService
from bot.slack.mrkdwn import as_mrkdwn

logger = logging.getLogger(__name__)
IGNORED_SUBTYPES = {"bot_message", "message_changed", "message_deleted", "channel_join", "channel_leave"}


def _posted_at(ts: str | None) -> datetime | None:
    """A timeline entry is timestamped when the message was posted, not when we heard of it."""
    try:
        return datetime.fromtimestamp(float(ts or ""), timezone.utc)
    except ValueError:
        return None


def _refuse(client: WebClient, channel: str | None, user: str | None, thread_ts: str | None,
            exc: PolicyDenied) -> None:
    """Tell only the person whose reply or pin the incident's policy kept out of the timeline, and why."""
    if not channel or not user:
        return
    try:
        client.chat_postEphemeral(channel=channel, user=user, thread_ts=thread_ts,
                                  text=f":no_entry: Not added to the timeline: {as_mrkdwn(exc.message)}")
    except SlackClientError as exc2:
        logger.warning("could not tell %s why the note was refused: %s", user, type(exc2).__name__)


def read_message(client: WebClient, channel: str, ts: str) -> dict[str, Any] | None:
    """The message ``ts`` of ``channel``, a thread's root or one of its replies.

    conversations.replies answers a thread parent-first whichever of its messages ``ts`` names, and its
    ``limit`` counts the parent: bounded to [ts, ts] (``inclusive``) with room for two, it returns the
    parent and the message itself (a root comes back alone).
    """
    found = client.conversations_replies(channel=channel, ts=ts, oldest=ts, latest=ts, inclusive=True, limit=2)
    return next((m for m in found.get("messages") or [] if m.get("ts") == ts), None)


def answer_app_rate_limited(req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse:
    """Slack tells an app it dropped its events for a minute (``type: app_rate_limited``, no ``event``):
    acknowledge it (200, not Bolt's 404 for an unhandled request) and say so in the log."""
    body = req.body if isinstance(req.body, dict) else {}
    if body.get("type") != "app_rate_limited":
        return next()
    logger.warning("Slack rate-limited this app's events for team %s in minute %s: some events were not delivered",
                   body.get("team_id", "?"), body.get("minute_rate_limited", "?"))
    return BoltResponse(status=200, body="")


def register(app: App, config: GuardianConfig, flow: Flow | None = None) -> None:
    """Attach the event listeners (Bolt acks events itself; an unhandled event would answer 404)."""
    app.middleware(answer_app_rate_limited)

    def handle_message_event(event: dict[str, Any], client: WebClient) -> None:
        if flow is None or event.get("subtype") in IGNORED_SUBTYPES or event.get("bot_id"):
            return
        thread_ts, channel = event.get("thread_ts"), event.get("channel")
        if not thread_ts or thread_ts == event.get("ts"):
            return
        service = IncidentService(flow)
        incident = service.in_thread(channel, thread_ts)
        if incident is None:
            return
        text = (event.get("text") or "").strip()
        if not text:
            return
        try:
            service.note(incident.id, event.get("user", "?"), text, source="thread",
                                       slack_ts=event.get("ts"), posted_at=_posted_at(event.get("ts")))
        except PolicyDenied as exc:
            logger.info("incident %s: thread reply %s not recorded: %s", incident.id, event.get("ts"), exc.code)
            _refuse(client, channel, event.get("user"), thread_ts, exc)
            return
        logger.info("incident %s: thread reply %s recorded", incident.id, event.get("ts"))

    def handle_reaction_added_event(event: dict[str, Any], client: WebClient) -> None:
        item = event.get("item") or {}
        if flow is None or event.get("reaction") != PIN_REACTION or item.get("type") != "message":
            return
        channel, ts = item.get("channel"), item.get("ts")
        if not channel or not ts:
            return
        try:
            message = read_message(client, channel, ts)
        except SlackClientError as exc:
            error = getattr(exc, "response", None)
            logger.warning("pinned message %s in %s could not be read: %s", ts, channel,
                           error.get("error") if error is not None else type(exc).__name__)
            return
        if message is None:
            logger.info("pinned message %s in %s not found", ts, channel)
            return
        service = IncidentService(flow)
        incident = service.in_thread(channel, message.get("thread_ts") or ts)
        if incident is None:
            return
        try:  # the pinner decides what enters the timeline; the words stay attributed to their author
            service.note(incident.id, message.get("user") or event.get("item_user") or "?",
                                       message.get("text") or "", source="pin", slack_ts=ts, posted_at=_posted_at(ts),
                                       added_by=event.get("user") or "?")
        except PolicyDenied as exc:
            logger.info("incident %s: pinned message %s not recorded: %s", incident.id, ts, exc.code)
            _refuse(client, channel, event.get("user"), message.get("thread_ts") or ts, exc)
            return
        logger.info("incident %s: pinned message %s recorded", incident.id, ts)

    app.event("message")(handle_message_event)
    app.event("reaction_added")(handle_reaction_added_event)
