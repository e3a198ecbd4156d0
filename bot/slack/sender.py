"""Sends requests to the app over HTTP exactly as Slack does: signed slash commands, interactivity and events.

Usage::

    sender = SlackSender("http://127.0.0.1:3000/slack/events", signing_secret="...")
    reply = sender.slash_command("help")                  # reply.status, reply.headers, reply.body
    sender.slash_command("help", forge=Forge(secret="wrong"))   # -> 401
    sender.block_action("request_approve", value="42", response_url=standin.response_url("a1"))
"""
from __future__ import annotations

import itertools
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
_seq = itertools.count(1)


@dataclass(frozen=True)
class Forge:
    """Ways to make a request that Slack would not send: for testing the app's defences."""

    secret: str | None = None  # sign with this secret instead of the real one
    timestamp: int | None = None  # X-Slack-Request-Timestamp (default: now)
    signature: str | None = None  # send this X-Slack-Signature verbatim
    unsigned: bool = False  # send no signature headers at all
    retry_num: int | None = None  # X-Slack-Retry-Num
    retry_reason: str | None = None  # X-Slack-Retry-Reason, e.g. "http_timeout"


@dataclass(frozen=True)
class SentResponse:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: str

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class SlackUser:
    id: str = "U0REQUESTER"
    name: str = "requester"
    team_id: str = "T0GUARDIAN"


@dataclass
class SlackSender:
    """Signs with ``signing_secret`` (v0 HMAC, as SignatureVerifier checks) and POSTs to ``url``."""

    url: str
    signing_secret: str = field(repr=False)
    team_id: str = "T0GUARDIAN"
    api_app_id: str = "A0GUARDIAN"
    timeout: float = 10.0

    # ---- Slack's request kinds

    def slash_command(
        self,
        text: str = "",
        *,
        command: str = "/migrate",
        user: SlackUser | None = None,
        channel_id: str = "C0GUARDIAN",
        channel_name: str = "migrations",
        response_url: str = "https://hooks.slack.com/commands/T0GUARDIAN/1/stand-in",
        trigger_id: str | None = None,
        forge: Forge = Forge(),
    ) -> SentResponse:
        """A slash command, form-encoded as Slack sends it."""
        user = user or SlackUser(team_id=self.team_id)
        form = {
            "token": "legacy-verification-token",
            "team_id": self.team_id,
            "team_domain": "guardian",
            "channel_id": channel_id,
            "channel_name": channel_name,
            "user_id": user.id,
            "user_name": user.name,
            "command": command,
            "text": text,
            "api_app_id": self.api_app_id,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": trigger_id or _trigger_id(),
        }
        return self.post(urlencode(form), FORM, forge=forge)

    def block_action(
        self,
        action_id: str,
        *,
        value: str | None = None,
        block_id: str = "actions",
        label: str = "Button",
        user: SlackUser | None = None,
        channel_id: str = "C0GUARDIAN",
        message: dict[str, Any] | None = None,
        response_url: str = "https://hooks.slack.com/actions/T0GUARDIAN/1/stand-in",
        forge: Forge = Forge(),
    ) -> SentResponse:
        """A button click on a message (``payload=<json>``)."""
        user = user or SlackUser(team_id=self.team_id)
        message = message or {"type": "message", "ts": "1700000000.000100", "text": "", "blocks": []}
        action = {
            "type": "button",
            "action_id": action_id,
            "block_id": block_id,
            "text": {"type": "plain_text", "text": label},
            "action_ts": f"{time.time():.6f}",
        }
        if value is not None:
            action["value"] = value
        payload = {
            "type": "block_actions",
            "team": {"id": self.team_id, "domain": "guardian"},
            "user": {"id": user.id, "username": user.name, "name": user.name, "team_id": user.team_id},
            "api_app_id": self.api_app_id,
            "token": "legacy-verification-token",
            "container": {
                "type": "message",
                "message_ts": message["ts"],
                "channel_id": channel_id,
                "is_ephemeral": False,
            },
            "trigger_id": _trigger_id(),
            "channel": {"id": channel_id, "name": "migrations"},
            "message": message,
            "response_url": response_url,
            "actions": [action],
        }
        return self.payload(payload, forge=forge)

    def view_submission(
        self,
        callback_id: str,
        *,
        values: dict[str, dict[str, Any]] | None = None,
        private_metadata: str = "",
        view_id: str = "V0GUARDIAN",
        user: SlackUser | None = None,
        forge: Forge = Forge(),
    ) -> SentResponse:
        """A modal submission; ``values`` is view.state.values ({block_id: {action_id: {...}}})."""
        user = user or SlackUser(team_id=self.team_id)
        payload = {
            "type": "view_submission",
            "team": {"id": self.team_id, "domain": "guardian"},
            "user": {"id": user.id, "username": user.name, "name": user.name, "team_id": user.team_id},
            "api_app_id": self.api_app_id,
            "token": "legacy-verification-token",
            "trigger_id": _trigger_id(),
            "view": {
                "id": view_id,
                "team_id": self.team_id,
                "type": "modal",
                "callback_id": callback_id,
                "private_metadata": private_metadata,
                "title": {"type": "plain_text", "text": "Migration Guardian"},
                "blocks": [],
                "state": {"values": values or {}},
                "hash": f"{int(time.time())}.stand-in",
                "app_id": self.api_app_id,
            },
            "response_urls": [],
        }
        return self.payload(payload, forge=forge)

    def event(
        self,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        bot_user_id: str = "U0GUARDIAN",
        forge: Forge = Forge(),
    ) -> SentResponse:
        """An Events API callback (JSON body) wrapping ``event``."""
        body = {
            "token": "legacy-verification-token",
            "team_id": self.team_id,
            "api_app_id": self.api_app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{next(_seq):010d}",
            "event_time": int(time.time()),
            "authorizations": [
                {"team_id": self.team_id, "user_id": bot_user_id, "is_bot": True, "is_enterprise_install": False}
            ],
            "is_ext_shared_channel": False,
        }
        return self.post(json.dumps(body), JSON, forge=forge)

    def url_verification(self, challenge: str, *, forge: Forge = Forge()) -> SentResponse:
        """The handshake Slack sends when the request URL is saved."""
        body = {"token": "legacy-verification-token", "challenge": challenge, "type": "url_verification"}
        return self.post(json.dumps(body), JSON, forge=forge)

    # ---- raw

    def payload(self, payload: dict[str, Any], *, forge: Forge = Forge()) -> SentResponse:
        """Interactivity: form body ``payload=<json>``."""
        return self.post(urlencode({"payload": json.dumps(payload)}), FORM, forge=forge)

    def post(self, body: str, content_type: str, *, forge: Forge = Forge()) -> SentResponse:
        """POST ``body`` signed like Slack (unless ``forge`` says otherwise); any status is returned."""
        headers = {"Content-Type": content_type, "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)"}
        if not forge.unsigned:
            timestamp = str(forge.timestamp if forge.timestamp is not None else int(time.time()))
            headers["X-Slack-Request-Timestamp"] = timestamp
            headers["X-Slack-Signature"] = forge.signature or sign(
                forge.secret if forge.secret is not None else self.signing_secret, timestamp, body
            )
        if forge.retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(forge.retry_num)
        if forge.retry_reason is not None:
            headers["X-Slack-Retry-Reason"] = forge.retry_reason
        request = urllib.request.Request(self.url, data=body.encode("utf-8"), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                return _response(resp.status, resp.headers.items(), resp.read())
        except urllib.error.HTTPError as exc:
            return _response(exc.code, exc.headers.items(), exc.read())


def sign(secret: str, timestamp: str, body: str | bytes) -> str:
    """The ``X-Slack-Signature`` value (``v0=<hex hmac-sha256>``) Slack would send."""
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    return signature


def _response(status: int, headers: Any, raw: bytes) -> SentResponse:
    return SentResponse(
        status=status, headers={k.lower(): v for k, v in headers}, body=raw.decode("utf-8", "replace")
    )


def _trigger_id() -> str:
    return f"{next(_seq)}.{int(time.time())}.stand-in"
