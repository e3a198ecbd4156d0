"""`guardian serve`: the Bolt app behind waitress, on one URL for everything Slack sends, plus /healthz.

Usage::

    server, port = make_server(settings, config, "127.0.0.1", 0)   # bound, not yet serving
    threading.Thread(target=server.run, daemon=True).start()
    ...
    server.close()
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable, Iterable

import waitress
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

    Port 0 picks a free port. Call ``server.run()`` to serve and ``server.close()`` to stop.
    """
    settings.require("slack_signing_secret", "slack_bot_token")
    app = build_app(settings, config, client, verify_token=True)
    try:
        server = waitress.create_server(build_wsgi_app(app), host=host, port=port, ident="migration-guardian")
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc})", code="bind-failed") from None
    return server, int(server.effective_port)


def serve(settings: Settings, config: GuardianConfig, host: str = DEFAULT_HOST, port: int | None = None) -> None:
    """Serve until interrupted. ``port`` None means $PORT (as on PaaS) or 3000."""
    if port is None:
        port = _env_port()
    server, actual = make_server(settings, config, host, port)
    logger.info("guardian serve: listening on http://%s:%s%s (health: %s)", host, actual, EVENTS_PATH, HEALTH_PATH)
    try:
        server.run()
    except KeyboardInterrupt:
        logger.info("guardian serve: interrupted, stopping")
    finally:
        server.close()


def _env_port() -> int:
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
