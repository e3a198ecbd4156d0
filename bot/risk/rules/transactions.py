"""Transaction and mechanics rules: timeouts, locks held across statements, nesting, mixed modes."""
from __future__ import annotations

import re
from typing import Iterator

from ..models import LOCK_RANK, Severity
from ..state import State, Stmt
from . import Hit, rule

R = rule("transactions")
RULES = (
    R(code="MG601", name="missing-lock-timeout", severity="medium",
      summary="A statement needing a strong lock runs without SET lock_timeout (the lock-queue pile-up).",
      why="If the statement waits behind one long-running query, every later query on the table queues behind it: "
          "a brief ALTER becomes an outage. Locks are held until the transaction ends.",
      fix="SET lock_timeout = '3s';  -- first statement of the migration\n"
          "-- and retry the migration with backoff when it fails with 55P03 (lock_not_available)",
      bad="ALTER TABLE users ADD COLUMN nickname text;",
      good="SET lock_timeout = '3s';\nALTER TABLE users ADD COLUMN nickname text;", hazards=(59,), size=True),
    R(code="MG602", name="missing-statement-timeout", severity="low",
      summary="A statement that scans or rewrites a table runs without SET statement_timeout.",
      why="A runaway rewrite or scan keeps its locks for as long as it runs; a timeout bounds the damage.",
      fix="SET statement_timeout = '15min';  -- sized for the work; CREATE INDEX CONCURRENTLY may need longer",
      bad="ALTER TABLE t ADD CONSTRAINT t_a_pos CHECK (a > 0);",
      good="SET statement_timeout = '15min';\nSET lock_timeout = '3s';\nALTER TABLE t ADD CONSTRAINT t_a_pos CHECK (a > 0);",
      hazards=(60,)),
    R(code="MG603", name="lock-held-across-statements", severity="medium",
      summary="An ACCESS EXCLUSIVE lock taken earlier in the transaction is held while later statements run.",
      why="Locks are released only at COMMIT: every statement after the one that took ACCESS EXCLUSIVE extends the "
          "time all queries on that table are blocked.",
      fix="Put the statement taking ACCESS EXCLUSIVE last in its transaction, or give it its own migration; run "
          "backfills in their own batched transactions.",
      bad="BEGIN;\nALTER TABLE accounts ADD COLUMN plan text;\nUPDATE invoices SET total = 0 WHERE total IS NULL;\nCOMMIT;",
      good="BEGIN;\nUPDATE invoices SET total = 0 WHERE total IS NULL;\nALTER TABLE accounts ADD COLUMN plan text;\nCOMMIT;",
      hazards=(61,), size=True),
    R(code="MG604", name="non-idempotent-non-transactional", severity="low",
      summary="A statement that runs outside a transaction is not re-runnable (no IF [NOT] EXISTS).",
      why="CREATE/DROP INDEX CONCURRENTLY cannot be rolled back; if the migration fails later, a re-run fails on "
          "this statement. IF NOT EXISTS can also hide an INVALID index left by a failed build: check indisvalid.",
      fix="CREATE INDEX CONCURRENTLY IF NOT EXISTS idx ON t (c);\nDROP INDEX CONCURRENTLY IF EXISTS idx;",
      bad="DROP INDEX CONCURRENTLY users_email_idx;",
      good="DROP INDEX CONCURRENTLY IF EXISTS users_email_idx;", hazards=(65,)),
    R(code="MG605", name="nested-transaction", severity="medium",
      summary="BEGIN inside an open BEGIN block, COMMIT or ROLLBACK with none open, or ending the runner's transaction.",
      why="A BEGIN ... COMMIT block is a transaction of its own (Prisma runs the file as one query, Guardian runs "
          "each block as one part), but a second BEGIN inside it is ignored with a warning and the first COMMIT "
          "ends both; a bare COMMIT commits what precedes it early, so a later failure leaves the file half "
          "applied; a ROLLBACK silently discards work.",
      fix="Keep one BEGIN ... COMMIT block per transaction, or none and let the runner own the transaction.",
      bad="BEGIN;\nBEGIN;\nALTER TABLE t ADD COLUMN c int;\nCOMMIT;",
      good="ALTER TABLE t ADD COLUMN c int;", hazards=(66,)),
    R(code="MG606", name="uncommitted-transaction", severity="high",
      summary="BEGIN without a matching COMMIT: the work is rolled back when the session ends.",
      why="The migration appears to succeed but nothing after BEGIN is kept.",
      fix="End the transaction explicitly: ... COMMIT;",
      bad="BEGIN;\nCREATE TABLE t (id bigint);",
      good="BEGIN;\nCREATE TABLE t (id bigint);\nCOMMIT;", hazards=(67,)),
    R(code="MG607", name="mixed-transaction-modes", severity="medium",
      summary="Transactional statements and statements that cannot run in a transaction share one file.",
      why="The runner must split the file: if the CONCURRENTLY step fails, the earlier part is already committed "
          "and the file is half applied.",
      fix="Put CREATE INDEX CONCURRENTLY (and other non-transactional statements) in their own migration file.",
      bad="CREATE TABLE t2 (id bigint);\nCREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);",
      good="CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);", hazards=(68,)),
    R(code="MG608", name="enum-value-used-in-same-transaction", severity="critical",
      summary="A value added with ALTER TYPE ... ADD VALUE is used before the transaction that added it commits.",
      why="PostgreSQL 12+ lets ADD VALUE run in a transaction, but the new value cannot be used until that "
          "transaction commits: the statement fails with 'unsafe use of new value' (55P04) and the migration aborts. "
          "Prisma runs a multi-statement file as one transaction, so ADD VALUE and an UPDATE using it in one "
          "migration.sql always fail.",
      fix="Add the value in one migration and use it in the next one.",
      bad="ALTER TYPE status ADD VALUE 'archived';\nUPDATE posts SET state = 'archived' WHERE deleted;",
      good="ALTER TYPE status ADD VALUE IF NOT EXISTS 'archived';", hazards=(56,)),
)

_CONTROL = {"TransactionStmt", "VariableSetStmt", "VariableShowStmt"}
_LITERAL = re.compile(r"'((?:[^']|'')*)'")


def _slow(s: Stmt, st: State) -> str | None:
    """What makes this statement slow while an earlier lock is held, or None for an instant one."""
    fx = s.fx
    existing = [r for r in fx.locks if r not in fx.creates and not st.is_new(r)]
    if not existing:
        return None
    target = fx.target if fx.target in existing else None  # the table the statement works on, if not new
    if target and fx.rewrite:
        return f"rewrites {target}"
    if target and fx.scan:
        return f"scans {target}"
    if target and fx.data_changing and s.type in ("UpdateStmt", "DeleteStmt", "InsertStmt", "MergeStmt"):
        return f"changes rows of {target}"
    if not st.lock_timeout:  # with a lock_timeout (the runner's or the file's) a wait is bounded
        for r in existing:
            if r not in st.held and LOCK_RANK[fx.locks[r]] >= _SHARE:
                return f"waits for {fx.locks[r]} on {r}"
    return None


def literal_values(text: str) -> set[str]:
    """The values of the '...' literals in a statement's text."""
    return {q.replace("''", "'") for q in _LITERAL.findall(text)}


def _literals(node) -> set[str]:
    """The string constants of a parse tree (one walk, for a statement whose text is not kept)."""
    out: set[str] = set()
    stack = [node]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            c = x.get("A_Const")
            if isinstance(c, dict) and isinstance(c.get("sval"), dict):
                out.add(c["sval"].get("sval", ""))
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return out


def _uses_value(node, value: str) -> bool:
    stack = [node]
    while stack:
        x = stack.pop()
        if isinstance(x, dict):
            c = x.get("A_Const")
            if isinstance(c, dict) and (c.get("sval") or {}).get("sval") == value:
                return True
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return False
_SHARE = LOCK_RANK["SHARE"]


# Statement types this family looks at (None: all).
TYPES: frozenset[str] | None = None

def check(s: Stmt, st: State) -> Iterator[Hit]:
    """The family's hits on one statement; it only reads the state (the engine updates it, incl. `fired`)."""
    if s.type == "TransactionStmt":
        yield from _transaction_control(s, st)
        return
    if s.type in _CONTROL:
        return
    yield from _timeouts(s, st)
    yield from _held_lock(s, st)
    yield from _enum_value_used(s, st)
    yield from _not_rerunnable(s)
    yield from _mixed_modes(s, st)


def _transaction_control(s: Stmt, st: State) -> Iterator[Hit]:
    """MG605: BEGIN, COMMIT or ROLLBACK that does not do what the file seems to expect."""
    kind = s.node.get("kind", "")
    # A BEGIN ... COMMIT block is a transaction of its own: Prisma sends the file as one query, where BEGIN
    # turns the implicit transaction into this block; Guardian's apply runs each block as one part.
    if kind in ("TRANS_STMT_BEGIN", "TRANS_STMT_START") and st.tx_open and st.explicit:
        yield Hit("MG605", "BEGIN while the transaction opened by an earlier BEGIN is in progress: PostgreSQL "
                  "ignores it with a warning, and the first COMMIT ends both.")
    elif kind in ("TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK") and not st.tx_open:
        yield Hit("MG605", f"{s.fx.kind} with no transaction open.")
    elif kind == "TRANS_STMT_COMMIT" and st.tx_open and not st.explicit:
        yield Hit("MG605", "COMMIT here commits what precedes it on its own: if a later statement fails, the "
                  "file stays half applied.", None, Severity.LOW)
    elif kind == "TRANS_STMT_ROLLBACK" and st.tx_open and not st.explicit:
        yield Hit("MG605", "ROLLBACK discards everything the runner's transaction did before it.")
    elif kind == "TRANS_STMT_ROLLBACK" and st.tx_open:
        yield Hit("MG605", "ROLLBACK discards this BEGIN block: none of its statements take effect.", None,
                  Severity.LOW)


def _timeouts(s: Stmt, st: State) -> Iterator[Hit]:
    """MG601 at the file's first strong lock without lock_timeout; MG602 once, at a long statement without
    statement_timeout."""
    fx = s.fx
    existing, strong = st.existing_locks(fx)
    if strong and not st.lock_timeout and not st.strong_lock_seen:
        rel, mode = strong
        yield Hit("MG601", f"No lock_timeout before {mode} on {rel}: if it waits, every query on {rel} queues "
                  "behind it.", rel)
    if (fx.rewrite or fx.scan) and existing and fx.transactional and not st.statement_timeout \
            and "MG602" not in st.fired and s.type not in ("SelectStmt", "InsertStmt"):
        yield Hit("MG602", f"{fx.kind} may run long and no statement_timeout is set.")


def _held_lock(s: Stmt, st: State) -> Iterator[Hit]:
    """MG603 once per transaction: a slow statement while an earlier ACCESS EXCLUSIVE lock is held."""
    if s.in_tx and st.held and "MG603" not in st.fired_in_tx:
        slow = _slow(s, st)
        if slow:
            rel, (mode, line) = next(iter(st.held.items()))
            yield Hit("MG603", f"This statement {slow} while {mode} on {rel} (taken at line {line}) is still held: "
                      f"every query on {rel} waits until COMMIT.", rel)


def _enum_value_used(s: Stmt, st: State) -> Iterator[Hit]:
    """MG608: an enum value added in this same transaction is used."""
    if not (st.new_values and s.in_tx and s.type != "AlterEnumStmt"):
        return
    n, text = s.node, s.raw.text  # text is empty for a big file's tail (engine.Split): then the tree is searched
    if text:
        quoted = literal_values(text) if "'" in text else ()
    else:
        quoted = s.raw.literals if s.raw.literals is not None else _literals(n)
    for value in [v for v in quoted if v in st.new_values]:
        typ, line, tx = st.new_values[value]
        if tx == st.tx_id and _uses_value(n, value):
            yield Hit("MG608", f"Uses '{value}', added to {typ} at line {line} in this same transaction: fails "
                      "with 'unsafe use of new value' (55P04).")
            return


def _not_rerunnable(s: Stmt) -> Iterator[Hit]:
    """MG604: CREATE/DROP INDEX CONCURRENTLY without IF [NOT] EXISTS."""
    t, n = s.type, s.node
    if s.fx.transactional or not n.get("concurrent"):
        return
    if t == "IndexStmt" and not n.get("if_not_exists"):
        yield Hit("MG604", "CREATE INDEX CONCURRENTLY without IF NOT EXISTS fails on a re-run.")
    elif t == "DropStmt" and not n.get("missing_ok"):
        yield Hit("MG604", "DROP INDEX CONCURRENTLY without IF EXISTS fails on a re-run.")


def _mixed_modes(s: Stmt, st: State) -> Iterator[Hit]:
    """MG607 once: a statement that cannot run in a transaction after transactional DDL, in the runner's
    transaction (a CONCURRENTLY step first leaves nothing half applied)."""
    ctx = st.ctx
    if ctx.assume_in_transaction and not st.explicit and "MG607" not in st.fired and ctx.runner != "prisma" \
            and not s.fx.transactional and st.tx_ddl_seen:
        yield Hit("MG607", "This file mixes statements that need a transaction with ones that cannot run in one.")
