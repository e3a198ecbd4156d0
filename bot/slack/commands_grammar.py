"""The `/migrate` grammar (DESIGN §7): text in, one frozen pydantic model per subcommand out, or a usage error.

Usage::

    cmd = parse_command("plan staging 20240101_add_users --ref main")
    assert isinstance(cmd, PlanCommand) and cmd.env == "staging" and cmd.ref == "main"
    parse_command("frobnicate")   # raises CommandUsageError: unknown subcommand 'frobnicate' ...
"""
from __future__ import annotations

import html
import re
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from bot.config import parse_duration
from bot.errors import GuardianError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ID = re.compile(r"^#?([A-Za-z0-9][A-Za-z0-9_-]*)$")
# Slack documents no limit for a command's text; every /migrate subcommand fits in far less (a note is
# the longest), and a signed 10 MB command was stored and posted whole (issue 13).
MAX_COMMAND_CHARS = 4_000
MAX_REF_CHARS = 255
_SHOWN_CHARS = 60  # of a bad value quoted back in an error


class CommandUsageError(GuardianError):
    """The `/migrate` text does not match the grammar; the message ends with the usage line."""

    code = "usage-error"


class SlashCommand(BaseModel):
    """Base of every parsed subcommand."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ClassVar[str]
    usage: ClassVar[str]
    summary: ClassVar[str]


class HelpCommand(SlashCommand):
    name = "help"
    usage = "help"
    summary = "show this list"


class PlanCommand(SlashCommand):
    name = "plan"
    usage = "plan <env> [<migration>…|pending] [--ref <git ref>]"
    summary = "analyse migrations and ask for approval to run them on <env>"
    env: str
    migrations: tuple[str, ...] = ()
    pending: bool = True  # no migration named, or the word `pending`
    ref: str | None = None


class SqlCommand(SlashCommand):
    name = "sql"
    usage = "sql <env>"
    summary = "open a form to paste ad-hoc SQL for <env> (if its policy allows)"
    env: str


class StatusCommand(SlashCommand):
    name = "status"
    usage = "status [<env>]"
    summary = "requests in flight, for every environment or one"
    env: str | None = None


class HistoryCommand(SlashCommand):
    name = "history"
    usage = "history [<env>]"
    summary = "recent requests and what happened to them"
    env: str | None = None


class CancelCommand(SlashCommand):
    name = "cancel"
    usage = "cancel <id>"
    summary = "cancel a request that has not started running"
    request_id: str


class RollbackCommand(SlashCommand):
    name = "rollback"
    usage = "rollback <id>"
    summary = "run a request's down migration (needs approval)"
    request_id: str


class RestoreCommand(SlashCommand):
    name = "restore"
    usage = "restore <id>"
    summary = "restore the backup taken before a request ran (an approver other than its requester types the environment's name)"
    request_id: str


class IncidentCommand(SlashCommand):
    name = "incident"
    usage = "incident <id>"
    summary = "open an incident thread for a request (on one that succeeded: by default its requester or approvers)"
    request_id: str


class NoteCommand(SlashCommand):
    name = "note"
    usage = "note <incident> <text>"
    summary = "add a note, under your name, to an incident's timeline (by default anyone may)"
    incident_id: str
    text: str = Field(min_length=1)


class PostmortemCommand(SlashCommand):
    name = "postmortem"
    usage = "postmortem <incident>"
    summary = "post the post-mortem draft built from an incident's timeline (by default its requester or approvers)"
    incident_id: str


class BackupCommand(SlashCommand):
    name = "backup"
    usage = "backup <env>"
    summary = "take a backup of <env> now"
    env: str


class FreezeCommand(SlashCommand):
    name = "freeze"
    usage = "freeze <env> <duration> <reason>"
    summary = "refuse new runs on <env> for a while (e.g. `2h`, `1d`)"
    env: str
    duration: str
    seconds: float = Field(gt=0)
    reason: str = Field(min_length=1)


class UnfreezeCommand(SlashCommand):
    name = "unfreeze"
    usage = "unfreeze <env>"
    summary = "lift a freeze on <env>"
    env: str


SUBCOMMANDS: tuple[type[SlashCommand], ...] = (
    HelpCommand, PlanCommand, SqlCommand, StatusCommand, HistoryCommand, CancelCommand,
    RollbackCommand, RestoreCommand, IncidentCommand, NoteCommand, PostmortemCommand,
    BackupCommand, FreezeCommand, UnfreezeCommand,
)
_BY_NAME: dict[str, type[SlashCommand]] = {c.name: c for c in SUBCOMMANDS}
GENERAL_USAGE = "/migrate <" + "|".join(c.name for c in SUBCOMMANDS) + "> …"


def usage_line(command: type[SlashCommand]) -> str:
    return f"/migrate {command.usage}"


def parse_command(text: str) -> SlashCommand:
    """Parse the text after `/migrate`; empty text means `help`. Raises CommandUsageError."""
    text = text or ""
    if len(text) > MAX_COMMAND_CHARS:
        raise CommandUsageError(
            f"That command is {len(text):,} characters long; `/migrate` takes at most {MAX_COMMAND_CHARS:,}. "
            "Shorten it (a long note belongs in the incident's thread).", subcommand="too-long")
    if "\x00" in text:
        raise CommandUsageError("The command contains a NUL character; type it again without it.",
                                subcommand="nul")
    text = html.unescape(text).replace("\u00a0", " ").strip()  # Slack escapes &, < and >
    if not text:
        return HelpCommand()
    word, _, rest = text.partition(" ")
    command = _BY_NAME.get(word.lower())
    if command is None:
        raise CommandUsageError(
            f"Unknown subcommand `{_shown(word)}`. Usage: `{GENERAL_USAGE}` — try `/migrate help`.",
            subcommand=word[:_SHOWN_CHARS],
        )
    return _PARSERS[command](command, rest.strip())


def _shown(value: str) -> str:
    """A value quoted back in an error: shortened, and without backticks that would end the quote."""
    value = value.replace("`", "'")
    return value if len(value) <= _SHOWN_CHARS else value[:_SHOWN_CHARS] + "…"


def _fail(command: type[SlashCommand], problem: str) -> CommandUsageError:
    return CommandUsageError(f"{problem}. Usage: `{usage_line(command)}`", subcommand=command.name)


def _name(command: type[SlashCommand], value: str, what: str) -> str:
    if len(value) > MAX_REF_CHARS or not _NAME.match(value):
        raise _fail(command, f"`{_shown(value)}` is not a valid {what}")
    return value


def _id(command: type[SlashCommand], value: str, what: str) -> str:
    match = _ID.match(value)
    if not match:
        raise _fail(command, f"`{_shown(value)}` is not a valid {what} id")
    return match.group(1)


def _ref(command: type[SlashCommand], value: str) -> str:
    """A git branch, tag or commit as git's ref-name rules allow it (git check-ref-format), plus the
    revision suffixes ~N and ^N; it reaches git only as one argument after --end-of-options."""
    problem = None
    if not value or value.startswith("-"):
        problem = "needs a git ref (a branch, tag or commit sha; not starting with `-`)"
    elif len(value) > MAX_REF_CHARS:
        problem = f"is {len(value):,} characters long; a git ref has at most {MAX_REF_CHARS}"
    elif any(ord(c) < 32 or ord(c) == 127 for c in value):
        problem = "contains a control character"
    elif ".." in value or "@{" in value or "//" in value or value.endswith((".", "/", ".lock")) \
            or any(c in value for c in "\\:?*[ "):
        problem = (f"`{_shown(value)}` is not a git ref name: no `..`, `@{{`, `//`, `\\`, `:`, `?`, `*`, `[`, "
                   "no trailing `.`, `/` or `.lock`")
    if problem is not None:
        raise _fail(command, f"`--ref` {problem}")
    return value


def _words(command: type[SlashCommand], rest: str, required: int, optional: int = 0) -> list[str]:
    words = rest.split()
    if len(words) < required:
        raise _fail(command, "Missing arguments")
    if len(words) > required + optional:
        raise _fail(command, f"Unexpected `{_shown(words[required + optional])}`")
    return words


def _parse_no_args(command: type[SlashCommand], rest: str) -> SlashCommand:
    _words(command, rest, 0)
    return command()


def _parse_env(command: type[SlashCommand], rest: str) -> SlashCommand:
    (env,) = _words(command, rest, 1)
    return command(env=_name(command, env, "environment name"))


def _parse_optional_env(command: type[SlashCommand], rest: str) -> SlashCommand:
    words = _words(command, rest, 0, 1)
    return command(env=_name(command, words[0], "environment name") if words else None)


def _parse_request_id(command: type[SlashCommand], rest: str) -> SlashCommand:
    (value,) = _words(command, rest, 1)
    return command(request_id=_id(command, value, "request"))


def _parse_incident_id(command: type[SlashCommand], rest: str) -> SlashCommand:
    (value,) = _words(command, rest, 1)
    return command(incident_id=_id(command, value, "incident"))


def _parse_plan(command: type[SlashCommand], rest: str) -> SlashCommand:
    words = rest.split()
    ref: str | None = None
    names: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--ref" or word.startswith("--ref="):
            if ref is not None:
                raise _fail(command, "`--ref` given twice")
            if word == "--ref":
                if i + 1 >= len(words):
                    raise _fail(command, "`--ref` needs a git ref")
                i += 1
                ref = words[i]
            else:
                ref = word.removeprefix("--ref=")
            _ref(command, ref)
        elif word.startswith("--"):
            raise _fail(command, f"Unknown option `{_shown(word)}`")
        else:
            names.append(word)
        i += 1
    if not names:
        raise _fail(command, "Missing the environment")
    env, migrations = names[0], names[1:]
    _name(command, env, "environment name")
    if "pending" in migrations and migrations != ["pending"]:
        raise _fail(command, "`pending` cannot be combined with migration names")
    for migration in migrations:
        _name(command, migration, "migration name")
    explicit = [] if migrations == ["pending"] else migrations
    return PlanCommand(env=env, migrations=tuple(explicit), pending=not explicit, ref=ref)


def _parse_note(command: type[SlashCommand], rest: str) -> SlashCommand:
    incident, _, text = rest.partition(" ")
    if not incident or not text.strip():
        raise _fail(command, "Missing arguments")
    return NoteCommand(incident_id=_id(command, incident, "incident"), text=text.strip())


def _parse_freeze(command: type[SlashCommand], rest: str) -> SlashCommand:
    parts = rest.split(maxsplit=2)
    if len(parts) < 3:
        raise _fail(command, "Missing arguments (a reason is required)")
    env, duration, reason = parts
    try:
        seconds = parse_duration(duration)
    except ValueError:
        raise _fail(command, f"`{_shown(duration)}` is not a duration like `30min`, `2h` or `1d`") from None
    if seconds <= 0:
        raise _fail(command, "The duration must be positive")
    return FreezeCommand(
        env=_name(command, env, "environment name"), duration=duration, seconds=seconds, reason=reason.strip()
    )


_PARSERS = {
    HelpCommand: _parse_no_args,
    PlanCommand: _parse_plan,
    SqlCommand: _parse_env,
    StatusCommand: _parse_optional_env,
    HistoryCommand: _parse_optional_env,
    CancelCommand: _parse_request_id,
    RollbackCommand: _parse_request_id,
    RestoreCommand: _parse_request_id,
    IncidentCommand: _parse_request_id,
    NoteCommand: _parse_note,
    PostmortemCommand: _parse_incident_id,
    BackupCommand: _parse_env,
    FreezeCommand: _parse_freeze,
    UnfreezeCommand: _parse_env,
}
