"""`guardian serve`: the Bolt app behind waitress, on one URL for everything Slack sends, plus /healthz and /metrics.

Usage::

    server, port = make_server(settings, config, "127.0.0.1", 0)   # bound, not yet serving
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    ...
    stop_server(server)          # from any thread; server.run() returns
"""
from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import os
import time
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs

import waitress
from waitress import trigger, wasyncore
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from bot.config import GuardianConfig, Settings
from bot.errors import ConfigError
from bot.metrics import METRICS_PATH
from bot.slack.app import build_app

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3000

# Slack's largest bodies are interactions carrying a whole message (40,000 characters of text and its
# blocks); nothing it sends comes near this. Larger bodies are refused before they are read (413).
MAX_BODY_BYTES = 1 << 20

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def build_wsgi_app(app: App, signing_secret: str | None = None, metrics: WsgiApp | None = None) -> WsgiApp:
    """POST /slack/events -> Bolt (commands, interactivity, events); GET /healthz -> {"ok": true}; GET /metrics
    -> ``metrics`` (bot/metrics.py; 404 without it).

    A request whose Slack signature is valid but whose body is not what Slack sends (not form-encoded or
    JSON, a `payload=` that is not a JSON object, fields missing or of the wrong type) gets 400 with one
    plain line, instead of reaching Bolt and the listeners; unsigned and forged requests still get
    Bolt's 401, whatever their body. `signing_secret` defaults to the app's."""
    slack = SlackRequestHandler(app, path=EVENTS_PATH)
    secret = signing_secret if signing_secret is not None else getattr(app, "_signing_secret", None)
    key = secret.encode() if secret else None

    def events(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            return _plain(start_response, "413 Payload Too Large", f"the body must be at most {MAX_BODY_BYTES} bytes")
        body = environ["wsgi.input"].read(length) if length else b""
        problem = body_problem(body, environ.get("CONTENT_TYPE", ""))
        if key is not None and not _signed(key, body, environ) and body != b"ssl_check=1" \
                and not body.startswith(b"ssl_check=1&"):
            # what Bolt answers a forged request; it would parse the body first, and fail on a malformed one
            return _json(start_response, "401 Unauthorized", {"error": "invalid request"})
        if problem is not None:
            logger.info("guardian serve: refused a signed request with a malformed body: %s", problem)
            return _plain(start_response, "400 Bad Request", f"malformed Slack request: {problem}")
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return slack(environ, start_response)

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == HEALTH_PATH:
            if method not in ("GET", "HEAD"):
                return _json(start_response, "405 Method Not Allowed", {"ok": False, "error": "method_not_allowed"})
            return _json(start_response, "200 OK", {"ok": True})
        if path == METRICS_PATH and metrics is not None:
            return metrics(environ, start_response)
        if path == EVENTS_PATH:
            if method != "POST":
                return _json(start_response, "405 Method Not Allowed", {"ok": False, "error": "method_not_allowed"})
            return events(environ, start_response)
        return _json(start_response, "404 Not Found", {"ok": False, "error": "not_found"})

    return wsgi


def make_server(
    settings: Settings,
    config: GuardianConfig,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    client: WebClient | None = None,
) -> tuple[Any, int]:
    """Check the environment, verify the bot token (auth.test), bind; returns (waitress server, actual port).

    Port 0 picks a free port. ``server.run()`` serves; ``stop_server(server)`` stops it from another thread.
    """
    settings.require("slack_signing_secret", "slack_bot_token")
    app = build_app(settings, config, client, verify_token=True)
    metrics, close_metrics = _metrics(settings, config)
    wsgi = build_wsgi_app(app, settings.slack_signing_secret.get_secret_value(), metrics)
    try:
        server = waitress.create_server(wsgi, host=host, port=port, ident="migration-guardian",
                                        max_request_body_size=MAX_BODY_BYTES)
    except OSError as exc:
        close_metrics()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc})", code="bind-failed") from None
    server.guardian_close = close_metrics  # stop_server and serve call it
    port = getattr(server, "effective_port", None)
    if port is None:  # a host resolving to several addresses gives a MultiSocketServer
        port = server.effective_listen[0][1]
    return server, int(port)


def _metrics(settings: Settings, config: GuardianConfig) -> tuple[WsgiApp, Callable[[], None]]:
    """GET /metrics over a small pool of its own on the bot's database and a Redis client with short timeouts
    (a scrape must not wait behind Slack traffic, nor outlive Prometheus's timeout); this process's counters
    (Slack API errors) go to the same Redis (bot/counters.py). Returns the endpoint and what closes it."""
    from redis import Redis

    from bot.counters import COUNTERS
    from bot.metrics import Metrics, metrics_endpoint
    from bot.store import Store

    redis = Redis.from_url(settings.redis_url.get_secret_value(), socket_connect_timeout=2, socket_timeout=3)
    store = Store(settings.database_url.get_secret_value(), min_size=0, max_size=2) if settings.database_url else None
    COUNTERS.connect_url(settings.redis_url.get_secret_value())
    token = settings.guardian_metrics_token.get_secret_value() if settings.guardian_metrics_token else None

    def close() -> None:
        COUNTERS.connect(None)
        if store is not None:
            store.close()
        redis.close()

    return metrics_endpoint(Metrics(store, redis, list(config.environments)), token), close


def stop_server(server: Any) -> None:
    """Stop a server that runs in another thread: everything is closed from inside its own loop,
    so ``server.run()`` returns (closing it from outside races with the loop's select)."""
    channels = getattr(server, "_map", None) or getattr(server, "map", {})
    pipe = getattr(server, "trigger", None) or next(
        (ch for ch in list(channels.values()) if isinstance(ch, trigger.trigger)), None
    )

    def close_everything() -> None:
        server.task_dispatcher.shutdown()
        wasyncore.close_all(channels)

    if pipe is None:
        close_everything()
    else:
        try:
            pipe.pull_trigger(close_everything)
        except OSError as exc:  # the trigger's pipe is already closed: the loop is gone, close from here
            logger.debug("stop_server: trigger unusable (%s); closing directly", exc)
            close_everything()
    getattr(server, "guardian_close", lambda: None)()


def serve(settings: Settings, config: GuardianConfig, host: str = DEFAULT_HOST, port: int | None = None) -> None:
    """Serve until interrupted. ``port`` None means $PORT (as on PaaS) or 3000."""
    server, actual = make_server(settings, config, host, resolve_port(port))
    logger.info("guardian serve: listening on http://%s:%s%s (health: %s, metrics: %s)", host, actual, EVENTS_PATH,
                HEALTH_PATH, METRICS_PATH)
    try:
        server.run()
    except KeyboardInterrupt:
        logger.info("guardian serve: interrupted, stopping")
    finally:
        server.close()
        getattr(server, "guardian_close", lambda: None)()


def resolve_port(port: int | None) -> int:
    """An explicit port wins; else $PORT (as on PaaS); else 3000."""
    if port is not None:
        return port
    raw = os.environ.get("PORT", "").strip()
    if not raw:
        return DEFAULT_PORT
    if not raw.isdigit() or not 0 <= int(raw) <= 65535:
        raise ConfigError(f"environment variable PORT must be a port number, got {raw!r}", code="bad-env")
    return int(raw)


def _signed(secret: bytes, body: bytes, environ: dict[str, Any]) -> bool:
    """Slack's v0 signature over the raw bytes (slack_sdk's verifier decodes the body as UTF-8 first, and
    raises on a body that is not), at most five minutes old, as Bolt checks it."""
    timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", "")
    signature = environ.get("HTTP_X_SLACK_SIGNATURE", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 5 * 60:
        return False
    digest = hmac.new(secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(f"v0={digest}".encode(), signature.encode("latin-1", "replace"))


# ---------------------------------------------------------------- the shape of what Slack sends
# field -> type it must have when present; the nested ones are checked where they occur
_INTERACTION_FIELDS = {"type": str, "user": dict, "team": dict, "channel": dict, "container": dict, "message": dict,
                       "actions": list, "view": dict, "trigger_id": str, "response_url": str, "api_app_id": str}
_NEEDS_USER = {"block_actions", "view_submission", "view_closed", "shortcut", "message_action"}
_COMMAND_FIELDS = ("command", "text", "user_id")  # what the /migrate listener reads without a default


def body_problem(body: bytes, content_type: str) -> str | None:
    """Why a (signed) body is not something Slack sends, in a few words; None when its shape is right.

    >>> body_problem(b"payload=%7Bnot+json", "application/x-www-form-urlencoded")
    'payload is not JSON'
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "the body is not UTF-8 text"
    if content_type.split(";")[0].strip().lower() == "application/json":
        try:
            return _event_problem(json.loads(text))
        except (ValueError, RecursionError):
            return "the body is not JSON"
    try:
        form = parse_qs(text, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return "the body is not form-encoded"
    twice = sorted(k for k, v in form.items() if len(v) > 1)
    if twice:
        return f"field {twice[0][:40]!r} is given more than once"
    if "payload" in form:
        try:
            return _interaction_problem(json.loads(form["payload"][0]))
        except (ValueError, RecursionError):
            return "payload is not JSON"
    if "command" in form:
        missing = [f for f in _COMMAND_FIELDS if f not in form]
        return f"the slash command has no {missing[0]}" if missing else None
    if "ssl_check" in form:
        return None
    return "neither a slash command, an interaction payload nor an event"


def _wrong_types(data: dict, fields: dict[str, type | tuple[type, ...]], where: str) -> str | None:
    """The first field present (and not null: enterprise installs send e.g. "team": null) with the wrong type."""
    names = {dict: "an object", list: "a list", str: "a string"}
    for name, kind in fields.items():
        if data.get(name) is not None and not isinstance(data[name], kind):
            expected = " or ".join(names[k] for k in (kind if isinstance(kind, tuple) else (kind,)))
            return f"{where}{name} is not {expected}"
    return None


def _interaction_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return "payload is not a JSON object"
    if not isinstance(data.get("type"), str):
        return "payload has no type"
    problem = _wrong_types(data, _INTERACTION_FIELDS, "payload.")
    if problem:
        return problem
    kind = data["type"]
    if kind in _NEEDS_USER and not isinstance((data.get("user") or {}).get("id"), str):
        return "payload has no user id"
    for sub in ("team", "channel", "container", "message"):
        if data.get(sub) is not None and (problem := _wrong_types(data[sub], {"id": str, "ts": str, "text": str, "channel_id": str,
                                                                 "message_ts": str, "thread_ts": str}, f"{sub}.")):
            return problem
    if kind == "block_actions":
        actions = data.get("actions")
        if not isinstance(actions, list) or not actions:
            return "block_actions has no actions"
        for action in actions:
            if not isinstance(action, dict) or not isinstance(action.get("action_id"), str):
                return "an action has no action_id"
            if problem := _wrong_types(action, {"value": str, "block_id": str, "action_ts": str}, "action."):
                return problem
    if kind in ("view_submission", "view_closed"):
        view = data.get("view")
        if not isinstance(view, dict) or not isinstance(view.get("callback_id"), str):
            return "the view has no callback_id"
        if problem := _wrong_types(view, {"private_metadata": str, "state": dict, "id": str, "hash": str}, "view."):
            return problem
        values = (view.get("state") or {}).get("values") or {}
        if not isinstance(values, dict) or not all(
                isinstance(block, dict) and all(isinstance(v, dict) for v in block.values()) for block in values.values()):
            return "view.state.values is not an object of objects"
        if view.get("private_metadata"):
            try:
                if not isinstance(json.loads(view["private_metadata"]), dict):
                    return "view.private_metadata is not a JSON object"
            except ValueError:
                return "view.private_metadata is not JSON"
    return None


def _event_problem(data: Any) -> str | None:
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return "the event body is not a JSON object with a type"
    if data["type"] == "url_verification" and not isinstance(data.get("challenge"), str):
        return "url_verification has no challenge"
    if data["type"] == "event_callback":
        event = data.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return "event_callback has no event with a type"
        if problem := _wrong_types(event, {"user": (str, dict), "channel": str, "ts": str, "thread_ts": str, "text": str,
                                           "reaction": str, "item": dict}, "event."):
            return problem
        if problem := _wrong_types(data, {"team_id": str, "event_id": str, "authorizations": list}, ""):
            return problem
    return None


def _plain(start_response: Callable[..., Any], status: str, text: str) -> Iterable[bytes]:
    data = (text + "\n").encode("utf-8")
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]


def _json(start_response: Callable[..., Any], status: str, payload: dict[str, Any]) -> Iterable[bytes]:
    data = json.dumps(payload).encode("utf-8")
    start_response(status, [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]
