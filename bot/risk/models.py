"""Frozen values of the risk engine: rules, findings, statements, context and report.

Plain frozen dataclasses rather than pydantic models (STYLE asks for pydantic at module boundaries):
the engine builds tens of thousands of them per big file without validation, and pydantic's import
and class construction alone cost `guardian lint` ~0.25 s of start-up, more than it spends analysing
a typical migration. Values that arrive from users are checked where they arrive (TableStats.from_json).
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
class TableStats(_Value):
    """What the context knows about one existing relation."""

    rows: int | None = None
    bytes: int | None = None
    partitioned: bool = False
    columns: dict[str, str] = field(default_factory=dict)  # column -> type as written, e.g. varchar(50)
    indexes: tuple[tuple[str, ...], ...] = ()  # column lists of existing indexes
    checks: tuple[str, ...] = ()  # columns used by its validated CHECK constraints

    @classmethod
    def from_json(cls, data: Any) -> "TableStats":
        """From user-supplied JSON (`guardian lint --context`), checked: ValueError says what is wrong.

        >>> TableStats.from_json({"rows": 5e7}).rows
        50000000
        """
        if not isinstance(data, dict):
            raise ValueError(f"expected an object like {{\"rows\": 50000000}}, got {data!r}")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown key {sorted(unknown)[0]!r} (rows, bytes, partitioned, columns, indexes, checks)")
        values: dict[str, Any] = {}
        for key in ("rows", "bytes"):
            v = data.get(key)
            if v is not None:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or v != int(v):
                    raise ValueError(f"{key}: expected a whole number >= 0, got {v!r}")
                values[key] = int(v)
        if "partitioned" in data:
            if not isinstance(data["partitioned"], bool):
                raise ValueError(f"partitioned: expected true or false, got {data['partitioned']!r}")
            values["partitioned"] = data["partitioned"]
        cols = data.get("columns", {})
        if not isinstance(cols, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in cols.items()):
            raise ValueError("columns: expected an object of column name -> type, e.g. {\"email\": \"varchar(50)\"}")
        values["columns"] = dict(cols)
        idx = data.get("indexes", [])
        if not isinstance(idx, (list, tuple)) or not all(
                isinstance(i, (list, tuple)) and all(isinstance(c, str) for c in i) for i in idx):
            raise ValueError("indexes: expected a list of column lists, e.g. [[\"email\"], [\"a\", \"b\"]]")
        values["indexes"] = tuple(tuple(i) for i in idx)
        checks = data.get("checks", [])
        if not isinstance(checks, (list, tuple)) or not all(isinstance(c, str) for c in checks):
            raise ValueError("checks: expected a list of the column names CHECK constraints use, e.g. [\"bal\"]")
        values["checks"] = tuple(checks)
        return cls(**values)


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
