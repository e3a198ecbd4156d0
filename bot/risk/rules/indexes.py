"""Index rules: non-concurrent builds and drops, CONCURRENTLY in transactions, partitioned indexes."""
from __future__ import annotations

from typing import Iterator

from .. import catalog
from ..models import Severity
from ..nodes import def_names, rv_name, strings
from ..state import State, Stmt
from . import Hit, rule

R = rule("indexes")
RULES = (
    R(code="MG101", name="create-index-non-concurrent", severity="high",
      summary="CREATE INDEX on an existing table without CONCURRENTLY blocks all writes while it builds.",
      why="A plain CREATE INDEX takes a SHARE lock on the table for the whole build: every INSERT, UPDATE and "
          "DELETE waits, and the build time grows with the table.",
      fix="Build it online, outside a transaction, then check it is valid:\n"
          "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx ON t (c);\n"
          "-- if it failed: SELECT indisvalid FROM pg_index WHERE indexrelid = 'idx'::regclass; DROP INDEX CONCURRENTLY idx; and retry",
      bad="CREATE INDEX users_email_idx ON users (email);",
      good="CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);", hazards=(1,), size=True),
    R(code="MG102", name="drop-index-non-concurrent", severity="medium",
      summary="DROP INDEX without CONCURRENTLY takes ACCESS EXCLUSIVE on the table.",
      why="The drop itself is quick, but it waits for every running query on the table and every later query "
          "queues behind it, so a long SELECT turns it into an outage.",
      fix="DROP INDEX CONCURRENTLY IF EXISTS idx;  -- outside a transaction (not possible for indexes backing a constraint)",
      bad="DROP INDEX users_email_idx;",
      good="DROP INDEX CONCURRENTLY IF EXISTS users_email_idx;", hazards=(2,)),
    R(code="MG103", name="concurrently-in-transaction", severity="critical",
      summary="CONCURRENTLY (index build, drop, reindex, detach) inside a transaction block fails at runtime.",
      why="PostgreSQL refuses CREATE/DROP INDEX CONCURRENTLY, REINDEX CONCURRENTLY and other non-transactional "
          "statements inside BEGIN ... COMMIT (error 25001), so the migration aborts.",
      fix="Move the statement to its own migration file that runs without a transaction:\n"
          "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx ON t (c);",
      bad="BEGIN;\nCREATE INDEX CONCURRENTLY users_email_idx ON users (email);\nCOMMIT;",
      good="CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);", hazards=(3,)),
    R(code="MG104", name="reindex-non-concurrent", severity="high",
      summary="REINDEX without CONCURRENTLY blocks writes to the table and reads that use the index.",
      why="REINDEX takes SHARE on the table and ACCESS EXCLUSIVE on each index being rebuilt, for the whole rebuild.",
      fix="REINDEX INDEX CONCURRENTLY idx;  -- PostgreSQL 12+, outside a transaction",
      bad="REINDEX TABLE users;",
      good="REINDEX TABLE CONCURRENTLY users;", hazards=(4,), size=True),
    R(code="MG105", name="index-on-partitioned-table", severity="high",
      summary="An index on a partitioned table cannot be built concurrently and locks every partition.",
      why="CREATE INDEX on the parent builds on all partitions under SHARE locks; CONCURRENTLY is not supported there.",
      fix="CREATE INDEX idx ON ONLY events (ts);            -- invalid parent index, instant\n"
          "CREATE INDEX CONCURRENTLY events_p1_ts ON events_p1 (ts);  -- per partition\n"
          "ALTER INDEX idx ATTACH PARTITION events_p1_ts;   -- the parent becomes valid once all are attached",
      bad="-- events is partitioned\nCREATE INDEX events_ts_idx ON events (ts);",
      good="-- events is partitioned\nCREATE INDEX events_ts_idx ON ONLY events (ts);", hazards=(5,), size=True),
    R(code="MG106", name="concurrent-index-corruption-pg14", severity="critical",
      summary="CREATE INDEX / REINDEX CONCURRENTLY on PostgreSQL 14.0-14.3 can silently corrupt the index.",
      why="A bug in 14.0 to 14.3 could miss rows in indexes built concurrently; queries then return wrong results.",
      fix="Upgrade to 14.4 or later first, then build the index concurrently; REINDEX indexes built on 14.0-14.3.",
      bad="-- on PostgreSQL 14 (minor unknown or < 4)\nCREATE INDEX CONCURRENTLY IF NOT EXISTS t_c_idx ON t (c);",
      good="CREATE TABLE t (c int);\nCREATE INDEX t_c_idx ON t (c);", hazards=(6,), pg=14),
    R(code="MG107", name="unnamed-concurrent-index", severity="low",
      summary="A concurrent index without an explicit name cannot be checked or cleaned up after a failed build.",
      why="A failed CREATE INDEX CONCURRENTLY leaves an INVALID index that still slows writes; with a generated name "
          "a re-run creates a second one instead of finding the first.",
      fix="Name the index so the runbook can check pg_index.indisvalid and DROP INDEX CONCURRENTLY it:\n"
          "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_c_idx ON t (c);",
      bad="CREATE INDEX CONCURRENTLY ON users (email);",
      good="CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);", hazards=(7,)),
    R(code="MG108", name="wide-index", severity="low",
      summary="A non-unique index on more than three columns is rarely worth its write cost.",
      why="Each extra column makes the index larger and every write slower; the planner seldom uses trailing columns.",
      fix="Index the one to three most selective columns: CREATE INDEX CONCURRENTLY t_a_b_idx ON t (a, b);",
      bad="CREATE INDEX CONCURRENTLY IF NOT EXISTS t_abcd_idx ON t (a, b, c, d);",
      good="CREATE INDEX CONCURRENTLY IF NOT EXISTS t_ab_idx ON t (a, b);", hazards=(8,)),
    R(code="MG109", name="unique-index-on-existing-data", severity="medium",
      summary="A UNIQUE index on an existing table fails if duplicates already exist.",
      why="The build aborts on the first duplicate (and a concurrent build leaves an INVALID index behind), "
          "so the migration fails in production even though it passed on a clean database.",
      fix="Check first: SELECT c, count(*) FROM t GROUP BY c HAVING count(*) > 1;\n"
          "then CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_c_key ON t (c);",
      bad="CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_key ON users (email);",
      good="CREATE TABLE users (id bigint, email text);\nCREATE UNIQUE INDEX users_email_key ON users (email);",
      hazards=(81,)),
    R(code="MG110", name="drop-index-backing-constraint", severity="critical",
      summary="DROP INDEX of an index that backs a PRIMARY KEY, UNIQUE or EXCLUDE constraint fails.",
      why="PostgreSQL refuses it (2BP01: constraint ... requires it), CONCURRENTLY or not, so the migration aborts.",
      fix="Drop the constraint instead (it drops its index): ALTER TABLE t DROP CONSTRAINT t_email_key;",
      bad="-- members_pkey backs members' primary key\nDROP INDEX CONCURRENTLY IF EXISTS members_pkey;",
      good="-- members_nickname_idx is a plain index\nDROP INDEX CONCURRENTLY IF EXISTS members_nickname_idx;",
      hazards=(2,)),
)


# Statement types this family looks at (None: all).
TYPES: frozenset[str] | None = frozenset({  # index statements and everything that can be non-transactional
    "IndexStmt", "DropStmt", "ReindexStmt", "VacuumStmt", "ClusterStmt", "CreatedbStmt", "DropdbStmt",
    "CreateTableSpaceStmt", "DropTableSpaceStmt", "AlterSystemStmt", "AlterTableStmt", "AlterEnumStmt"})

def check(s: Stmt, st: State) -> Iterator[Hit]:
    t, n = s.type, s.node
    if t == "IndexStmt":
        yield from _create_index(s, st, n)
    elif t == "DropStmt" and n.get("removeType") == "OBJECT_INDEX":
        for obj in n.get("objects") or ():
            index = ".".join(strings(obj.get("List", {}).get("items")))
            if index and not st.is_new(index):
                yield from _drop_index(st, index, bool(n.get("concurrent")))
    elif t == "ReindexStmt":
        if "concurrently" not in def_names(n.get("params")):
            yield Hit("MG104", f"{s.fx.kind} {s.fx.target or ''} blocks writes for the whole rebuild.".replace("  ", " "),
                      s.fx.target)
        else:
            yield from _pg14(st)
    if not s.fx.transactional and s.explicit_tx:
        yield Hit("MG103", f"{s.fx.kind} cannot run inside the transaction block opened by BEGIN; it fails with 25001.")


def _create_index(s: Stmt, st: State, n: dict) -> Iterator[Hit]:
    table = rv_name(n.get("relation"))
    new = st.is_new(table)
    cols = [p["IndexElem"].get("name") or "expr" for p in n.get("indexParams") or () if "IndexElem" in p]
    only = not n.get("relation", {}).get("inh", False)
    if st.is_partitioned(table):
        if n.get("concurrent"):
            yield Hit("MG105", f"CREATE INDEX CONCURRENTLY on partitioned table {table} fails: PostgreSQL cannot "
                      "build an index on a partitioned table concurrently (up to 17 at least). Build it per "
                      "partition CONCURRENTLY and ATTACH each to an index made ON ONLY the parent.", None,
                      Severity.CRITICAL)
        elif not only:
            yield Hit("MG105", f"Index on partitioned table {table} builds on every partition under SHARE locks.",
                      table)
    elif not n.get("concurrent") and not new:
        hedge = "" if not only or catalog.table(st.ctx, table) else (
            f" If {table} is partitioned, ON ONLY builds nothing (an invalid parent index, instant); that depends "
            f"on the target: {catalog.HOW}.")
        yield Hit("MG101", f"CREATE INDEX on {table} takes SHARE on the table and blocks writes until it is "
                  f"built.{hedge}", table)
    if n.get("concurrent"):
        yield from _pg14(st)
        if not n.get("idxname"):
            yield Hit("MG107", f"Concurrent index on {table} has no explicit name.")
    if len(cols) > 3 and not n.get("unique"):
        yield Hit("MG108", f"Index on {table} has {len(cols)} columns ({', '.join(cols)}).")
    if n.get("unique") and not new and not any((table, c) in st.null_columns for c in cols) \
            and table not in st.deleted_from and "id" not in cols:  # a dedupe DELETE before it; a key column
        yield Hit("MG109", f"UNIQUE index on existing table {table} fails if duplicate ({', '.join(cols)}) exist.", table)


def _drop_index(st: State, index: str, concurrent: bool) -> Iterator[Hit]:
    found = catalog.index_owner(st.ctx, index) if st.ctx.tables else None
    table, facts, ix = found or (None, None, None)
    if ix is not None and (ix.primary or any(c.name == ix.name and c.kind in ("primary_key", "unique", "exclusion")
                                             for c in facts.constraints)):
        yield Hit("MG110", f"{index} backs a constraint of {table}: DROP INDEX fails (2BP01); drop the constraint "
                  "instead.")
    elif not concurrent:
        yield Hit("MG102", f"DROP INDEX {index} takes ACCESS EXCLUSIVE on {table or 'its table'}{_size(st, table)}.",
                  table or index)


def _size(st: State, table: str | None) -> str:
    stats = st.stats(table)
    return f" (~{stats.rows:,} rows)" if stats and stats.rows is not None else ""


def _pg14(st: State) -> Iterator[Hit]:
    ctx = st.ctx
    if ctx.pg_version == 14 and (ctx.pg_minor is None or ctx.pg_minor < 4):
        minor = "an unknown 14.x minor" if ctx.pg_minor is None else f"14.{ctx.pg_minor}"
        sev = Severity.HIGH if ctx.pg_minor is None else None
        yield Hit("MG106", f"Concurrent index builds on {minor} can corrupt the index (fixed in 14.4).", None, sev)
