"""Repository rules: what a file's place in the migration history says, which its SQL alone cannot show.

The engine never fires these (TYPES is empty): the caller that knows the history (the flow, from the
target's ledger) attaches them to a file's report with `attach_out_of_order()`.
"""
from __future__ import annotations

from typing import Iterator

from ..models import Context, Finding, Report
from ..state import State, Stmt
from . import Hit, rule
from .attached import acceptances, is_unmatched_note, with_findings

R = rule("repository")
RULES = (
    R(code="MG931", name="out-of-order-migration", severity="medium",
      summary="A pending migration sorts before one the target has already applied (non-linear history).",
      why="The file was written against an older schema, typically on a branch merged after newer migrations were "
          "deployed. Applied now, it runs after changes it never saw (a column it alters may have been renamed "
          "since); tools that apply strictly in order skip or refuse it, so environments drift apart.",
      fix="Rebase it: rename the file (the Prisma folder) so its version sorts after the newest applied one, e.g.\n"
          "20240215000000_add_users -> 20240305000000_add_users\n"
          "and check it against the current schema. If it is independent of the newer migrations, say so in the "
          "file:\n-- guardian: accept MG931 because <why the order does not matter>",
      bad="-- the target applied 20240301000000_add_orders; this new file is\n"
          "-- 20240215000000_add_users and sorts before it\nCREATE TABLE users (id bigint);",
      good="-- the target applied 20240301000000_add_orders; this new file is\n"
           "-- 20240305000000_add_users and sorts after it\nCREATE TABLE users (id bigint);", hazards=(69,)),
)

# The rules of this family come from a file's place in the history, never from its SQL: the catalogue
# test only checks that their SQL examples never fire; tests/risk/test_repository_rules.py attaches
# them as the flow does.
REPOSITORY = True

# check() reads nothing: the engine never calls it (no statement type is listed).
STATELESS = True
TYPES: frozenset[str] | None = frozenset()


def check(s: Stmt, st: State) -> Iterator[Hit]:
    return iter(())


def attach_out_of_order(report: Report, sql: str | bytes, newer: tuple[str, ...], context: Context) -> Report:
    """`report` with an MG931 finding: the file sorts before `newer`, migrations the target already applied.

    `-- guardian: accept MG931 because <reason>` anywhere in the file accepts it (and the engine's
    "not a rule that fired on this statement" note about that comment is dropped).

    >>> sql = "CREATE TABLE users (id bigint);"
    >>> attach_out_of_order(analyze(sql), sql, ("20240301000000_add_orders",), Context()).risk
    <Severity.MEDIUM: 'medium'>
    """
    rule = RULES[0]
    if not newer or rule.code in context.disabled or rule.name in context.disabled:
        return report
    accepted = acceptances(sql, rule)
    notes = {d.line for d in accepted}
    findings = [f for f in report.findings if not is_unmatched_note(f, notes, rule)]
    more = f" and {len(newer) - 1} more" if len(newer) > 1 else ""
    finding = Finding(
        code=rule.code, name=rule.name, severity=rule.severity, line=1, column=1, statement=None,
        message=f"The target already applied {newer[-1]}{more}, which sort after this migration: it is out of "
                "order. Rename it so it sorts after them, or confirm it does not depend on them.",
        fix=rule.fix, accepted=bool(accepted), accept_reason=accepted[0].reason if accepted else None)
    findings.insert(0, finding)
    return with_findings(report, findings)
