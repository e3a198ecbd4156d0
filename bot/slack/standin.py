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

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

from bot.background_http import BackgroundHTTPServer
from bot.slack import standin_rules as rules
from bot.slack.manifest import BOT_EVENTS, BOT_SCOPES
from bot.slack.standin_api import ApiError, StoredFile, Workspace
from bot.slack.standin_http import MAX_BODY, RESPONSE_URL_METHOD, UPLOAD_METHOD, RecordedCall, handler_for
from bot.slack.standin_limits import RateLimits, retry_after

if TYPE_CHECKING:
    from bot.slack.sender import SentResponse, SlackSender

logger = logging.getLogger(__name__)

DEFAULT_TOKEN = "xoxb-guardian-standin"
DEFAULT_APP_TOKEN = "xapp-guardian-standin"
__all__ = ["DEFAULT_APP_TOKEN", "DEFAULT_TOKEN", "MAX_BODY", "RESPONSE_URL_METHOD", "UPLOAD_METHOD", "ApiError",
           "RecordedCall", "SlackStandIn"]


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
        self.app_tokens: dict[str, set[str]] = {DEFAULT_APP_TOKEN: {"connections:write"}}  # token -> its scopes
        self.events: set[str] = set(events)
        self.member_of: set[str] = set()
        self.private_channels: set[str] = set()
        self.limits = RateLimits(rate_window)
        self._throttled: list[RecordedCall] = []
        self._outages: dict[str, int] = {}
        self.workspace = Workspace(
            team_id=team_id, bot_user_id=bot_user_id, bot_id=bot_id, root_url=lambda: self.root_url
        )
        self._calls: list[RecordedCall] = []
        self._cond = threading.Condition()
        self._http = BackgroundHTTPServer(host, port, handler_for(self), name="slack-standin")

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

    def fail_next(self, method: str, times: int = 1) -> None:
        """Slack has a bad moment: the next ``times`` calls to ``method`` answer HTTP 503 service_unavailable."""
        with self._cond:
            self._outages[method] = self._outages.get(method, 0) + times

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

    def answer_api(self, method: str, params: dict[str, Any], token: str | None) -> tuple[int, dict[str, Any], int]:
        """(HTTP status, body, Retry-After seconds or 0) for one Web API call, checked in Slack's order:
        the method, the token, the rate limit, the scope, the bot's membership, the payload."""
        if method == "apps.connections.open":
            return 200, self._connections_open(token), 0
        if method not in self.workspace.methods:
            return 200, {"ok": False, "error": "unknown_method"}, 0
        if not token:
            return 200, {"ok": False, "error": "not_authed"}, 0
        if token in self.app_tokens:
            return 200, {"ok": False, "error": "not_allowed_token_type"}, 0
        if token not in self.tokens:
            return 200, {"ok": False, "error": "invalid_auth"}, 0
        with self._cond:
            if self._outages.get(method, 0) > 0:
                self._outages[method] -= 1
                return 503, {"ok": False, "error": "service_unavailable"}, 0
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

    def _connections_open(self, token: str | None) -> dict[str, Any]:
        """apps.connections.open: only an app-level token with connections:write gets a (here unserved) URL."""
        if not token:
            return {"ok": False, "error": "not_authed"}
        if token in self.tokens:
            return {"ok": False, "error": "not_allowed_token_type"}
        if token not in self.app_tokens:
            return {"ok": False, "error": "invalid_auth"}
        if "connections:write" not in self.app_tokens[token]:
            return {"ok": False, "error": "missing_scope", "needed": "connections:write",
                    "provided": ",".join(sorted(self.app_tokens[token]))}
        return {"ok": True, "url": f"ws://{self.host}:{self.port}/socket/not-served"}

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
