"""A local stand-in for the Slack Web API: a real HTTP server that records every call and answers like Slack.

Usage::

    with SlackStandIn() as standin:
        standin.usergroups["S0DBAS"] = ["U1", "U2"]
        client = WebClient(token=standin.token, base_url=standin.url)
        client.chat_postMessage(channel="C1", text="hi")
        call = standin.wait_for("chat.postMessage", lambda c: c.params["channel"] == "C1")
        standin.add_bot_to("C1")                          # conversations.replies there now answers
        standin.deliver_event(sender, {"type": "reaction_added", ...})   # None when Slack would not send it

Strict like Slack: Block Kit and views are validated (invalid_blocks), every method needs the manifest's
scope (missing_scope), history needs membership (not_in_channel) and every method is rate-limited by its
tier (HTTP 429 with Retry-After; ``rate_window`` shortens Slack's minute but cannot switch it off).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, Callable, Iterable
from urllib.parse import parse_qsl, urlsplit

from bot.background_http import BackgroundHTTPServer
from bot.slack import standin_rules as rules
from bot.slack.manifest import BOT_EVENTS, BOT_SCOPES
from bot.slack.standin_api import ApiError, StoredFile, Workspace, decode_params
from bot.slack.standin_limits import RateLimits, retry_after

if TYPE_CHECKING:
    from bot.slack.sender import SentResponse, SlackSender

logger = logging.getLogger(__name__)

DEFAULT_TOKEN = "xoxb-guardian-standin"
RESPONSE_URL_METHOD = "response_url"
UPLOAD_METHOD = "upload"
MAX_BODY = 50 * 1024 * 1024


@dataclass(frozen=True)
class RecordedCall:
    """One request the stand-in received; ``token`` is what the caller sent, for assertions only."""

    method: str
    params: dict[str, Any]
    token: str | None
    at: float
    path: str
    response: dict[str, Any] = field(default_factory=dict)
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))


class SlackStandIn:
    """Serves the Web API methods the bot uses on 127.0.0.1 (ephemeral port) and keeps their state in memory.

    ``url`` is the Web API base (``http://127.0.0.1:PORT/api/``) to give ``WebClient(base_url=...)`` or
    ``SLACK_API_URL``. Only tokens in ``tokens`` are accepted (default: ``DEFAULT_TOKEN``). The token has
    ``scopes`` and the app subscribes to ``events`` (default: what bot/slack/manifest.py asks for); the bot
    is in the channels of ``member_of`` (default none: tests and `guardian dev` add theirs with add_bot_to).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens: Iterable[str] = (DEFAULT_TOKEN,),
        team_id: str = "T0GUARDIAN",
        bot_user_id: str = "U0GUARDIAN",
        bot_id: str = "B0GUARDIAN",
        scopes: Iterable[str] = BOT_SCOPES,
        events: Iterable[str] = BOT_EVENTS,
        rate_window: float = 60.0,
    ) -> None:
        self.host = host
        self.port = port
        self.tokens: set[str] = set(tokens)
        self.scopes: set[str] = set(scopes)
        self.events: set[str] = set(events)
        self.member_of: set[str] = set()
        self.private_channels: set[str] = set()
        self.limits = RateLimits(rate_window)
        self._throttled: list[RecordedCall] = []
        self.workspace = Workspace(
            team_id=team_id, bot_user_id=bot_user_id, bot_id=bot_id, root_url=lambda: self.root_url
        )
        self._calls: list[RecordedCall] = []
        self._cond = threading.Condition()
        self._http = BackgroundHTTPServer(host, port, _handler_for(self), name="slack-standin")

    # ---- lifecycle

    def start(self) -> "SlackStandIn":
        """Bind and serve in a daemon thread; returns self."""
        if self._http.running:
            return self
        self.port = self._http.start()
        logger.info("slack stand-in listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if not self._http.running:
            return
        self._http.stop()
        logger.info("slack stand-in on port %s stopped", self.port)

    def __enter__(self) -> "SlackStandIn":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Start and block until interrupted (for ``guardian dev``)."""
        self.start()
        try:
            while self._http.running:
                time.sleep(0.5)
        finally:
            self.stop()

    # ---- addresses

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def url(self) -> str:
        """The Web API base URL: WebClient appends the method name to it."""
        return f"{self.root_url}api/"

    @property
    def token(self) -> str:
        """A token the stand-in accepts."""
        return next(iter(sorted(self.tokens)), DEFAULT_TOKEN)

    def response_url(self, id: str) -> str:
        """A URL whose POSTs are recorded as method ``response_url`` with ``params['id'] == id``."""
        return f"{self.root_url}response/{id}"

    # ---- workspace state (configurable by tests and `guardian dev`)

    @property
    def usergroups(self) -> dict[str, list[str]]:
        return self.workspace.usergroups

    @property
    def users(self) -> dict[str, dict[str, Any]]:
        return self.workspace.users

    @property
    def files(self) -> dict[str, StoredFile]:
        return self.workspace.files

    @property
    def views(self) -> dict[str, dict[str, Any]]:
        return self.workspace.views

    @property
    def ephemerals(self) -> list[dict[str, Any]]:
        return self.workspace.ephemerals

    def messages(self, channel: str) -> list[dict[str, Any]]:
        return self.workspace.messages(channel)

    def file_content(self, file_id: str) -> bytes | None:
        with self.workspace.lock:
            stored = self.workspace.files.get(file_id)
            return None if stored is None else stored.content

    def add_bot_to(self, *channels: str, private: bool = False) -> None:
        """The bot was invited to ``channels`` (``private``: they are private channels)."""
        self.member_of.update(channels)
        if private:
            self.private_channels.update(channels)

    def channel_kind(self, channel: str) -> str:
        return rules.channel_kind(channel, self.private_channels)

    # ---- events Slack would send

    def undeliverable(self, event: dict[str, Any]) -> str | None:
        """Why Slack would never send ``event`` to the app (not subscribed, scope missing, the bot is not in
        the channel), or None when it would."""
        subscription = rules.event_subscription(event, self.private_channels)
        if subscription not in self.events and subscription != "app_rate_limited":
            return f"the app does not subscribe to {subscription}"
        scope = rules.EVENT_SCOPES.get(subscription)
        if scope is not None and scope not in self.scopes:
            return f"{subscription} needs the {scope} scope"
        channel = rules.event_channel(event)
        if channel is not None and channel not in self.member_of:
            return f"the bot is not in {channel}"
        return None

    def deliver_event(self, sender: "SlackSender", event: dict[str, Any], **kw: Any) -> "SentResponse | None":
        """Send ``event`` to the app over HTTP as Slack would, or nothing (None) when Slack would not."""
        reason = self.undeliverable(event)
        if reason is not None:
            logger.info("stand-in: %s event not delivered: %s", event.get("type"), reason)
            return None
        return sender.event(event, **kw)

    def socket_envelope(self, event: dict[str, Any], *, event_id: str, retry_attempt: int = 0) -> dict[str, Any] | None:
        """The Socket Mode envelope Slack sends for ``event`` (``retry_attempt`` 0 on the first delivery),
        or None when Slack would not send it."""
        if self.undeliverable(event) is not None:
            return None
        body = {
            "token": "legacy-verification-token", "team_id": self.workspace.team_id, "api_app_id": "A0GUARDIAN",
            "event": event, "type": "event_callback", "event_id": event_id, "event_time": int(time.time()),
            "authorizations": [{"team_id": self.workspace.team_id, "user_id": self.workspace.bot_user_id,
                                "is_bot": True, "is_enterprise_install": False}],
            "is_ext_shared_channel": False,
        }
        return {"envelope_id": f"env-{event_id}", "type": "events_api", "accepts_response_payload": False,
                "retry_attempt": retry_attempt, "retry_reason": "" if retry_attempt == 0 else "timeout",
                "payload": body}

    # ---- recorded calls

    def record(self, call: RecordedCall) -> None:
        with self._cond:
            self._calls.append(call)
            self._cond.notify_all()

    def record_throttled(self, call: RecordedCall) -> None:
        with self._cond:
            self._throttled.append(call)

    def calls(self, method: str | None = None) -> list[RecordedCall]:
        """Recorded calls, oldest first; only those to ``method`` when given (calls answered 429 are in throttled())."""
        with self._cond:
            return [c for c in self._calls if method is None or c.method == method]

    def throttled(self, method: str | None = None) -> list[RecordedCall]:
        """Calls answered HTTP 429 (rate limited), oldest first."""
        with self._cond:
            return [c for c in self._throttled if method is None or c.method == method]

    def responses(self, id: str) -> list[RecordedCall]:
        """POSTs received on ``response_url(id)``."""
        return [c for c in self.calls(RESPONSE_URL_METHOD) if c.params.get("id") == id]

    def clear(self) -> None:
        """Forget recorded calls (the workspace state stays)."""
        with self._cond:
            self._calls.clear()

    def wait_for(
        self,
        method: str,
        predicate: Callable[[RecordedCall], bool] | None = None,
        timeout: float = 5.0,
    ) -> RecordedCall:
        """The first recorded call to ``method`` matching ``predicate``, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for call in self._calls:
                    if call.method == method and (predicate is None or predicate(call)):
                        return call
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = ", ".join(c.method for c in self._calls) or "none"
                    raise TimeoutError(f"no matching {method} call within {timeout}s; calls seen: {seen}")
                self._cond.wait(remaining)

    # ---- request handling (called from server threads)

    def handle_api(self, method: str, params: dict[str, Any], token: str | None) -> dict[str, Any]:
        """Answer one Web API call as Slack would (``params`` already decoded); the body of answer_api."""
        return self.answer_api(method, params, token)[1]

    def answer_api(self, method: str, params: dict[str, Any], token: str | None) -> tuple[int, dict[str, Any], int]:
        """(HTTP status, body, Retry-After seconds or 0) for one Web API call, checked in Slack's order:
        the method, the token, the rate limit, the scope, the bot's membership, the payload."""
        if method not in self.workspace.methods:
            return 200, {"ok": False, "error": "unknown_method"}, 0
        if not token:
            return 200, {"ok": False, "error": "not_authed"}, 0
        if token not in self.tokens:
            return 200, {"ok": False, "error": "invalid_auth"}, 0
        channel = str(params.get("channel") or params.get("channel_id") or "") or None
        wait = self.limits.take(method, channel)
        if wait > 0:
            return 429, {"ok": False, "error": "ratelimited"}, retry_after(wait)
        refused = self._refusal(method, params, channel)
        if refused is not None:
            return 200, refused, 0
        try:
            return 200, self.workspace.call(method, params), 0
        except ApiError as exc:
            return 200, {"ok": False, "error": exc.code, **exc.extra}, 0

    def _refusal(self, method: str, params: dict[str, Any], channel: str | None) -> dict[str, Any] | None:
        kind = self.channel_kind(channel or "")
        scope = rules.needed_scope(method, params, kind=kind)
        if scope is not None and scope not in self.scopes:
            return {"ok": False, "error": "missing_scope", "needed": scope, "provided": ",".join(sorted(self.scopes))}
        if method in rules.MEMBER_METHODS and channel and not channel.startswith(("U", "W")):
            public_post = kind == "public" and "chat:write.public" in self.scopes and method.startswith("chat.")
            if channel not in self.member_of and not public_post:
                return {"ok": False, "error": "not_in_channel"}
        if method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
            code, problems = rules.message_problems(params)
            if code:
                logger.info("stand-in: %s refused (%s): %s", method, code, "; ".join(problems[:3]))
                return rules.error_body(code, problems)
        if method in ("views.open", "views.update"):
            problems = rules.view_problems(params.get("view"))
            if problems:
                logger.info("stand-in: %s refused: %s", method, "; ".join(problems[:3]))
                return rules.error_body("invalid_arguments", problems)
        return None


def _handler_for(standin: SlackStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(_StandInHandler):
        owner = standin

    return Handler


class _StandInHandler(BaseHTTPRequestHandler):
    owner: SlackStandIn
    protocol_version = "HTTP/1.1"
    server_version = "SlackStandIn/1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("stand-in %s", format % args)  # request lines carry paths only, never headers

    def do_GET(self) -> None:
        self._dispatch(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send_json(413, {"ok": False, "error": "request_too_large"})
            return
        self._dispatch(self.rfile.read(length) if length else b"")

    def _dispatch(self, body: bytes) -> None:
        parts = urlsplit(self.path)
        segments = [s for s in parts.path.split("/") if s]
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        kind, name = (segments + ["", ""])[:2] if len(segments) <= 2 else ("", "")
        if kind == "api" and name:
            self._api(name, query, body)
        elif kind == "upload" and name and self.command == "POST":
            self._upload(name, body)
        elif kind == "response" and name and self.command == "POST":
            self._response(name, body)
        elif kind == "files" and name and self.command == "GET":
            self._file(name)
        else:
            self._send_json(404, {"ok": False, "error": "not_found"})

    def _api(self, method: str, query: dict[str, str], body: bytes) -> None:
        params: dict[str, Any] = dict(query)
        try:
            params.update(self._body_params(body))
        except ValueError:
            self._record(method, params, None, {"ok": False, "error": "invalid_json"}, body)
            self._send_json(200, {"ok": False, "error": "invalid_json"})
            return
        token = self._bearer() or params.pop("token", None) or None
        params.pop("token", None)
        status, wait = 200, 0
        try:
            params = decode_params(params)  # blocks, view, files... arrive as JSON strings in forms
        except ApiError as exc:
            response = {"ok": False, "error": exc.code}
        else:
            status, response, wait = self.owner.answer_api(method, params, token)
        call = RecordedCall(method=method, params=params, token=token, at=time.time(), path=self.path,
                            response=response, body=body)
        if status == 429:
            self.owner.record_throttled(call)
            self._send_json(status, response, {"Retry-After": str(wait)})
            return
        self.owner.record(call)
        self._send_json(status, response)

    def _upload(self, file_id: str, body: bytes) -> None:
        try:
            self.owner.workspace.receive_upload(file_id, body)
        except ApiError as exc:
            self._record(UPLOAD_METHOD, {"file_id": file_id}, None, {"ok": False, "error": exc.code}, body)
            self._send_text(404, f"{exc.code}")
            return
        self._record(UPLOAD_METHOD, {"file_id": file_id, "length": len(body)}, None, {"ok": True}, body)
        self._send_text(200, f"OK - {len(body)}")

    def _response(self, id: str, body: bytes) -> None:
        try:
            params = self._body_params(body)
        except ValueError:
            self._send_json(400, {"ok": False, "error": "invalid_json"})
            return
        params = {**params, "id": id}
        self._record(RESPONSE_URL_METHOD, params, None, {"ok": True}, body)
        self._send_json(200, {"ok": True})

    def _file(self, file_id: str) -> None:
        token = self._bearer()
        if token not in self.owner.tokens:
            self._send_text(403, "invalid_auth")
            return
        content = self.owner.file_content(file_id)
        if content is None:
            self._send_text(404, "file_not_found")
            return
        self._send(200, "application/octet-stream", content)

    # ---- plumbing

    def _body_params(self, body: bytes) -> dict[str, Any]:
        if not body:
            return {}
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        text = body.decode("utf-8")
        if ctype == "application/json":
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("JSON body must be an object")
            return data
        form = dict(parse_qsl(text, keep_blank_values=True))
        if set(form) == {"payload"}:  # response_url posts may arrive as payload=<json>
            data = json.loads(form["payload"])
            return data if isinstance(data, dict) else {"payload": data}
        return form

    def _bearer(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth[7:].strip() or None if auth.lower().startswith("bearer ") else None

    def _record(
        self, method: str, params: dict[str, Any], token: str | None, response: dict[str, Any], body: bytes
    ) -> None:
        self.owner.record(
            RecordedCall(
                method=method, params=params, token=token, at=time.time(), path=self.path,
                response=response, body=body,
            )
        )

    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(status, "application/json; charset=utf-8", json.dumps(payload).encode("utf-8"), headers)

    def _send_text(self, status: int, text: str) -> None:
        self._send(status, "text/plain; charset=utf-8", text.encode("utf-8"))

    def _send(self, status: int, content_type: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
