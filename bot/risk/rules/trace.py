"""Trace rules: what running the migration on a rehearsal database showed, which reading its SQL cannot.

The engine never fires these (TYPES is empty): `guardian plan`, which rehearses the files in a transaction
that is always rolled back (bot/pg/rehearsal.py), attaches them to a file's report with
`attach_observed_rewrites()`.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..models import Context, Finding, Report
from ..sizing import sized
from ..state import State, Stmt
from . import Hit, rule
from .attached import acceptances, is_unmatched_note, with_findings

R = rule("trace")
RULES = (
    R("MG941", "rewrite-observed-under-lock", "high",
      "The rehearsal saw a table rewritten while the statement held ACCESS EXCLUSIVE on it.",
      "Reading the SQL cannot always tell whether a statement rewrites a table: a type change whose old type "
      "it does not know, a default calling a function of unknown volatility, a domain or a trigger doing more "
      "than it says. The rehearsal watched the table's storage (pg_class.relfilenode) change: every row was "
      "copied and the indexes rebuilt while reads and writes of the table waited, for as long as that takes "
      "on the real table.",
      "Avoid the rewrite: add a new column, backfill it in batches, then swap it in:\n"
      "ALTER TABLE items ADD COLUMN qty_text text;\n"
      "UPDATE items SET qty_text = qty::text WHERE id BETWEEN 1 AND 10000;  -- repeat per batch\n"
      "-- then, in a short transaction with lock_timeout set:\n"
      "ALTER TABLE items RENAME COLUMN qty TO qty_old;\n"
      "ALTER TABLE items RENAME COLUMN qty_text TO qty;\n"
      "If the rewrite is acceptable (a small table, a maintenance window), say so in the file:\n"
      "-- guardian: accept MG941 because <why>",
      "-- rehearsed: items (qty integer) is rewritten under ACCESS EXCLUSIVE\n"
      "ALTER TABLE items ALTER COLUMN qty TYPE text;",
      "-- rehearsed: varchar(50) -> text changes no storage\n"
      "ALTER TABLE items ALTER COLUMN name TYPE text;", (62,), size=True),
)

# The rules of this family come from a rehearsal's trace, never from the SQL: the catalogue test only checks
# that their SQL examples never fire; tests/pg/test_pg_rehearsal.py attaches them as `guardian plan` does.
TRACE = True

# check() reads nothing: the engine never calls it (no statement type is listed).
STATELESS = True
TYPES: frozenset[str] | None = frozenset()

_AEL = "ACCESS EXCLUSIVE"


def check(s: Stmt, st: State) -> Iterator[Hit]:
    return iter(())


def attach_observed_rewrites(report: Report, sql: str | bytes, observed: Iterable, context: Context) -> Report:
    """`report` with an MG941 finding for each rehearsed statement that rewrote a table while holding
    ACCESS EXCLUSIVE on it, unless the analysis already said that statement rewrites (its own finding
    then says so, with the fix).

    `observed`: the rehearsal's statements of this file (bot.pg.rehearsal.StatementRehearsal: line,
    rewrites, observed_locks, duration_ms), matched to the report's statements by line, in order.
    `-- guardian: accept MG941 because <reason>` on the statement accepts its finding (and the engine's
    "not a rule that fired on this statement" note about that comment is dropped).
    """
    rule = RULES[0]
    if rule.code in context.disabled or rule.name in context.disabled:
        return report
    by_line: dict[int, list] = {}
    for s in report.statements:
        by_line.setdefault(s.line, []).append(s)
    reasons = {d.line: d.reason for d in acceptances(sql, rule)}
    # where the engine met such a comment: statement index -> the comment's line
    notes = {f.statement: f.line for f in report.findings if is_unmatched_note(f, set(reasons), rule)}
    added: list[Finding] = []
    for seen in observed:
        same_line = by_line.get(seen.line) or []
        statement = same_line.pop(0) if len(same_line) > 1 else (same_line[0] if same_line else None)
        held = {lk.relation for lk in seen.observed_locks if lk.mode == _AEL}
        tables = [t for t in seen.rewrites if t in held]
        if not tables or (statement is not None and statement.rewrite):
            continue
        index = statement.index if statement is not None else None
        severity, note = sized(rule.severity, State(ctx=context).stats(tables[0]))  # as the engine sizes
        where = notes.get(index) if index is not None else None
        added.append(Finding(
            code=rule.code, name=rule.name, severity=severity, line=seen.line,
            column=statement.column if statement is not None else 1, statement=index,
            message=f"The rehearsal rewrote {', '.join(tables)} under ACCESS EXCLUSIVE (in {seen.duration_ms or 0:.0f} ms "
                    f"there); on the real table every read and write waits while all of it is copied{note}.",
            fix=rule.fix, accepted=where is not None, accept_reason=reasons.get(where)))
    if not added:
        return report
    used = {notes[f.statement] for f in added if f.accepted}
    findings = [f for f in report.findings if not is_unmatched_note(f, used, rule)]
    for f in added:
        findings.insert(_position(findings, f.statement), f)
    return with_findings(report, findings)


def _position(findings: list[Finding], index: int | None) -> int:
    """Where a finding about statement `index` goes: after the file-level findings that lead the list and
    the findings of statements up to its own, before those of later statements and the trailing ones."""
    at, leading = 0, True
    for k, f in enumerate(findings):
        if f.statement is None:
            if leading:
                at = k + 1
        else:
            leading = False
            if index is not None and f.statement <= index:
                at = k + 1
    return at
