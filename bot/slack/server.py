"""`guardian serve`: the Bolt app behind waitress, on one URL for everything Slack sends, plus /healthz.

Usage::

    server, port = make_server(settings, config, "127.0.0.1", 0)   # bound, not yet serving
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    ...
    stop_server(server)          # from any thread; server.run() returns
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable, Iterable

import waitress
from waitress import trigger, wasyncore
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from bot.config import GuardianConfig, Settings
from bot.errors import ConfigError
from bot.slack.app import build_app

logger = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3000

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def build_wsgi_app(app: App) -> WsgiApp:
    """POST /slack/events -> Bolt (commands, interactivity, events); GET /healthz -> {"ok": true}."""
    slack = SlackRequestHandler(app, path=EVENTS_PATH)

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == HEALTH_PATH:
            if method not in ("GET", "HEAD"):
                return _json(start_response, "405 Method Not Allowed", {"ok": False, "error": "method_not_allowed"})
            return _json(start_response, "200 OK", {"ok": True})
        if path == EVENTS_PATH:
            if method != "POST":
                return _json(start_response, "405 Method Not Allowed", {"ok": False, "error": "method_not_allowed"})
            return slack(environ, start_response)
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
    try:
        server = waitress.create_server(build_wsgi_app(app), host=host, port=port, ident="migration-guardian")
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc})", code="bind-failed") from None
    port = getattr(server, "effective_port", None)
    if port is None:  # a host resolving to several addresses gives a MultiSocketServer
        port = server.effective_listen[0][1]
    return server, int(port)


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
        pipe.pull_trigger(close_everything)


def serve(settings: Settings, config: GuardianConfig, host: str = DEFAULT_HOST, port: int | None = None) -> None:
    """Serve until interrupted. ``port`` None means $PORT (as on PaaS) or 3000."""
    server, actual = make_server(settings, config, host, resolve_port(port))
    logger.info("guardian serve: listening on http://%s:%s%s (health: %s)", host, actual, EVENTS_PATH, HEALTH_PATH)
    try:
        server.run()
    except KeyboardInterrupt:
        logger.info("guardian serve: interrupted, stopping")
    finally:
        server.close()


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


def _json(start_response: Callable[..., Any], status: str, payload: dict[str, Any]) -> Iterable[bytes]:
    data = json.dumps(payload).encode("utf-8")
    start_response(status, [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(data)))])
    return [data]
