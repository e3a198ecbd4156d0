"""Events API callbacks: replies in incident threads and 📌 reactions become timeline notes."""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from bot.config import GuardianConfig
from bot.errors import PolicyDenied
from bot.flow import Flow
from bot.incidents import PIN_REACTION, IncidentService

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
                                  text=f":no_entry: Not added to the timeline: {exc.message}")
    except SlackClientError as exc2:
        logger.warning("could not tell %s why the note was refused: %s", user, type(exc2).__name__)


def register(app: App, config: GuardianConfig, flow: Flow | None = None) -> None:
    """Attach the event listeners (Bolt acks events itself; an unhandled event would answer 404)."""

    def handle_message_event(event: dict[str, Any], client: WebClient) -> None:
        if flow is None or event.get("subtype") in IGNORED_SUBTYPES or event.get("bot_id"):
            return
        thread_ts, channel = event.get("thread_ts"), event.get("channel")
        if not thread_ts or thread_ts == event.get("ts"):
            return
        incident = flow.store.find_incident(channel=channel, thread_ts=thread_ts)
        if incident is None:
            return
        text = (event.get("text") or "").strip()
        if not text:
            return
        try:
            IncidentService(flow).note(incident.id, event.get("user", "?"), text, source="thread",
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
        try:
            found = client.conversations_replies(channel=channel, ts=ts, limit=1, inclusive=True)
        except SlackClientError as exc:
            logger.warning("pinned message %s could not be read: %s", ts, type(exc).__name__)
            return
        message = next((m for m in found.get("messages") or [] if m.get("ts") == ts), None)
        if message is None:
            return
        incident = flow.store.find_incident(channel=channel, thread_ts=message.get("thread_ts") or ts)
        if incident is None:
            return
        try:  # the pinner decides what enters the timeline; the words stay attributed to their author
            IncidentService(flow).note(incident.id, message.get("user") or event.get("item_user") or "?",
                                       message.get("text") or "", source="pin", slack_ts=ts, posted_at=_posted_at(ts),
                                       added_by=event.get("user") or "?")
        except PolicyDenied as exc:
            logger.info("incident %s: pinned message %s not recorded: %s", incident.id, ts, exc.code)
            _refuse(client, channel, event.get("user"), message.get("thread_ts") or ts, exc)
            return
        logger.info("incident %s: pinned message %s recorded", incident.id, ts)

    app.event("message")(handle_message_event)
    app.event("reaction_added")(handle_reaction_added_event)
