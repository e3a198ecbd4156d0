"""How one migration file runs: runs of transactional statements, statements that must run alone, batched DML.

Usage::

    parts = plan_parts(sql, pg_version=15)
    [p.kind for p in parts]       # e.g. ['tx', 'alone', 'tx']  (CREATE INDEX CONCURRENTLY in the middle)

Which statements cannot run in a transaction comes from the risk engine's per-statement
``transactional`` flag (bot.risk.analyze, version-aware: ALTER TYPE … ADD VALUE before PG 12);
if its statements do not line up with ours, a small pglast-based classifier decides.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from bot.errors import GuardianError
from bot.sources.statements import Piece, split_statements
from workers.batch import BatchError, batch_directives

log = logging.getLogger(__name__)

_CONCURRENTLY = re.compile(r"\bconcurrently\b", re.IGNORECASE)
# node types that never run inside a transaction block, whatever their options
_NEVER_IN_TX = {"VacuumStmt", "AlterSystemStmt", "CreatedbStmt", "DropdbStmt", "CreateTableSpaceStmt",
                "DropTableSpaceStmt", "CreateSubscriptionStmt", "DropSubscriptionStmt"}


@dataclass(frozen=True)
class Part:
    kind: str  # "tx" (runs of transactional statements) | "alone" (autocommit) | "batch" (keyset batches)
    pieces: list[Piece] = field(default_factory=list)
    batch: tuple[int, float] | None = None  # (rows per batch, pause seconds)


def _fallback_transactional(piece: Piece, pg_version: int) -> bool:
    """Our own classification, used only when the risk engine's statements do not line up with ours."""
    node = piece.node_type or ""
    if node in _NEVER_IN_TX:
        return bool(node == "VacuumStmt" and piece.text.lstrip().lower().startswith("analyze"))
    if node in ("IndexStmt", "ReindexStmt", "DropStmt") and _CONCURRENTLY.search(piece.text):
        return False
    if node == "AlterEnumStmt" and pg_version < 12:
        return False
    return True


def _transactional_flags(sql: str, pieces: list[Piece], pg_version: int, request_id: int | None) -> list[bool]:
    from bot.risk.engine import analyze
    from bot.risk.models import Context

    statements = analyze(sql, Context(pg_version=pg_version)).statements
    if len(statements) == len(pieces):
        return [s.transactional for s in statements]
    log.info("request %s: risk engine saw %s statements, the splitter %s; classifying ourselves", request_id,
             len(statements), len(pieces))
    return [_fallback_transactional(p, pg_version) for p in pieces]


def plan_parts(sql: str, pg_version: int, *, request_id: int | None = None) -> list[Part]:
    """The parts of ``sql`` in order; one "tx" part for an ordinary file (or one that does not parse)."""
    pieces = split_statements(sql)
    if not pieces or any(p.node_type is None for p in pieces):
        return [Part("tx", pieces)] if pieces else []
    if any(p.node_type == "TransactionStmt" for p in pieces):
        raise GuardianError("the file has its own BEGIN/COMMIT/SAVEPOINT; Guardian runs each file in one "
                            "transaction itself: remove them and plan again", code="explicit-transaction")
    directives = batch_directives(sql)
    batched: dict[int, tuple[int, float]] = {}
    for line, spec in directives.items():
        target = next((p for p in pieces if p.line > line), None)
        if target is None or target.node_type not in ("UpdateStmt", "DeleteStmt"):
            raise BatchError(f"line {line}: `-- guardian: batch` must come right before an UPDATE or DELETE")
        batched[target.index] = spec
    flags = _transactional_flags(sql, pieces, pg_version, request_id)
    parts: list[Part] = []
    for piece, transactional in zip(pieces, flags):
        if piece.index in batched:
            parts.append(Part("batch", [piece], batched[piece.index]))
        elif not transactional:
            parts.append(Part("alone", [piece]))
        elif parts and parts[-1].kind == "tx":
            parts[-1].pieces.append(piece)
        else:
            parts.append(Part("tx", [piece]))
    return parts
