"""Data-changing rules: UPDATE/DELETE without WHERE, unbatched DML on large tables."""
from __future__ import annotations

from typing import Iterator

from ..models import Severity
from ..nodes import walk
from ..state import State, Stmt
from . import Hit, rule

R = rule("data")
LARGE_ROWS = 1_000_000
RULES = (
    R(code="MG701", name="dml-without-where", severity="high",
      summary="UPDATE or DELETE without WHERE changes every row of the table.",
      why="It locks every row, writes the whole table to WAL (replica lag, bloat) and, for DELETE, loses all data; "
          "inside the migration transaction nothing is visible or released until COMMIT.",
      fix="Restrict it and batch it by key range, in its own transactions:\n"
          "UPDATE users SET status = 'active' WHERE id >= $1 AND id < $1 + 10000 AND status IS NULL;",
      bad="UPDATE users SET status = 'active';",
      good="UPDATE users SET status = 'active' WHERE id >= 1 AND id < 10001 AND status IS NULL;", hazards=(64,),
      size=True),
    R(code="MG702", name="unbatched-dml-on-large-table", severity="high",
      summary="A single UPDATE/DELETE on a large table runs as one huge transaction.",
      why="Millions of row locks, WAL and dead tuples in one go: replicas lag, autovacuum falls behind, and "
          "concurrent writers block on the locked rows until COMMIT.",
      fix="Batch by primary-key range with a pause between batches, outside the DDL transaction:\n"
          "UPDATE events SET archived = true WHERE id BETWEEN $1 AND $1 + 9999 AND created_at < '2020-01-01';",
      bad="-- big_events has 50 M rows\nUPDATE big_events SET archived = true WHERE created_at < '2020-01-01';",
      good="-- big_events has 50 M rows\n"
           "UPDATE big_events SET archived = true WHERE id BETWEEN 1 AND 10000 AND created_at < '2020-01-01';",
      hazards=(64,), size=True),
)


def _batched(where: dict) -> bool:
    for kind, body in walk({"w": where}):
        if kind == "A_Expr" and body.get("kind") in ("AEXPR_BETWEEN", "AEXPR_NOT_BETWEEN"):
            return True
        if kind == "SelectStmt" and body.get("limitCount"):
            return True
    ops = [b for k, b in walk({"w": where}) if k == "A_Expr" and b.get("kind") == "AEXPR_OP"]
    names = {o["name"][0]["String"]["sval"] for o in ops if o.get("name")}
    return {"<", ">="} <= names or {"<=", ">"} <= names or {"<", ">"} <= names


# Statement types this family looks at (None: all).
TYPES: frozenset[str] | None = frozenset({"UpdateStmt", "DeleteStmt"})

def _directed(s: Stmt, st: State) -> bool:
    """A `-- guardian: batch N` comment right before the statement."""
    return any(st.prev_line < line < s.raw.line or line == s.raw.line - 1 for line in st.batch_lines)


def _backfill(n: dict, verb: str, where: dict) -> bool:
    """UPDATE ... FROM, a `WHERE col IS NULL` backfill, or a DELETE ... WHERE: the data changes a migration
    typically makes to every row of an existing table."""
    if _targeted(where):
        return False
    if verb == "DELETE":
        return True
    if n.get("fromClause"):
        return True
    return any(k == "NullTest" and b.get("nulltesttype") == "IS_NULL" for k, b in walk({"w": where}))


def _targeted(where: dict) -> bool:
    """WHERE id = <constant> or <column> IN (<constants>): a handful of named rows, nothing to batch."""
    e = where.get("A_Expr")
    if not e:
        return False
    left, right = e.get("lexpr") or {}, e.get("rexpr")
    if e.get("kind") == "AEXPR_IN" and isinstance(right, dict) and "List" in right:
        return all("A_Const" in x for x in right["List"].get("items") or ())
    if e.get("kind") == "AEXPR_OP" and [n.get("String", {}).get("sval") for n in e.get("name") or ()] == ["="]:
        fields = [f.get("String", {}).get("sval") for f in (left.get("ColumnRef") or {}).get("fields") or ()]
        return fields[-1:] == ["id"] and isinstance(right, dict) and "A_Const" in right
    return False


def check(s: Stmt, st: State) -> Iterator[Hit]:
    t, n = s.type, s.node
    if t not in ("UpdateStmt", "DeleteStmt"):
        return
    rel = s.fx.target
    if st.is_new(rel):
        return
    verb = "UPDATE" if t == "UpdateStmt" else "DELETE"
    where = n.get("whereClause")
    if not where:
        sev = Severity.CRITICAL if verb == "DELETE" else None
        yield Hit("MG701", f"{verb} of every row in {rel} (no WHERE).", rel, sev)
        return
    stats = st.stats(rel)
    if stats and (stats.rows or 0) >= LARGE_ROWS and not _batched(where):
        yield Hit("MG702", f"{verb} on {rel} (~{stats.rows:,} rows) in one statement, not batched by key range.", rel)
    elif stats is None and not _batched(where) and not _directed(s, st) and _backfill(n, verb, where):
        yield Hit("MG702", f"Unbatched data change on {rel}, size unknown: one statement and one transaction for "
                  "every matching row. Put `-- guardian: batch 1000` right before it (Guardian runs it in short "
                  "keyset batches), or give the table's size (guardian lint --context).", rel, Severity.MEDIUM)
