"""Telling a person what went wrong: the app-wide error handler and the after-ack error reply."""
from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from slack_bolt import BoltResponse, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from bot.errors import GuardianError
from bot.redaction import scrub
from bot.slack.blocks import build_error_message
from bot.slack.mrkdwn import Mrkdwn

logger = logging.getLogger(__name__)

UNEXPECTED_ERROR_TEXT = "Something went wrong on our side and nothing was changed by this action."


def handle_error(
    error: Exception,
    body: dict[str, Any],
    respond: Respond | None,
    client: WebClient,
    response: BoltResponse | None,
) -> BoltResponse | None:
    """App-wide: a GuardianError becomes its plain message; anything else an ephemeral line with an error id."""
    if isinstance(error, GuardianError):  # its message is for people: never with a known secret in it
        text = scrub(error.message)  # already-mrkdwn messages (mentions of approvers) stay so; others are escaped
        message = build_error_message(Mrkdwn(text) if isinstance(error.message, Mrkdwn) else text)
        logger.info("slack %s refused: %s (%s)", _what(body), error.code, scrub(error.message))
    else:
        error_id = f"E-{uuid.uuid4().hex[:10]}"
        message = build_error_message(UNEXPECTED_ERROR_TEXT, error_id)
        logger.error("slack %s failed error_id=%s", _what(body), error_id, exc_info=error)
    if response is not None and body.get("command"):
        # The slash command was not acknowledged yet: the reply travels in the HTTP response.
        return BoltResponse(
            status=200,
            headers={"content-type": "application/json;charset=utf-8"},
            body=json.dumps({**message, "response_type": "ephemeral"}),
        )
    _deliver(message, body, respond, client)
    return BoltResponse(status=200, body="") if response is not None else None


def _deliver(message: dict[str, Any], body: dict[str, Any], respond: Respond | None, client: WebClient) -> None:
    """Send an error reply where the user will see it: response_url, else ephemeral, else a DM."""
    user = body.get("user_id") or (body.get("user") or {}).get("id")
    channel = body.get("channel_id") or (body.get("channel") or {}).get("id")
    try:
        if respond is not None:
            respond(**message, response_type="ephemeral", replace_original=False)
        elif user and channel:
            client.chat_postEphemeral(channel=channel, user=user, **message)
        elif user:
            client.chat_postMessage(channel=user, **message)
        else:
            logger.warning("slack %s: no user to tell about the error", _what(body))
    except SlackClientError as exc:
        logger.error("slack %s: could not deliver the error reply: %s", _what(body), type(exc).__name__)


def _what(body: dict[str, Any]) -> str:
    """A short label of the request for logs (never its payload)."""
    if body.get("command"):
        return f"command {body['command']}"
    kind = body.get("type", "request")
    if kind == "block_actions":
        return "action " + ",".join(a.get("action_id", "?") for a in body.get("actions", []))
    if kind in ("view_submission", "view_closed"):
        return f"{kind} {(body.get('view') or {}).get('callback_id')}"
    if kind == "event_callback":
        return f"event {(body.get('event') or {}).get('type')}"
    return str(kind)


@contextmanager
def replying_errors(body: dict[str, Any], respond: Respond | None, client: WebClient) -> Iterator[None]:
    """Use after ack(): an error becomes an ephemeral reply here instead of propagating to Bolt.

    (Bolt re-reads the ack after a listener raises; an error right after ack() can turn the HTTP
    response into a 404, so listeners never let errors escape once they have acknowledged.)
    """
    try:
        yield
    except Exception as error:  # noqa: BLE001 - every error is reported to the person, with an id if unexpected
        handle_error(error, body, respond, client, None)
