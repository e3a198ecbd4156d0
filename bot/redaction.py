"""Every configured secret, known by value, and the scrubbing of any text that leaves the process.

Usage::

    redaction.register_configured(settings, config)  # once at start (bot/cli.py): targets, Slack, webhooks
    redaction.install_log_scrubbing()               # every log record made afterwards is scrubbed
    text = redaction.scrub(f"connect failed: {exc}")  # no password, token or URL userinfo left

Secrets are replaced by value (longest first, in one pass), so a password is caught however it was
echoed: percent-encoded or not, in a URL libpq could not parse, in a ``password=`` conninfo string.
Values shorter than MIN_LENGTH are not registered (they would shred ordinary words).
"""
from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    from bot.config import GuardianConfig, Settings

PLACEHOLDER = "[secret]"
MIN_LENGTH = 4

# conninfo ``password=…`` (quoted with \-escapes, or bare) and a URL's ``?password=…`` query parameter
_PASSWORD_PAIR = re.compile(r"""\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|[^\s&#'"]+)""", re.IGNORECASE)
_SPACE = re.compile(r"\s")
_SLACK_SETTINGS = ("slack_bot_token", "slack_signing_secret", "slack_app_token", "guardian_metrics_token")
# Keys whose values are identifiers Slack resolves or the bot reads back (a message ts, a channel, a button's
# value, a preview fingerprint, a modal's state): never free text, and a short secret that happens to occur
# in one must not turn it into another id. scrub_value leaves them as they are when told to keep them.
IDENTIFIER_KEYS = frozenset({
    "token", "channel", "channels", "ts", "thread_ts", "message_ts", "slack_ts", "user", "users", "user_id",
    "team_id", "trigger_id", "view_id", "hash", "external_id", "block_id", "action_id", "callback_id",
    "private_metadata", "value", "file", "file_id", "job_id", "sha256", "sha256s", "git_commit", "shown", "current",
})
_URL_SETTINGS = ("database_url", "redis_url")


def secret_forms(value: str) -> set[str]:
    """What to scrub for one configured value: a token as is; for a database URL or conninfo string, its
    password as written and percent-decoded, plus the whole string when it holds a password.

    >>> sorted(secret_forms("postgresql://app:p%41ss@db/x"))
    ['p%41ss', 'pAss', 'postgresql://app:p%41ss@db/x']
    """
    if not value:
        return set()
    passwords: set[str] = set()
    _, sep, rest = value.partition("://")
    if sep:  # userinfo is what lies before an '@'; libpq reads up to the first, a person may mean the last
        for at in {rest.find("@"), rest.rfind("@")} - {-1}:
            user, colon, password = rest[:at].partition(":")
            if colon:
                passwords.add(password)
    for match in _PASSWORD_PAIR.finditer(value):
        raw = match.group(1)
        passwords.add(re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith("'") else raw)
    if not sep and not passwords:
        forms = {value}  # a token or shared secret
    else:
        forms = {form for p in passwords for form in (p, unquote(p))}
        if any(len(f) >= MIN_LENGTH for f in forms):
            forms.add(value)
    return {f for f in forms if len(f) >= MIN_LENGTH}


class Secrets:
    """An immutable set of secret values; ``scrub`` replaces each one, longest first, in a single pass."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        kept = sorted({v for v in values if v and len(v) >= MIN_LENGTH}, key=lambda v: (-len(v), v))
        self.values: tuple[str, ...] = tuple(kept)

    def __len__(self) -> int:
        return len(self.values)

    def with_values(self, *values: str) -> "Secrets":
        """These secrets plus every form (``secret_forms``) of ``values``."""
        added = {form for value in values for form in secret_forms(value)}
        return self if added <= set(self.values) else Secrets((*self.values, *added))

    def scrub(self, text: str) -> str:
        """``text`` with every known secret and every URL's userinfo password replaced by PLACEHOLDER."""
        present = [v for v in self.values if v in text]  # a substring test per secret is far cheaper than a regex
        if present:
            text = re.sub("|".join(map(re.escape, present)), PLACEHOLDER, text)  # longest first: values are sorted
        return scrub_userinfo(text) if "://" in text else text


def scrub_userinfo(text: str) -> str:
    """Replace the password of every ``scheme://user:password@host``: it runs from the first ':' after '://'
    to the last '@' of that whitespace-delimited token, so a URL libpq rejects is covered (linear time)."""
    out: list[str] = []
    pos, start = 0, text.find("://")
    while start >= 0:
        space = _SPACE.search(text, start)
        end = space.start() if space else len(text)
        at = text.rfind("@", start + 3, end)
        colon = text.find(":", start + 3, at) if at > 0 else -1
        if colon >= 0:
            out += [text[pos:colon + 1], PLACEHOLDER]
            pos = at
        start = text.find("://", end)
    out.append(text[pos:])
    return "".join(out)


# ------------------------------------------------------------------ the process-wide registry
_lock = threading.Lock()
_current = Secrets()


def current() -> Secrets:
    """The secrets this process knows (set at start by register_configured, or by tests with install)."""
    return _current


def install(secrets: Secrets) -> Secrets:
    """Make ``secrets`` the process-wide registry; returns the previous one (tests put it back)."""
    global _current
    with _lock:
        previous, _current = _current, secrets
    return previous


def register(*values: str) -> Secrets:
    """Add ``values`` (tokens, URLs, conninfo strings: each in all its forms) to the process-wide registry."""
    global _current
    with _lock:
        _current = _current.with_values(*values)
        return _current


def configured_values(settings: "Settings", config: "GuardianConfig | None",
                      environ: Mapping[str, str] | None = None) -> list[str]:
    """Every secret the settings and config point at: Slack tokens, the state database and Redis URLs, each
    environment's target and rehearsal URLs (read from the variables the config names), webhook secrets."""
    environ = os.environ if environ is None else environ
    values: list[str] = []
    for name in (*_SLACK_SETTINGS, *_URL_SETTINGS):
        value = getattr(settings, name, None)
        value = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        if value:
            values.append(str(value))
    if config is None:
        return values
    for env in config.environments.values():
        for var in (env.database_url_env, env.rehearsal_database_url_env, *(env.fleet.url_envs if env.fleet else ())):
            if var and environ.get(var):
                values.append(environ[var])
    for hook in config.webhooks:
        if environ.get(hook.secret_env):
            values.append(environ[hook.secret_env])
    return values


def register_configured(settings: "Settings", config: "GuardianConfig | None",
                        environ: Mapping[str, str] | None = None) -> Secrets:
    """Register every configured secret (``configured_values``); returns the registry now in force."""
    return register(*configured_values(settings, config, environ))


def scrub(text: str, *extra: str) -> str:
    """``text`` without any registered secret, any of ``extra`` (in all their forms) or URL userinfo passwords."""
    secrets = _current.with_values(*extra) if extra else _current
    return secrets.scrub(text)


def scrub_value(value: Any, keep: frozenset[str] = frozenset()) -> Any:
    """``value`` with every string inside (dicts' values, lists, tuples, Slack SDK objects) scrubbed, except
    the values of dict keys in ``keep`` (e.g. IDENTIFIER_KEYS), at any depth."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {key: item if key in keep else scrub_value(item, keep) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub_value(item, keep) for item in value)
    if hasattr(value, "to_dict") and callable(value.to_dict):  # slack_sdk blocks, views, attachments
        return scrub_value(value.to_dict(), keep)
    return value


# ------------------------------------------------------------------ logs
_FORMATTER = logging.Formatter()


def scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    """Render and scrub a record's message, traceback and stack in place (handlers then format the clean text)."""
    try:
        message = record.getMessage()
    except (TypeError, ValueError, KeyError):
        return record  # a bad format string: the handler reports it, with the raw text we leave alone
    record.msg, record.args = scrub(message), None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        record.exc_text = scrub(_FORMATTER.formatException(record.exc_info))
    elif record.exc_text:
        record.exc_text = scrub(record.exc_text)
    if record.stack_info:
        record.stack_info = scrub(record.stack_info)
    return record


def install_log_scrubbing() -> None:
    """Scrub every log record when it is made (a record factory, so every handler sees clean text: the
    root's, RQ's own and pytest's alike; a handler filter would miss loggers with handlers of their own)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "scrubs_secrets", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return scrub_record(previous(*args, **kwargs))

    factory.scrubs_secrets = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
