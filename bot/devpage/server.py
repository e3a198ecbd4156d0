"""The dev page's HTTP server: the Slack-like channel page (static files) and its JSON routes under /dev/.

Usage::

    page = DevPage(standin, sender, channel="C0MIGRATIONS", channel_name="migrations", users=users).start()
    print(page.url)            # open it in a browser
    page.stop()

Routes: ``GET /`` the page; ``GET /static/<file>``; ``GET /dev/config``; ``GET /dev/state?user=U``;
``POST /dev/command``, ``/dev/message`` (``thread_ts`` for a thread reply), ``/dev/react``, ``/dev/action``, ``/dev/view/submit``, ``/dev/view/close``
(JSON bodies with ``user``); ``GET /dev/files/<id>`` a shared file's text; ``GET /healthz``.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from bot.background_http import BackgroundHTTPServer
from bot.demo import DevUser
from bot.devpage.feed import PrivateLog, build_snapshot
from bot.devpage.relay import Relay, RelayError
from bot.slack.sender import SlackSender
from bot.slack.standin import SlackStandIn

logger = logging.getLogger(__name__)

STATIC = {"index.html": "text/html", "app.js": "text/javascript", "blocks.js": "text/javascript",
          "style.css": "text/css"}
MAX_BODY = 2 * 1024 * 1024


class DevPage:
    """Serves the page on ``host:port`` (0: any free port) in a daemon thread."""

    def __init__(self, standin: SlackStandIn, sender: SlackSender, *, channel: str, channel_name: str,
                 users: Sequence[DevUser], host: str = "127.0.0.1", port: int = 0, title: str = "Guardian dev") -> None:
        self.standin, self.host, self.port, self.title = standin, host, port, title
        self.channel, self.channel_name = channel, channel_name
        self.users = list(users)
        self.log = PrivateLog()
        self.relay = Relay(standin, sender, self.log, channel=channel, channel_name=channel_name,
                           users={u.id: u.name for u in self.users})
        self._http: BackgroundHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> "DevPage":
        handler = type("DevPageHandler", (_Handler,), {"page": self})
        self._http = BackgroundHTTPServer(self.host, self.port, handler, name="devpage", poll_interval=0.1)
        self.port = self._http.start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.stop()

    def config(self) -> dict[str, Any]:
        return {"title": self.title, "channel": {"id": self.channel, "name": self.channel_name},
                "users": [u.to_json() for u in self.users], "bot": {"id": self.standin.workspace.bot_user_id,
                                                                     "name": "Migration Guardian"}}

    def state(self, user: str) -> dict[str, Any]:
        return build_snapshot(self.standin, self.log, channel=self.channel, user=user)

    def post(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        user = str(body.get("user") or "")
        if route == "command":
            return self.relay.command(user, str(body.get("text") or ""))
        if route == "message":
            return self.relay.message(user, str(body.get("text") or ""), body.get("thread_ts") or None)
        if route == "react":
            return self.relay.react(user, str(body.get("ts") or ""), str(body.get("name") or "pushpin"))
        if route == "action":
            return self.relay.click(user, body)
        if route == "view/submit":
            return self.relay.submit_view(user, str(body.get("view_id") or ""), body.get("values") or {})
        if route == "view/close":
            return self.relay.close_view(user, str(body.get("view_id") or ""))
        raise KeyError(route)


class _Handler(BaseHTTPRequestHandler):
    page: DevPage
    protocol_version = "HTTP/1.1"
    server_version = "GuardianDevPage/1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("dev page %s", format % args)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        query = dict(parse_qsl(parts.query))
        if path in ("/", "/index.html"):
            self._static("index.html")
        elif path.startswith("/static/") and path[len("/static/"):] in STATIC:
            self._static(path[len("/static/"):])
        elif path == "/healthz":
            self._json(200, {"ok": True})
        elif path == "/dev/config":
            self._json(200, self.page.config())
        elif path == "/dev/state":
            self._json(200, self.page.state(query.get("user", "")))
        elif path.startswith("/dev/files/"):
            content = self.page.standin.file_content(path[len("/dev/files/"):])
            if content is None:
                self._json(404, {"ok": False, "error": "file_not_found"})
            else:
                self._send(200, "text/plain; charset=utf-8", content)
        else:
            self._json(404, {"ok": False, "error": "not_found"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        if not path.startswith("/dev/") or length > MAX_BODY:
            self._json(404 if length <= MAX_BODY else 413, {"ok": False, "error": "not_found"})
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            self._json(200, self.page.post(path[len("/dev/"):], body))
        except KeyError:
            self._json(404, {"ok": False, "error": "not_found"})
        except (ValueError, RelayError) as exc:
            self._json(400, {"ok": False, "error": str(exc)})
        except OSError as exc:  # the bot is not answering: say so on the page
            logger.warning("dev page: the bot did not answer (%s)", type(exc).__name__)
            self._json(502, {"ok": False, "error": f"the bot did not answer ({type(exc).__name__})"})

    def _static(self, name: str) -> None:
        data = resources.files("bot.devpage").joinpath("static", name).read_bytes()
        self._send(200, f"{STATIC[name]}; charset=utf-8", data)

    def _json(self, status: int, payload: Any) -> None:
        self._send(status, "application/json; charset=utf-8", json.dumps(payload).encode("utf-8"))

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)
