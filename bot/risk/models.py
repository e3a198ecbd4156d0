"""Frozen values of the risk engine: rules, findings, statements, context and report.

Plain frozen dataclasses rather than pydantic models (STYLE asks for pydantic at module boundaries):
the engine builds tens of thousands of them per big file without validation, and pydantic's import
and class construction alone cost `guardian lint` ~0.25 s of start-up, more than it spends analysing
a typical migration. Values that arrive from users are checked where they arrive (bot/risk/snapshot.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any


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


_frozen = dataclass(frozen=True)


class _Value:
    """JSON round trip for the frozen values (they are stored with a request and shown in previews)."""

    __slots__ = ()

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types: enums as their values, tuples as lists, nested values as dicts."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}


def _jsonable(v: Any) -> Any:
    if isinstance(v, Enum):
        return v.value
    if isinstance(v, _Value):
        return v.to_json()
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, frozenset):
        return sorted(v)
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


@_frozen
class Rule(_Value):
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


@_frozen
class Column(_Value):
    """Catalog facts about one existing column beyond its type (TableStats.columns holds the type)."""

    not_null: bool = False
    default: str | None = None  # the default expression as the catalog prints it
    default_volatile: bool = False  # the default calls a volatile function (nextval, random, clock_timestamp)
    identity: str | None = None  # "always" | "by default" for an identity column
    type_ref: str | None = None  # schema.name of the enum or domain it uses (arrays: of their element)
    views: tuple[str, ...] = ()  # views and materialized views that select it (schema.name)

    @property
    def nextval(self) -> bool:
        return self.default is not None and "nextval(" in self.default


@_frozen
class Index(_Value):
    """One existing index; `columns` lists its key columns with "" for an expression key."""

    name: str
    columns: tuple[str, ...] = ()
    expression: bool = False  # a key is an expression, e.g. lower(email)
    partial: bool = False  # has a WHERE predicate
    uses: tuple[str, ...] = ()  # columns its expressions and predicate read
    unique: bool = False
    primary: bool = False
    valid: bool = True


@_frozen
class Constraint(_Value):
    """One existing constraint: kind is "check", "foreign_key", "primary_key", "unique" or "exclusion"."""

    name: str
    kind: str
    definition: str = ""  # pg_get_constraintdef, e.g. "CHECK ((bal >= 0))"
    columns: tuple[str, ...] = ()
    validated: bool = True
    not_null_column: str | None = None  # the column of a CHECK (col IS NOT NULL)
    references: str | None = None  # schema.name a foreign key points to


@_frozen
class TableStats(_Value):
    """What the context knows about one existing relation (JSON: bot/risk/snapshot.py reads it)."""

    rows: int | None = None
    bytes: int | None = None
    partitioned: bool = False
    columns: dict[str, str] = field(default_factory=dict)  # column -> type as written, e.g. varchar(50)
    indexes: tuple[tuple[str, ...], ...] = ()  # column lists of existing indexes
    checks: tuple[str, ...] = ()  # columns used by its validated CHECK constraints
    materialized: bool = False  # a materialized view
    column_facts: dict[str, Column] = field(default_factory=dict)  # column -> NOT NULL, default, views, ...
    index_facts: tuple[Index, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    partition_of: str | None = None  # schema.name of the partitioned parent
    partition_bound: str | None = None  # e.g. "FOR VALUES FROM (1) TO (10)" or "DEFAULT"
    partition_key: str | None = None  # of a partitioned table, e.g. "RANGE (created_at)"
    default_partition: str | None = None  # of a partitioned table: schema.name of its DEFAULT partition

    @property
    def catalog(self) -> bool:
        """Whether the full catalog facts are known (a snapshot), not only sizes."""
        return bool(self.column_facts)


@_frozen
class TypeFacts(_Value):
    """An enum or a domain of the target."""

    kind: str  # "enum" | "domain"
    values: tuple[str, ...] = ()  # an enum's labels, in order
    base: str | None = None  # a domain's base type
    not_null: bool = False  # a domain declared NOT NULL
    checks: tuple[str, ...] = ()  # a domain's CHECK definitions


@_frozen
class Context(_Value):
    """Optional knowledge about the target: server version, table sizes, function volatility.

    >>> Context(pg_version=14, tables={"users": TableStats(rows=50_000_000)})
    """

    pg_version: int = 16
    pg_minor: int | None = None
    tables: dict[str, TableStats] = field(default_factory=dict)
    functions: dict[str, str] = field(default_factory=dict)  # name -> "immutable"|"stable"|"volatile"
    assume_in_transaction: bool = True  # our runner wraps each file in one transaction
    # The runner sets these before each file (Guardian's apply step does): the file need not.
    runner_lock_timeout: bool = False
    runner_statement_timeout: bool = False
    disabled: frozenset[str] = frozenset()  # rule codes or names switched off
    # Who runs the file: "guardian" (each file in one transaction, CONCURRENTLY statements alone) or
    # "prisma" (the whole file as one multi-statement query: one implicit transaction, its own BEGIN ok)
    runner: str = "guardian"
    enabled: frozenset[str] = frozenset()  # opt-in rules switched on
    types: dict[str, TypeFacts] = field(default_factory=dict)  # enums and domains, keyed as tables are
    timezone: str | None = None  # the runner session's TimeZone setting on the target


@_frozen
class Lock(_Value):
    relation: str
    mode: str


@_frozen
class StatementInfo(_Value):
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


@_frozen
class Finding(_Value):
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


@_frozen
class Report(_Value):
    """The analysis of one SQL file."""

    risk: Severity
    reasons: tuple[str, ...]
    statements: tuple[StatementInfo, ...]
    findings: tuple[Finding, ...]
    pg_version: int = 16

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Report":
        """The inverse of to_json() (a report stored with a request).

        >>> Report.from_json(Report(Severity.LOW, (), (), ()).to_json()).risk
        <Severity.LOW: 'low'>
        """
        statements = tuple(StatementInfo(**{**s, "locks": tuple(Lock(**lk) for lk in s.get("locks", ()))})
                           for s in data.get("statements", ()))
        findings = tuple(Finding(**{**f, "severity": Severity(f["severity"])}) for f in data.get("findings", ()))
        return cls(risk=Severity(data["risk"]), reasons=tuple(data.get("reasons", ())), statements=statements,
                   findings=findings, pg_version=data.get("pg_version", 16))


def build(cls, **values):
    """Construct a frozen model from trusted, complete values without validation (hot path)."""
    return build_from(cls, values)


def build_from(cls, values: dict):
    """build() from a dict of trusted, complete values in field order, which the model then owns."""
    m = object.__new__(cls)
    object.__setattr__(m, "__dict__", values)
    return m
