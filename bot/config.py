"""Settings from the environment and the team's guardian.toml, validated with pydantic.

Usage::

    settings = load_settings()            # env vars: SLACK_*, DATABASE_URL, REDIS_URL, GUARDIAN_CONFIG
    config = load_config(settings.guardian_config)
    staging = config.environment("staging")
    url = staging.database_url()          # read from the variable the file names, never the file
"""
from __future__ import annotations

import os
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import ConfigError

RiskLevel = Literal["low", "medium", "high", "critical"]
DEFAULT_SLACK_API_URL = "https://slack.com/api/"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "min": 60, "h": 3600, "d": 86400}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SLACK_ID = re.compile(r"^[UWS][A-Z0-9_]+$")


def slack_ids(value: list[str]) -> list[str]:
    """``value`` when every entry is a Slack user id (U…, W…) or user-group id (S…), else ValueError naming it."""
    for entry in value:
        if not _SLACK_ID.match(entry):
            raise ValueError(f"expected Slack user ids (U…, W…) or user-group ids (S…), got {entry!r}")
    return value


IncidentAudience = Literal["anyone", "approvers_and_requester", "approvers"]


def parse_duration(text: str) -> float:
    """Seconds in a PostgreSQL-style duration such as ``3s``, ``15min``, ``250ms``, ``2h``, ``7d``."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"expected a duration like '3s', '15min', '250ms', '2h' or '7d', got {text!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class Settings(BaseSettings):
    """Secrets and URLs, from the environment only (DESIGN §7)."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = DEFAULT_SLACK_API_URL
    database_url: SecretStr | None = None
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    guardian_config: Path = Path("guardian.toml")
    guardian_metrics_token: SecretStr | None = None  # when set, GET /metrics wants "Authorization: Bearer <it>"

    def require(self, *names: str) -> None:
        """Raise one clear ConfigError naming every required variable that is unset."""
        missing = [n.upper() for n in names if not _secret_value(getattr(self, n))]
        if missing:
            raise ConfigError(
                f"environment variable {', '.join(missing)} is not set; export it "
                "(see guardian.example.toml and the README) and start again",
                code="missing-env",
            )


def _secret_value(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return "" if value is None else str(value)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProjectConfig(_Strict):
    repo: Path = Path(".")
    layout: Literal["prisma", "supabase", "sql"] = "sql"
    path: str = "migrations"
    branch: str = "main"
    working_tree: bool = False  # read files as they are on disk instead of at a pinned commit
    max_file_bytes: int = Field(default=20 * 1024 * 1024, gt=0)


class SlackConfig(_Strict):
    channel: str | None = None
    incident_channel: str | None = None


class RemindersConfig(_Strict):
    """Nudges for requests waiting for approval: a reminder in the thread (and by DM to the users still
    needed) after ``after`` without a decision, again every ``after`` up to ``max_reminders``; once
    ``escalate_after`` more has passed, the thread mentions ``escalate_to`` (default: the environment's user
    groups). Nothing is sent during ``quiet_hours`` ("22:00-08:00", in ``timezone``); it waits for their end."""

    after: str = "4h"
    max_reminders: int = Field(default=3, ge=0, le=20)
    escalate_after: str = "8h"
    escalate_to: list[str] = Field(default_factory=list)
    dm: bool = True
    quiet_hours: str | None = None
    timezone: str = "UTC"

    @field_validator("after", "escalate_after")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value.strip()

    @field_validator("quiet_hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d", value.strip()):
            raise ValueError('expected "HH:MM-HH:MM", e.g. "22:00-08:00"')
        return value.strip() if value else None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as 'Europe/Berlin'") from None
        return value

    @field_validator("escalate_to")
    @classmethod
    def _slack_ids(cls, value: list[str]) -> list[str]:
        return slack_ids(value)


class MaintenanceWindow(_Strict):
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=lambda: ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    )
    start: str  # "HH:MM" UTC
    end: str  # "HH:MM" UTC

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
            raise ValueError(f"expected a UTC time 'HH:MM', got {value!r}")
        return value


class Approvals(_Strict):
    low: int = Field(default=1, ge=0)
    medium: int = Field(default=1, ge=0)
    high: int = Field(default=2, ge=0)
    critical: int = Field(default=2, ge=0)

    def required(self, risk: str) -> int:
        return int(getattr(self, risk))


class RlsProbe(_Strict):
    """A row-level-security check run before and after a migration: what ``role`` with these JWT claims sees."""

    name: str
    role: str
    claims: dict[str, Any] | str = Field(default_factory=dict)  # request.jwt.claims (table or JSON text)
    query: str
    expect_rows: int | None = None  # when set, verify fails unless the query returns this many rows


_GLOB = re.compile(r"^[A-Za-z0-9_*?\[\]!-]+$")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


class FleetConfig(_Strict):
    """``[environments.<name>.fleet]``: many targets under one approval (schema- or database-per-tenant), rolled out
    as a canary, then waves; see the README's configuration section.

    >>> FleetConfig(schemas="tenant_*", wave="10%").wave_size(500)
    50
    """

    schemas: str | None = None          # schema-per-tenant: a glob over the schemas of the environment's database
    query: str | None = None            # database-per-tenant: rows (name, url_env) from the environment's database
    url_envs: list[str] = Field(default_factory=list)  # database-per-tenant: a fixed list of URL variables
    canary: int = Field(default=1, ge=0)
    wave: int | str = 25                # targets per wave after the canary, or a share of them ("10%")
    parallel: int = Field(default=8, ge=1)
    per_server: int = Field(default=4, ge=1)
    halt_after_failures: int = Field(default=1, ge=1)
    health_query: str | None = None     # one boolean, true = healthy; run between waves on the targets done so far
    pause: str = "30s"

    @model_validator(mode="after")
    def _one_source(self) -> "FleetConfig":
        given = [k for k in ("schemas", "query", "url_envs") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("name the targets one way: schemas = \"tenant_*\" (schema-per-tenant), query = "
                             "\"SELECT name, url_env FROM …\" or url_envs = [\"SHARD_1_URL\", …] (database-per-tenant); "
                             + (f"got {' and '.join(given)}" if given else "got none"))
        return self

    @field_validator("schemas")
    @classmethod
    def _glob(cls, value: str | None) -> str | None:
        if value is not None and not _GLOB.match(value):
            raise ValueError(f"expected a schema glob such as 'tenant_*' (letters, digits, _, -, *, ?, [..]), got {value!r}")
        return value

    @field_validator("url_envs")
    @classmethod
    def _env_names(cls, value: list[str]) -> list[str]:
        for i, name in enumerate(value, 1):
            if not _ENV_NAME.match(name):  # never echoed: it may be a URL with its password
                raise ValueError(f"entry {i} is not a variable name: expected NAMES of environment variables holding "
                                 "the URLs (e.g. 'SHARD_1_URL'), never the URLs themselves")
        if len(set(value)) != len(value):
            raise ValueError("url_envs lists a variable twice")
        return value

    @field_validator("wave")
    @classmethod
    def _wave(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if value < 1:
                raise ValueError(f"expected at least 1 target per wave, got {value}")
            return value
        match = _PERCENT.match(value)
        if not match or not 0 < float(match.group(1)) <= 100:
            raise ValueError(f"expected a count (25) or a share of the targets (\"10%\", up to 100%), got {value!r}")
        return value.strip()

    @field_validator("pause")
    @classmethod
    def _pause(cls, value: str) -> str:
        parse_duration(value)
        return value.strip()

    @property
    def pause_s(self) -> float:
        return parse_duration(self.pause)

    def wave_size(self, total: int) -> int:
        """Targets per wave for a rollout of ``total`` targets after the canary (at least 1)."""
        if isinstance(self.wave, int):
            return self.wave
        share = float(_PERCENT.match(self.wave).group(1)) / 100
        return max(1, int(-(-total * share // 1)))


class RehearsalCopyConfig(_Strict):
    """``[environments.<name>.rehearsal]``: rehearse each request on a fresh copy of the target, dropped afterwards.

    ``copy`` is how the copy is made: ``template`` (CREATE DATABASE … TEMPLATE the target; PostgreSQL refuses it
    while other sessions are connected), ``backup`` (pg_restore of the latest verified full backup, ``jobs`` in
    parallel) or ``command`` (a shell command that prints the copy's URL, e.g. a Neon branch or an Aurora clone,
    and ``drop_command`` to remove it; both see GUARDIAN_COPY_NAME and GUARDIAN_REQUEST_ID). A copy whose data is
    older than ``max_age`` is flagged as stale.
    """

    kind: Literal["template", "backup", "command"] = Field(alias="copy")  # the TOML key is `copy`
    command: str | None = None
    drop_command: str | None = None
    max_age: str = "24h"
    jobs: int = Field(default=4, ge=1, le=64)

    @field_validator("max_age")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value.strip()

    @model_validator(mode="after")
    def _commands(self) -> "RehearsalCopyConfig":
        if self.kind == "command" and not (self.command and self.drop_command):
            raise ValueError('copy = "command" needs both command (prints the copy\'s URL) and drop_command')
        if self.kind != "command" and (self.command or self.drop_command):
            raise ValueError('command and drop_command apply only to copy = "command"')
        return self


class EnvironmentConfig(_Strict):
    name: str = ""
    database_url_env: str
    approvers: list[str] = Field(default_factory=list)
    approvals: Approvals = Approvals()
    requires: list[str] = Field(default_factory=list)
    lock_timeout: str = "3s"
    statement_timeout: str = "15min"
    production: bool = False
    color: str | None = None
    allow_adhoc_sql: bool = False
    approval_expiry: str = "24h"
    maintenance_windows: list[MaintenanceWindow] = Field(default_factory=list)
    rehearsal_database_url_env: str | None = None
    allow_rehearsal: bool = False  # rehearse directly on this environment (refused for production unless true)
    rehearsal: RehearsalCopyConfig | None = None  # rehearse each request on a fresh copy (bot/pg/copy.py)
    apply_retries: int = Field(default=3, ge=0, le=20)
    # approvals a rollback (the down SQL of a failed request, started from its incident) needs: mitigation is
    # urgent, so one approver other than the person who started it, unless raised here
    rollback_approvals: int = Field(default=1, ge=1)
    rls_probes: list["RlsProbe"] = Field(default_factory=list)
    # who may add timeline notes to this environment's incidents (thread replies, 📌, /migrate note); always
    # attributed. "anyone" in the channel, or only the approvers (with or without the request's requester)
    incident_notes: IncidentAudience = "anyone"
    # who may publish an incident's post-mortem and open an incident on a request that succeeded
    incident_managers: Literal["approvers_and_requester", "approvers"] = "approvers_and_requester"
    # user and user-group ids who may also do both (e.g. the on-call group), without being approvers
    incident_responders: list[str] = Field(default_factory=list)
    fleet: FleetConfig | None = None  # many targets under one approval (bot/fleet.py)

    @field_validator("incident_responders")
    @classmethod
    def _slack_ids(cls, value: list[str]) -> list[str]:
        return slack_ids(value)

    @field_validator("database_url_env", "rehearsal_database_url_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(
                "expected the NAME of an environment variable holding the URL (e.g. "
                "'STAGING_DATABASE_URL'), never the URL itself"
            )
        return value

    @field_validator("lock_timeout", "statement_timeout", "approval_expiry")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value.strip()

    def database_url(self) -> SecretStr:
        """The target's URL from the environment variable this environment names."""
        value = os.environ.get(self.database_url_env, "")
        if not value:
            raise ConfigError(
                f"environment {self.name!r}: variable {self.database_url_env} is not set; export "
                "the target database URL in it",
                code="missing-env",
            )
        return SecretStr(prisma_schema_url(value))


def prisma_schema_url(url: str) -> str:
    """A Prisma URL's `?schema=NAME` made libpq's: libpq refuses the unknown `schema` parameter, and Prisma uses it
    to set search_path to that schema, where `_prisma_migrations` and the migrations' unqualified objects then live
    (schema-per-tenant). It becomes `options=-c search_path="NAME"` (added to any options already there), so every
    connection and tool (psycopg, pg_dump, pg_restore) lands in that schema. Other URLs come back unchanged.

    >>> prisma_schema_url("postgresql://u@h/db?schema=tenant_1&sslmode=require")
    'postgresql://u@h/db?sslmode=require&options=-c%20search_path%3D%22tenant_1%22'
    """
    if not url.startswith(("postgresql://", "postgres://")) or "?" not in url:
        return url
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = [v for k, v in query if k == "schema"]
    if not schema:
        return url
    rest = [(k, v) for k, v in query if k not in ("schema", "options")]
    ident = '"' + schema[-1].replace('"', '""') + '"'
    setting = "-c search_path=" + ident.replace("\\", "\\\\").replace(" ", "\\ ")
    options = " ".join([v for k, v in query if k == "options"] + [setting])
    return urlunsplit(parts._replace(query=urlencode(rest + [("options", options)], quote_via=quote)))


class BackupConfig(_Strict):
    dir: Path = Path(".guardian/backups")
    retention_days: int = Field(default=30, ge=1)
    mode: Literal["full", "touched", "schema"] = "full"


class LintConfig(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    disabled: list[str] = Field(default_factory=list)
    enabled: list[str] = Field(default_factory=list)  # opt-in rules, for `guardian lint` and the previews
    pg_version: int = 16
    fail_on: RiskLevel = "high"

    @field_validator("disabled", "enabled")
    @classmethod
    def _known_rules(cls, value: list[str]) -> list[str]:
        """Rule codes or names as the risk engine spells them (MG921, naming-convention), kept as codes."""
        from bot.risk import rule_codes

        return rule_codes(value)


class AnalysisConfig(_Strict):
    """What the risk analysis of one request may spend (bot/analysis_budget.py); past it, a file is reported
    as MG006 too-complex-to-analyse (critical) instead of holding up the worker."""

    time_budget: str = "30s"  # wall-clock and CPU time for all of a request's files
    memory_budget_mb: int = Field(default=1024, ge=128)  # address space of the analysing process

    @field_validator("time_budget")
    @classmethod
    def _positive_duration(cls, value: str) -> str:
        if parse_duration(value) <= 0:
            raise ValueError(f"expected a positive duration like '30s' or '2min', got {value!r}")
        return value.strip()

    @property
    def seconds(self) -> float:
        return parse_duration(self.time_budget)

    @property
    def memory_mb(self) -> int:
        return self.memory_budget_mb


class WebhookConfig(_Strict):
    """An outbound JSON webhook: every event whose kind starts with one of ``events``, signed with a shared secret."""

    name: str
    url: str
    secret_env: str  # the variable holding the shared secret, never the secret
    events: list[str] = Field(default_factory=lambda: ["incident.", "request.failed", "request.succeeded"])
    timeout_s: float = Field(default=5.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not re.match(r"^https?://", value):
            raise ValueError("expected an http(s):// URL")
        return value

    @field_validator("secret_env")
    @classmethod
    def _secret_name(cls, value: str) -> str:
        if not _ENV_NAME.match(value):
            raise ValueError("expected the NAME of an environment variable holding the secret")
        return value

    def secret(self) -> str:
        value = os.environ.get(self.secret_env, "")
        if not value:
            raise ConfigError(f"webhook {self.name!r}: variable {self.secret_env} is not set", code="missing-env")
        return value

    def wants(self, kind: str) -> bool:
        return any(kind == e or (e.endswith(".") and kind.startswith(e)) or kind.startswith(e + ".")
                   for e in self.events)


class GuardianConfig(_Strict):
    source: Path | None = None
    project: ProjectConfig = ProjectConfig()
    slack: SlackConfig = SlackConfig()
    environments: dict[str, EnvironmentConfig] = Field(default_factory=dict)
    backup: BackupConfig = BackupConfig()
    lint: LintConfig = LintConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    reminders: RemindersConfig = RemindersConfig()

    @model_validator(mode="before")
    @classmethod
    def _name_environments(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("environments"), dict):
            data = dict(data)
            data["environments"] = {
                name: ({**env, "name": name} if isinstance(env, dict) else env)
                for name, env in data["environments"].items()
            }
        return data

    @model_validator(mode="after")
    def _requires_known(self) -> "GuardianConfig":
        for name, env in self.environments.items():
            for dep in env.requires:
                if dep not in self.environments:
                    raise ValueError(
                        f"environments.{name}.requires names {dep!r}, which is not a configured environment"
                    )
            if env.fleet is not None and env.fleet.schemas and self.project.layout != "prisma":
                raise ValueError(
                    f"environments.{name}.fleet.schemas needs a ledger in every tenant schema, which only the prisma "
                    f"layout keeps (_prisma_migrations, in the search_path); the {self.project.layout} layout's "
                    "ledger is one per database: use query or url_envs (database-per-tenant) instead")
        return self

    def environment(self, name: str) -> EnvironmentConfig:
        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(sorted(self.environments)) or "none configured"
            raise ConfigError(
                f"unknown environment {name!r}; known: {known}", code="unknown-environment"
            ) from None


def load_settings() -> Settings:
    """Settings from the environment; a bad value becomes one ConfigError line."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(_one_line("environment", exc)) from None


def load_config(path: Path | str | None = None, *, required: bool = False) -> GuardianConfig:
    """Parse and validate guardian.toml. A missing optional file gives the defaults."""
    path = Path(path if path is not None else os.environ.get("GUARDIAN_CONFIG", "guardian.toml"))
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if required:
            raise ConfigError(
                f"{path}: file not found; copy guardian.example.toml there or set GUARDIAN_CONFIG",
                code="config-missing",
            ) from None
        return GuardianConfig(source=None)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    try:
        return GuardianConfig.model_validate({**data, "source": path})
    except ValidationError as exc:
        raise ConfigError(_one_line(str(path), exc)) from None


def _one_line(where: str, exc: ValidationError) -> str:
    """The first validation error as 'where: key.path: what is expected'."""
    err = exc.errors()[0]
    key = ".".join(str(part) for part in err.get("loc", ()) if part != "__root__")
    msg = err.get("msg", "invalid value")
    msg = msg.removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        msg = "unknown key (check its spelling against guardian.example.toml)"
    more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{where}: {key or '(top level)'}: {msg}{more}"
