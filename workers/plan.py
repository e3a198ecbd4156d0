"""How one migration file runs: runs of transactional statements, statements that must run alone, batched DML.

Usage::

    parts = plan_parts(sql, pg_version=15)
    [p.kind for p in parts]       # e.g. ['tx', 'alone', 'tx']  (CREATE INDEX CONCURRENTLY in the middle)

Which statements cannot run in a transaction comes from the risk engine's classifier
(bot.risk.transactional, the reports' ``transactional`` flag; version-aware: ALTER TYPE … ADD VALUE before PG 12).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from bot.errors import GuardianError
from bot.risk import transactional
from bot.risk.parse import Piece, split_statements
from workers.batch import BatchError, batch_directives


@dataclass(frozen=True)
class Part:
    kind: str  # "tx" (runs of transactional statements) | "alone" (autocommit) | "batch" (keyset batches)
    pieces: list[Piece] = field(default_factory=list)
    batch: tuple[int, float] | None = None  # (rows per batch, pause seconds)


@dataclass(frozen=True)
class _BlockPart(Part):
    block: int | None = None  # which BEGIN ... COMMIT block of the file (statements outside have none)


def _transaction_blocks(pieces: list[Piece]) -> dict[int, int]:
    """Statement index -> block number, for the statements between a BEGIN and its COMMIT.

    The file's own BEGIN ... COMMIT (Prisma generates them for enum changes) runs as one transaction part:
    what Prisma does when it sends the file as one query. Anything else (SAVEPOINT, ROLLBACK, a BEGIN
    inside a block, a block never committed) is refused with a clear error."""
    out: dict[int, int] = {}
    block = None
    count = 0
    for p in pieces:
        if p.node_type != "TransactionStmt":
            if block is not None:
                out[p.index] = block
            continue
        word = p.text.strip().split(None, 1)[0].upper().rstrip(";") if p.text.strip() else ""
        if word in ("BEGIN", "START") and block is None:
            count += 1
            block = count
        elif word in ("COMMIT", "END") and block is not None:
            block = None
        else:
            raise GuardianError(f"line {p.line}: {word or 'this transaction statement'} is not supported in a "
                                "migration file (only one BEGIN ... COMMIT block at a time, each committed): "
                                "remove it and plan again", code="explicit-transaction")
    if block is not None:
        raise GuardianError("the file's last BEGIN is never committed: add COMMIT (or remove the BEGIN) and plan "
                            "again", code="explicit-transaction")
    return out


def own_transactions(sql: str) -> bool:
    """The file has its own BEGIN/COMMIT: it must run statement by statement, not as one string."""
    return any(p.node_type == "TransactionStmt" for p in split_statements(sql))


def plan_parts(sql: str, pg_version: int) -> list[Part]:
    """The parts of ``sql`` in order; one "tx" part for an ordinary file (or one that does not parse)."""
    pieces = split_statements(sql)
    if not pieces or any(p.node_type is None for p in pieces):
        return [Part("tx", pieces)] if pieces else []
    blocks = _transaction_blocks(pieces)
    directives = batch_directives(sql)
    batched: dict[int, tuple[int, float]] = {}
    for line, spec in directives.items():
        target = next((p for p in pieces if p.line > line), None)
        if target is None or target.node_type not in ("UpdateStmt", "DeleteStmt"):
            raise BatchError(f"line {line}: `-- guardian: batch` must come right before an UPDATE or DELETE")
        batched[target.index] = spec
    parts: list[Part] = []
    for piece in pieces:
        if piece.node_type == "TransactionStmt":
            continue  # the blocks they open and close are the parts below
        if piece.index in blocks:  # a BEGIN ... COMMIT block: one transaction, as the file's own tool runs it
            if not transactional(piece.node_type, piece.node, pg_version):
                raise GuardianError(f"line {piece.line}: this statement cannot run inside the file's BEGIN ... "
                                    "COMMIT block (it fails with 'cannot run inside a transaction block'); move it "
                                    "to its own migration", code="explicit-transaction")
            block = blocks[piece.index]
            if parts and parts[-1].kind == "tx" and getattr(parts[-1], "block", None) == block:
                parts[-1].pieces.append(piece)
            elif parts and parts[-1].kind == "tx" and getattr(parts[-1], "block", None) is None:
                # statements before BEGIN join its block: the one implicit transaction BEGIN turns explicit
                parts[-1] = _BlockPart("tx", parts[-1].pieces + [piece], block=block)
            else:
                parts.append(_BlockPart("tx", [piece], block=block))
        elif piece.index in batched:
            parts.append(Part("batch", [piece], batched[piece.index]))
        elif not transactional(piece.node_type, piece.node, pg_version):
            parts.append(Part("alone", [piece]))
        elif parts and parts[-1].kind == "tx" and getattr(parts[-1], "block", None) is None:
            parts[-1].pieces.append(piece)
        else:
            parts.append(Part("tx", [piece]))
    return parts
