"""The stand-in's HTTP side: routes Web API calls, upload URLs, response_url posts and file downloads to it."""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from bot.slack import standin_rules as rules
from bot.slack.standin_api import ApiError, Workspace, decode_params

logger = logging.getLogger("bot.slack.standin")

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


class StandInOwner(Protocol):
    """What the HTTP side needs of the stand-in (``bot.slack.standin.SlackStandIn``), so this module needs not import it."""

    tokens: set[str]
    workspace: Workspace

    def answer_api(self, method: str, params: dict[str, Any], token: str | None) -> tuple[int, dict[str, Any], int]: ...
    def file_content(self, file_id: str) -> bytes | None: ...
    def record(self, call: "RecordedCall") -> None: ...
    def record_throttled(self, call: "RecordedCall") -> None: ...


def handler_for(standin: StandInOwner) -> type[BaseHTTPRequestHandler]:
    class Handler(_StandInHandler):
        owner = standin

    return Handler


class _StandInHandler(BaseHTTPRequestHandler):
    owner: StandInOwner
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
        code, problems = rules.message_problems(params)  # a response_url message is Block Kit like any other
        if code:
            logger.info("stand-in: response_url %s refused (%s): %s", id, code, "; ".join(problems[:3]))
            self._record(RESPONSE_URL_METHOD, params, None, rules.error_body(code, problems), body)
            self._send_json(400, rules.error_body(code, problems))
            return
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
        try:
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the caller went away (a killed worker): nobody to answer
            logger.debug("stand-in: the client closed the connection before the answer to %s", self.path)
            self.close_connection = True
