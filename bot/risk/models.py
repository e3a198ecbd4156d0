"""Frozen value models of the risk engine: rules, findings, statements, context and report."""
from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field


class Severity(str, Enum):
    """How bad a finding (or a whole file) is; ordered low < medium < high < critical."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def raised(self, steps: int = 1) -> "Severity":
        return _ORDER[min(len(_ORDER) - 1, max(0, self.rank + steps))]


_ORDER = (Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)
_RANK = {s: i for i, s in enumerate(_ORDER)}

# PostgreSQL's table lock modes, weakest first.
LOCK_MODES = (
    "ACCESS SHARE",
    "ROW SHARE",
    "ROW EXCLUSIVE",
    "SHARE UPDATE EXCLUSIVE",
    "SHARE",
    "SHARE ROW EXCLUSIVE",
    "EXCLUSIVE",
    "ACCESS EXCLUSIVE",
)
LOCK_RANK = {m: i for i, m in enumerate(LOCK_MODES)}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Rule(_Frozen):
    """One catalogue record: what is flagged, why, and the safer recipe."""

    code: str
    name: str
    family: str
    severity: Severity
    summary: str
    why: str
    fix: str
    bad: str
    good: str
    hazards: tuple[int, ...] = ()
    size_sensitive: bool = False
    default_enabled: bool = True
    example_pg_version: int | None = None  # server version the examples assume (default 16)


class TableStats(_Frozen):
    """What the context knows about one existing relation."""

    rows: int | None = None
    bytes: int | None = None
    partitioned: bool = False
    columns: dict[str, str] = Field(default_factory=dict)  # column -> type as written, e.g. varchar(50)
    indexes: tuple[tuple[str, ...], ...] = ()  # column lists of existing indexes


class Context(_Frozen):
    """Optional knowledge about the target: server version, table sizes, function volatility.

    >>> Context(pg_version=14, tables={"users": TableStats(rows=50_000_000)})
    """

    pg_version: int = 16
    pg_minor: int | None = None
    tables: dict[str, TableStats] = Field(default_factory=dict)
    functions: dict[str, str] = Field(default_factory=dict)  # name -> "immutable"|"stable"|"volatile"
    assume_in_transaction: bool = True  # our runner wraps each file in one transaction
    # The runner sets these before each file (Guardian's apply step does): the file need not.
    runner_lock_timeout: bool = False
    runner_statement_timeout: bool = False
    disabled: frozenset[str] = frozenset()  # rule codes or names switched off
    enabled: frozenset[str] = frozenset()  # opt-in rules switched on


class Lock(_Frozen):
    relation: str
    mode: str


class StatementInfo(_Frozen):
    """What one statement does to the database."""

    index: int
    line: int
    column: int
    kind: str
    transactional: bool  # may run inside a transaction block
    in_transaction: bool  # runs inside a (explicit or assumed) transaction in this file
    locks: tuple[Lock, ...] = ()
    rewrite: bool = False
    scan: bool = False
    destructive: bool = False
    incompatible: bool = False
    data_changing: bool = False
    excerpt: str = ""


class Finding(_Frozen):
    code: str
    name: str
    severity: Severity
    line: int
    column: int
    statement: int | None  # statement index, None for file-level findings
    message: str
    fix: str
    accepted: bool = False
    accept_reason: str | None = None


class Report(_Frozen):
    """The analysis of one SQL file."""

    risk: Severity
    reasons: tuple[str, ...]
    statements: tuple[StatementInfo, ...]
    findings: tuple[Finding, ...]
    pg_version: int = 16


def build(cls, **values):
    """Construct a frozen model from trusted, complete values without validation (hot path)."""
    return build_from(cls, values)


def build_from(cls, values: dict):
    """build() from a dict of trusted, complete values in field order, which the model then owns."""
    m = object.__new__(cls)
    object.__setattr__(m, "__dict__", values)
    object.__setattr__(m, "__pydantic_fields_set__", set(values))
    object.__setattr__(m, "__pydantic_extra__", None)
    object.__setattr__(m, "__pydantic_private__", None)
    return m
