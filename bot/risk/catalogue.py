"""The rule catalogue: every rule record, looked up by code or kebab-case name."""
from __future__ import annotations

from .models import Column, Context, Index, Rule, TableStats
from .rules import (columns, constraints, data, design, destructive, indexes, layout, meta, naming, rechecks,
                    repository, tables, trace, transactions)

FAMILIES = (meta, indexes, constraints, columns, tables, destructive, transactions, data, design, rechecks, layout,
            naming, repository, trace)
RULES: tuple[Rule, ...] = tuple(r for fam in FAMILIES for r in fam.RULES)
BY_CODE: dict[str, Rule] = {r.code: r for r in RULES}
BY_NAME: dict[str, Rule] = {r.name: r for r in RULES}
_PLANS: dict[tuple, tuple] = {}


def plan_for(node_type: str, disabled: frozenset[str] = frozenset(), enabled: frozenset[str] = frozenset()
             ) -> tuple[tuple, ...]:
    """(check, stateless) for the families that look at this statement type, in catalogue order.
    A stateless family none of whose rules is on (given the context's disabled and enabled sets, see
    rule_on) is left out: it could only produce findings that would be dropped."""
    key = (node_type, disabled, enabled)
    found = _PLANS.get(key)
    if found is None:
        if len(_PLANS) > 10_000:
            _PLANS.clear()
        found = _PLANS[key] = tuple(
            (f.check, stateless) for f in FAMILIES
            if (f.TYPES is None or node_type in f.TYPES)
            and (not (stateless := getattr(f, "STATELESS", False))
                 or any(rule_on(r, disabled, enabled) for r in f.RULES)))
    return found


def rule_on(rule: Rule, disabled: frozenset[str], enabled: frozenset[str]) -> bool:
    """Whether a rule reports, given the codes or names switched off and the opt-in ones switched on."""
    if rule.code in disabled or rule.name in disabled:
        return False
    return rule.default_enabled or rule.code in enabled or rule.name in enabled


# The database the rule examples (docs and tests) are written against.
EXAMPLE_TABLES = {
    "events": TableStats(rows=2_000_000, partitioned=True, column_facts={"created_at": Column(not_null=True)},
                         partition_key="RANGE (created_at)", default_partition="events_default"),
    "events_default": TableStats(rows=5_000_000, column_facts={"created_at": Column(not_null=True)},
                                 partition_of="events", partition_bound="DEFAULT"),
    "logs": TableStats(rows=2_000_000, partitioned=True, column_facts={"created_at": Column(not_null=True)},
                       partition_key="RANGE (created_at)"),
    "sales": TableStats(rows=2_000_000, partitioned=True, column_facts={"sold_on": Column(not_null=True)},
                        partition_key="RANGE (sold_on)",
                        index_facts=(Index(name="sales_customer_id_idx", columns=("customer_id",), uses=("customer_id",)),)),
    "sales_2025": TableStats(rows=2_000_000, column_facts={"sold_on": Column(not_null=True)}),
    "daily_totals": TableStats(rows=400, materialized=True, column_facts={"day": Column()}),
    "daily_totals_keyed": TableStats(rows=400, materialized=True, column_facts={"day": Column()},
                                     index_facts=(Index(name="daily_totals_keyed_day", columns=("day",), unique=True),)),
    "members": TableStats(rows=2_000_000, column_facts={
        "id": Column(not_null=True, default="nextval('members_id_seq'::regclass)", default_volatile=True),
        "nickname": Column(default="''::text")},
        index_facts=(Index(name="members_pkey", columns=("id",), unique=True, primary=True),
                     Index(name="members_nickname_idx", columns=("nickname",)))),
    "big_events": TableStats(rows=50_000_000, bytes=40 * 2**30),
    "t": TableStats(columns={"name": "varchar(50)"}),
}


def example_context(rule: Rule) -> Context:
    """Context for running a rule's examples: all rules on, the example tables, the rule's PG version."""
    return Context(pg_version=rule.example_pg_version or 16, tables=EXAMPLE_TABLES,
                   enabled=frozenset(BY_CODE))


def rule_codes(codes_or_names: list[str]) -> list[str]:
    """The codes of these rules, given by code or name (config lists); ValueError names an unknown one.

    >>> rule_codes(["naming-convention", "mg101"])
    ['MG921', 'MG101']
    """
    out = []
    for v in codes_or_names:
        rule = lookup(v)
        if rule is None:
            raise ValueError(f"unknown rule {v!r} (codes and names are listed in docs/rules.md)")
        out.append(rule.code)
    return out


def lookup(code_or_name: str) -> Rule | None:
    return BY_CODE.get(code_or_name.upper()) or BY_NAME.get(code_or_name.lower())


def covered_hazards() -> set[int]:
    return {h for r in RULES for h in r.hazards}
