"""How a Guardian process writes its log: text lines (default) or one JSON object per line.

Usage::

    configure("json", verbose=False)     # `guardian --log-format json …`, or GUARDIAN_LOG_FORMAT=json
    log.info("request %s: applied", 12)  # -> {"ts": "…", "level": "INFO", "logger": "…", "message": "request 12: applied",
                                         #     "request_id": 12, "process": 4242, "thread": "MainThread"}

Every record is scrubbed of known secrets when it is made (bot.redaction.install_log_scrubbing); the JSON
formatter scrubs its message and traceback again on the way out, so a record made before the secrets were
registered cannot leak them either.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
from datetime import datetime, timezone

from bot.errors import ConfigError

LOG_FORMAT_ENV = "GUARDIAN_LOG_FORMAT"
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Our log lines name their request as "request 12: …" (STYLE: every line names the request id); RQ's own lines
# name the job, whose id is "guardian-req12-apply-1" (workers/enqueue.py job_id).
_REQUEST_ID = re.compile(r"\brequest #?(\d{1,18})\b|\bguardian-req(\d{1,18})-", re.IGNORECASE)
# LogRecord attributes that are not extra fields a caller passed
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def resolve_format(flag: str | None) -> str:
    """The ``--log-format`` flag, else $GUARDIAN_LOG_FORMAT, else text; a bad variable is a one-line ConfigError."""
    if flag:
        return flag
    raw = os.environ.get(LOG_FORMAT_ENV, "").strip().lower()
    if not raw:
        return "text"
    if raw not in FORMATS:
        raise ConfigError(f"environment variable {LOG_FORMAT_ENV} must be one of {' | '.join(FORMATS)}, got "
                          f"{raw[:40]!r}", code="bad-env")
    return raw


def configure(fmt: str, *, verbose: bool = False) -> None:
    """Root logging to stderr in ``fmt``; the choice is exported so processes this one starts log the same way."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    os.environ[LOG_FORMAT_ENV] = fmt


def request_id_of(record: logging.LogRecord, message: str) -> int | None:
    """``extra={"request_id": …}`` when given, else the request the message names."""
    given = getattr(record, "request_id", None)
    if given is not None:
        try:
            return int(given)
        except (TypeError, ValueError):
            return None
    found = _REQUEST_ID.search(message)
    return int(found.group(1) or found.group(2)) if found else None


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (UTC, ISO 8601), level, logger, message, request_id (when the line names one),
    process, thread, exc_info (the traceback, when there is one) and any ``extra`` fields, all scrubbed of secrets."""

    def format(self, record: logging.LogRecord) -> str:
        from bot.redaction import scrub, scrub_value

        message = scrub(record.getMessage())
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        request_id = request_id_of(record, message)
        if request_id is not None:
            out["request_id"] = request_id
        out["process"] = record.process
        out["thread"] = record.threadName
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in out and not key.startswith("_"):
                out[key] = scrub_value(value if isinstance(value, (str, int, float, bool, type(None), list, dict))
                                       else repr(value))
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc_info"] = scrub(record.exc_text)
        if record.stack_info:
            out["stack_info"] = scrub(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)
