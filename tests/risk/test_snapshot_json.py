"""The snapshot JSON reader: the full document, the older hand-written context, and clear errors."""
from __future__ import annotations

import pytest

from bot.risk.models import Column, Constraint, Context, Index, TableStats, TypeFacts
from bot.risk.snapshot import context_values, table_stats

DOC = {
    "snapshot": 1, "pg_version": 15, "pg_minor": 4, "timezone": "UTC",
    "tables": {
        "public.members": {
            "visible": True, "rows": 2_000_000, "bytes": 10, "checks": ["bal"], "indexes": [["email"]],
            "columns": {"email": {"type": "character varying(50)", "not_null": True, "views": ["public.v"]},
                        "bal": "numeric(10,2)"},
            "index_facts": [{"name": "m_lower", "columns": [""], "expression": True, "uses": ["email"]}],
            "constraints": [{"name": "m_bal", "kind": "check", "definition": "CHECK ((bal >= 0))",
                             "columns": ["bal"], "validated": False}],
        },
        "other.members": {"rows": 5},
    },
    "types": {"public.mood": {"visible": True, "kind": "enum", "values": ["a", "b"]}},
    "functions": {"f": "volatile"},
}


def test_a_full_snapshot_reads_into_context_values():
    values = context_values(DOC)
    ctx = Context(**values)
    m = ctx.tables["members"]
    assert ctx.tables["public.members"] is m and ctx.tables["other.members"].rows == 5
    assert m.columns == {"email": "character varying(50)", "bal": "numeric(10,2)"}
    assert m.column_facts["email"] == Column(not_null=True, views=("public.v",)) and m.catalog
    assert m.index_facts == (Index(name="m_lower", columns=("",), expression=True, uses=("email",)),)
    assert m.constraints == (Constraint(name="m_bal", kind="check", definition="CHECK ((bal >= 0))",
                                        columns=("bal",), validated=False),)
    assert ctx.types["mood"] == TypeFacts(kind="enum", values=("a", "b")) and ctx.timezone == "UTC"
    assert values["pg_version"] == 15 and ctx.pg_minor == 4 and ctx.functions == {"f": "volatile"}


def test_the_older_context_still_reads_and_knows_no_catalog():
    ctx = Context(**context_values({"tables": {"users": {"rows": 5e7, "columns": {"a": "int"}}}}))
    assert ctx.tables["users"] == TableStats(rows=50_000_000, columns={"a": "int"})
    assert not ctx.tables["users"].catalog and ctx.timezone is None


def test_a_table_round_trips_through_to_json():
    stats = Context(**context_values(DOC)).tables["members"]
    assert table_stats(stats.to_json()) == stats


@pytest.mark.parametrize("doc, says", [
    ([], "expected a JSON object"),
    ({"tabels": {}}, "unknown key 'tabels'"),
    ({"snapshot": 2}, "this guardian reads version 1"),
    ({"pg_version": "15"}, "pg_version: expected a whole number"),
    ({"tables": {"t": {"rows": -1}}}, "tables.t: rows: expected a whole number >= 0"),
    ({"tables": {"t": {"checks": "bal"}}}, "tables.t: checks: expected a list of names"),
    ({"tables": {"t": {"columns": {"a": {"not_null": True}}}}}, "columns.a.type: expected the column's type"),
    ({"tables": {"t": {"columns": {"a": {"type": "int", "nul": 1}}}}}, "columns.a: unknown key 'nul'"),
    ({"tables": {"t": {"constraints": [{"name": "c", "kind": "chek"}]}}}, "kind: expected one of check"),
    ({"tables": {"t": {"index_facts": [{"columns": ["a"]}]}}}, "index_facts[0].name: missing"),
    ({"tables": {"t": {"visible": "yes"}}}, "tables.t.visible: expected true or false"),
    ({"types": {"m": {"kind": "enum", "values": [1]}}}, "types.m: values: expected a list of names"),
    ({"functions": {"f": "sometimes"}}, "functions.f: expected \"immutable\""),
])
def test_bad_snapshots_say_which_key_is_wrong(doc, says):
    with pytest.raises(ValueError) as exc:
        context_values(doc)
    assert says in str(exc.value)
