"""Input and review rules: syntax errors, encoding, suppression hygiene, opaque code."""
from __future__ import annotations

from typing import Iterator

from ..nodes import NONVOLATILE_FUNCTIONS, func_names
from ..state import State, Stmt
from . import Hit, rule

R = rule("input")
RULES = (
    R(code="MG001", name="syntax-error", severity="critical",
      summary="The SQL does not parse: PostgreSQL would reject the migration.",
      why="A statement PostgreSQL cannot parse aborts the migration at that point; in a transaction everything "
          "before it is rolled back, outside one it is left half applied.",
      fix="Fix the statement at the reported line and column; run it against a scratch database first.",
      bad="ALTER TABLE users ADD COLUMN;",
      good="ALTER TABLE users ADD COLUMN nickname text;", hazards=()),
    R(code="MG002", name="invalid-encoding", severity="high",
      summary="The file is not valid UTF-8.",
      why="Bytes that are not UTF-8 are rejected by a UTF-8 database or stored as garbage; the linter replaced them "
          "to keep going, so string literals may not be what you meant.",
      fix="Re-save the file as UTF-8 (iconv -f latin1 -t utf-8).",
      bad="SELECT 'caf\udce9';",
      good="SELECT 'café';", hazards=()),
    R(code="MG003", name="accept-without-reason", severity="medium",
      summary="A `-- guardian: accept` comment gives no reason, so nothing is accepted.",
      why="Suppressions are audited: a reviewer must be able to see why the risk is acceptable.",
      fix="-- guardian: accept MG101 because the table has 40 rows and is written once a day",
      bad="-- guardian: accept MG101\nCREATE INDEX users_email_idx ON users (email);",
      good="-- guardian: accept MG101 because users has 40 rows\nCREATE INDEX users_email_idx ON users (email);",
      hazards=()),
    R(code="MG004", name="unknown-accept-code", severity="low",
      summary="A `-- guardian: accept` comment names a rule that does not exist or did not fire here.",
      why="A typo or a stale suppression hides nothing today and may hide the wrong thing tomorrow.",
      fix="Use a code or name from docs/rules.md that fires on this statement, or remove the comment.",
      bad="-- guardian: accept MG999 because typo\nSELECT 1;",
      good="SELECT 1;", hazards=()),
    R(code="MG005", name="opaque-code", severity="high",
      summary="DO blocks, procedure calls and dynamic SQL cannot be analysed: risk unknown, a human must review.",
      why="The linter cannot see which tables such code locks, rewrites or deletes; it may be harmless or it may "
          "rewrite every table.",
      fix="Write the statements out as plain SQL, or review the code by hand and accept it with a reason:\n"
          "-- guardian: accept MG005 because <what it does and why that is safe>",
      bad="DO $$ BEGIN EXECUTE 'ALTER TABLE ' || 'users' || ' ADD COLUMN c int'; END $$;",
      good="ALTER TABLE users ADD COLUMN c int;", hazards=(70,)),
    R(code="MG006", name="too-complex-to-analyse", severity="critical",
      summary="A statement, or the whole request, is too complex to analyse: risk unknown, a human must review.",
      why="The statement is nested more deeply than the analyser can follow (hundreds of levels of sub-selects "
          "or operators), or the request's analysis ran out of its time or memory budget. Nothing is known "
          "about what it locks, rewrites or deletes; such SQL is usually generated, or crafted to stall a reviewer.",
      fix="Write the statement flat: move deep sub-selects into a CTE or a temporary table, split long operator "
          "chains, and keep each migration file to the statements it needs. Review it by hand, then accept it:\n"
          "-- guardian: accept MG006 because <what it does and why that is safe>",
      bad="SELECT 1" + "-1" * 520 + ";",
      good="WITH t AS (SELECT 1 AS v) SELECT v - 1 FROM t;", hazards=()),
)

_HARMLESS = NONVOLATILE_FUNCTIONS | {"set_config", "pg_advisory_lock", "pg_advisory_unlock", "pg_advisory_xact_lock",
                                     "pg_try_advisory_lock", "pg_sleep", "version", "count", "max", "min"}


# check() reads neither the state nor the statement's transaction flags, so the engine may run it
# ahead of the in-order pass (in another process for big files).
STATELESS = True

# Statement types this family looks at (None: all).
TYPES: frozenset[str] | None = frozenset({"DoStmt", "CallStmt", "ExecuteStmt", "SelectStmt"})

def check(s: Stmt, st: State) -> Iterator[Hit]:
    t, n = s.type, s.node
    if t == "DoStmt":
        yield Hit("MG005", "DO block: its effects cannot be analysed; risk unknown, needs a human review.")
    elif t in ("CallStmt", "ExecuteStmt"):
        yield Hit("MG005", f"{s.fx.kind} runs code the linter cannot see; risk unknown, needs a human review.")
    elif t == "SelectStmt" and not n.get("fromClause"):
        unknown = [f for f in func_names(n.get("targetList")) if f not in _HARMLESS]
        if unknown:
            yield Hit("MG005", f"SELECT {unknown[0]}(...) runs a function whose effects cannot be analysed.")
