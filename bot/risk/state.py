"""What the engine remembers while walking one file: new objects, transactions, settings, locks."""
from __future__ import annotations

from dataclasses import dataclass, field

from . import catalog
from .effect import Effect
from .models import LOCK_RANK, Context, TableStats, TypeFacts
from .parse import RawStatement


class Stmt:
    """A parsed statement with its effect, as the rules see it (`type` and `node` are the raw
    statement's, copied because every rule reads them)."""

    __slots__ = ("raw", "fx", "in_tx", "explicit_tx", "type", "node")

    def __init__(self, raw: RawStatement, fx: Effect, in_tx: bool | None, explicit_tx: bool | None) -> None:
        self.raw, self.fx, self.in_tx, self.explicit_tx = raw, fx, in_tx, explicit_tx
        self.type, self.node = raw.node_type, raw.node


_SHARE = LOCK_RANK["SHARE"]


@dataclass(slots=True)
class State:
    ctx: Context
    created: set[str] = field(default_factory=set)
    partitioned: set[str] = field(default_factory=set)
    coltypes: dict[tuple[str, str], str] = field(default_factory=dict)
    tx_open: bool = False
    explicit: bool = False
    tx_id: int = 0
    lock_timeout: bool = False
    statement_timeout: bool = False
    not_valid: dict[str, tuple[str, int, str | None]] = field(default_factory=dict)  # name -> (table, tx, NOT NULL col)
    not_null_checks: set[tuple[str, str]] = field(default_factory=set)
    not_null_done: set[str] = field(default_factory=set)  # tables with a SET NOT NULL in this file
    checked_tables: set[str] = field(default_factory=set)  # tables with a validated CHECK in this file
    indexes: dict[str, set[tuple[str, ...]]] = field(default_factory=dict)
    alters: dict[str, int] = field(default_factory=dict)
    held: dict[str, tuple[str, int]] = field(default_factory=dict)  # relation -> (mode, line), current tx
    strong_lock_seen: bool = False  # a SHARE-or-stronger lock on an existing relation earlier in the file
    fired: set[str] = field(default_factory=set)  # rule codes hit earlier in this file
    fired_in_tx: set[str] = field(default_factory=set)  # rule codes hit earlier in the current transaction
    nontx_seen: bool = False
    tx_ddl_seen: bool = False
    dropped_pkeys: set[str] = field(default_factory=set)
    begin_line: int = 0
    null_columns: set[tuple[str, str]] = field(default_factory=set)  # added in this file, no default
    validated: set[str] = field(default_factory=set)  # constraints validated in this file
    new_values: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # enum value -> (type, line, tx)
    enum_types: dict[str, tuple[str, ...]] = field(default_factory=dict)  # enums created in this file -> values
    type_renames: dict[str, str] = field(default_factory=dict)  # new name -> old name, types renamed in this file
    dropped_types: set[str] = field(default_factory=set)
    rename_candidates: list[tuple[int, str]] = field(default_factory=list)  # (statement, new name) of type renames
    deleted_from: set[str] = field(default_factory=set)  # tables a DELETE touched earlier in this file
    emptied: set[str] = field(default_factory=set)  # tables TRUNCATEd or DELETEd without WHERE earlier
    batch_lines: tuple[int, ...] = ()  # lines of `-- guardian: batch N` comments (workers/batch.py runs them)
    prev_line: int = 0  # line of the statement before the current one
    runner_closed: bool = False  # a COMMIT ended the runner's transaction (a later BEGIN hands one back)
    nontx: list[tuple[int, int, int, str]] = field(default_factory=list)  # (index, line, column, text)
    # CHECK constraints this file added (rules/rechecks.checks_after, stored by update.py): table -> constraint name -> (columns it
    # uses, validated); None for a constraint the file dropped that it did not add (perhaps one the target has)
    checks: dict[str, dict[str, tuple[tuple[str, ...], bool] | None]] = field(default_factory=dict)
    # Catalog facts about objects this file creates, beside the target's (ctx.tables[...].column_facts etc.):
    index_defs: dict[str, tuple[str, tuple[str, ...], bool]] = field(default_factory=dict)  # index -> (table,
    # columns it reads, rebuilt by any type change of them: an expression or partial index)
    domains: dict[str, bool] = field(default_factory=dict)  # domain created in this file -> has constraints
    not_null_cols: set[tuple[str, str]] = field(default_factory=set)  # (table, column) made NOT NULL in this file
    view_columns: dict[tuple[str, str], str] = field(default_factory=dict)  # (table, column) -> view selecting it
    dropped_views: set[str] = field(default_factory=set)  # views dropped in this file, as written
    dropped_indexes: set[str] = field(default_factory=set)  # indexes dropped in this file (unqualified)

    def existing_locks(self, fx: Effect) -> tuple[bool, tuple[str, str] | None]:
        """Whether the statement locks a relation that existed before this file, and its first
        SHARE-or-stronger such lock as (relation, mode)."""
        existing, strong = False, None
        for r, m in fx.locks.items():
            if r in fx.creates or self.is_new(r):
                continue
            existing = True
            if strong is None and LOCK_RANK[m] >= _SHARE:
                strong = (r, m)
        return existing, strong

    def is_new(self, relation: str | None) -> bool:
        """Created earlier in this file (invisible to other sessions, so lock rules do not apply)."""
        if relation is None:
            return False
        created = self.created
        return relation in created or ("." in relation and relation.rsplit(".", 1)[-1] in created)

    def stats(self, relation: str | None) -> TableStats | None:
        t = self.ctx.tables
        if relation is None or not t:  # no context: the common case for `guardian lint`
            return None
        return t.get(relation) or t.get(relation.rsplit(".", 1)[-1]) or t.get(f"public.{relation}")

    def is_partitioned(self, relation: str) -> bool:
        s = self.stats(relation)
        return relation in self.partitioned or bool(s and s.partitioned)

    def has_index(self, table: str, cols: tuple[str, ...]) -> bool:
        n = len(cols)
        if any(ix[:n] == cols for ix in self.indexes.get(table, ())):
            return True
        s = self.stats(table)
        return bool(s) and any(tuple(ix[:n]) == cols for ix in s.indexes)

    def facts(self, relation: str | None) -> TableStats | None:
        """The target's catalog facts about a table (a snapshot or the live target), None without them."""
        found = catalog.table(self.ctx, relation)
        return found[1] if found else None

    def domain(self, name: str) -> TypeFacts | None:
        """The target's enum or domain of this name (as written: plain or schema.name)."""
        types = self.ctx.types
        return (types.get(name) or types.get(f"public.{name}")) if types else None

    def not_null(self, table: str, col: str) -> bool | None:
        """Whether the column is NOT NULL (or proven so by a validated CHECK), None when unknown."""
        proof = self.ctx.pg_version >= 12  # a validated CHECK (col IS NOT NULL) stands in for the scan
        if (table, col) in self.not_null_cols or (proof and (table, col) in self.not_null_checks):
            return True
        s = self.facts(table)
        if s is None or col not in s.column_facts:
            return None
        return s.column_facts[col].not_null or (proof and any(
            c.not_null_column == col and (c.validated or c.name in self.validated) for c in s.constraints))
