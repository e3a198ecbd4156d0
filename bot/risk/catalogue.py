"""The rule catalogue: every rule record, looked up by code or kebab-case name."""
from __future__ import annotations

from .models import Context, Rule, TableStats
from .rules import columns, constraints, data, design, destructive, indexes, meta, tables, transactions

FAMILIES = (meta, indexes, constraints, columns, tables, destructive, transactions, data, design)
RULES: tuple[Rule, ...] = tuple(r for fam in FAMILIES for r in fam.RULES)
BY_CODE: dict[str, Rule] = {r.code: r for r in RULES}
BY_NAME: dict[str, Rule] = {r.name: r for r in RULES}
CHECKS = tuple(fam.check for fam in FAMILIES)
_DISPATCH: dict[str, tuple] = {}
_PLANS: dict[str, tuple] = {}


def checks_for(node_type: str) -> tuple:
    """The family checks that look at this statement type (computed once per type)."""
    found = _DISPATCH.get(node_type)
    if found is None:
        found = _DISPATCH[node_type] = tuple(f.check for f in FAMILIES if f.TYPES is None or node_type in f.TYPES)
    return found


def plan_for(node_type: str) -> tuple[tuple, ...]:
    """(check, stateless) for the families that look at this statement type, in catalogue order."""
    found = _PLANS.get(node_type)
    if found is None:
        found = _PLANS[node_type] = tuple((f.check, getattr(f, "STATELESS", False)) for f in FAMILIES
                                          if f.TYPES is None or node_type in f.TYPES)
    return found


# The database the rule examples (docs and tests) are written against.
EXAMPLE_TABLES = {
    "events": TableStats(rows=2_000_000, partitioned=True),
    "big_events": TableStats(rows=50_000_000, bytes=40 * 2**30),
    "t": TableStats(columns={"name": "varchar(50)"}),
}


def example_context(rule: Rule) -> Context:
    """Context for running a rule's examples: all rules on, the example tables, the rule's PG version."""
    return Context(pg_version=rule.example_pg_version or 16, tables=EXAMPLE_TABLES,
                   enabled=frozenset(BY_CODE))


def lookup(code_or_name: str) -> Rule | None:
    return BY_CODE.get(code_or_name.upper()) or BY_NAME.get(code_or_name.lower())


def covered_hazards() -> set[int]:
    return {h for r in RULES for h in r.hazards}
