"""Builds the Bolt app: client, listeners and the one app-wide error handler.

Usage::

    app = build_app(load_settings(), load_config())            # HTTP: needs the signing secret
    app = build_app(settings, config, client=WebClient(token=t, base_url=standin.url))
"""
from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from slack_bolt import App, BoltResponse, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.config import GuardianConfig, Settings
from bot.errors import ConfigError, GuardianError
from bot.slack.blocks import build_error_message
from bot.slack.listeners import actions, commands, events, views

logger = logging.getLogger(__name__)

UNEXPECTED_ERROR_TEXT = "Something went wrong on our side and nothing was changed by this action."


def build_app(
    settings: Settings,
    config: GuardianConfig,
    client: WebClient | None = None,
    *,
    socket_mode: bool = False,
    verify_token: bool = False,
) -> App:
    """A configured Bolt App. ``client`` defaults to WebClient(SLACK_BOT_TOKEN, base_url=SLACK_API_URL).

    ``verify_token`` calls auth.test now (against ``client``'s base URL) so a bad token fails at start;
    otherwise Bolt calls it on the first request. Socket Mode needs no signing secret.
    """
    settings.require(*(["slack_bot_token"] if client is None else []))
    if not socket_mode:
        settings.require("slack_signing_secret")
    if client is None:
        assert settings.slack_bot_token is not None
        client = WebClient(token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url)
    signing_secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    if verify_token:
        check_token(client)
    app = App(
        name="migration-guardian",
        client=client,
        signing_secret=None if socket_mode else signing_secret,
        request_verification_enabled=not socket_mode,
        token_verification_enabled=False,  # check_token did it; else Bolt calls auth.test on first request
        process_before_response=False,
    )
    app.error(handle_error)
    commands.register(app, config)
    actions.register(app, config)
    views.register(app, config)
    events.register(app, config)
    return app


def check_token(client: WebClient) -> None:
    """Call auth.test through ``client``; a refused token or unreachable API becomes one ConfigError line."""
    try:
        client.auth_test()
    except SlackApiError as exc:
        raise ConfigError(
            f"SLACK_BOT_TOKEN was refused by the Slack API at {client.base_url} "
            f"({exc.response.get('error', 'unknown error')}); check the token and SLACK_API_URL",
            code="slack-auth",
        ) from None
    except (SlackClientError, OSError) as exc:
        raise ConfigError(
            f"cannot reach the Slack API at {client.base_url} ({type(exc).__name__}); check SLACK_API_URL",
            code="slack-unreachable",
        ) from None


def handle_error(
    error: Exception,
    body: dict[str, Any],
    respond: Respond | None,
    client: WebClient,
    response: BoltResponse | None,
) -> BoltResponse | None:
    """App-wide: a GuardianError becomes its plain message; anything else an ephemeral line with an error id."""
    if isinstance(error, GuardianError):
        message = build_error_message(error.message)
        logger.info("slack %s refused: %s (%s)", _what(body), error.code, error.message)
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
