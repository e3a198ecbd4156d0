"""Column mechanisms decided with the target's catalog facts, and hedged (saying on what) without them."""
from __future__ import annotations

from dataclasses import replace

import pytest

from bot.risk import analyze
from bot.risk.models import Column, Constraint, Context, Index, TableStats, TypeFacts
from bot.risk.rules.columns import zero_offset

ROWS = 2_000_000
CUSTOMERS = TableStats(
    rows=ROWS, columns={"id": "bigint", "email": "character varying(100)", "name": "character varying(50)",
                        "score": "numeric(8,2)", "created": "timestamp without time zone", "code": "integer",
                        "ref": "integer", "legacy_id": "bigint"},
    column_facts={"id": Column(not_null=True), "email": Column(not_null=True), "name": Column(),
                  "score": Column(), "created": Column(not_null=True), "code": Column(not_null=True),
                  "ref": Column(), "legacy_id": Column()},
    index_facts=(Index(name="customers_pkey", columns=("id",), uses=("id",), unique=True, primary=True),),
)
COUNTRIES = TableStats(rows=200, columns={"id": "integer"}, column_facts={"id": Column(not_null=True)})
RUNNER = {"runner_lock_timeout": True, "runner_statement_timeout": True}


def facts(timezone: str = "UTC", **changes) -> Context:
    """A catalog-aware context (as `guardian plan` and `lint --context <snapshot>` build) with customers changed."""
    types = changes.pop("types", {})
    return Context(pg_version=15, timezone=timezone, types=types, **RUNNER,
                   tables={"customers": replace(CUSTOMERS, **changes), "countries": COUNTRIES})


FILE_ONLY = Context(pg_version=15, **RUNNER)


def judged(sql: str, ctx: Context) -> tuple[str, dict[str, str]]:
    report = analyze(sql, ctx)
    return report.risk.value, {f.code: f.message for f in report.findings if f.severity.value != "low"}


WIDEN = "ALTER TABLE customers ALTER COLUMN email TYPE varchar(200);"


def test_varchar_widening_is_catalog_only_with_facts_and_hedged_without():
    assert judged(WIDEN, facts()) == ("low", {})
    assert judged("ALTER TABLE customers ALTER COLUMN name TYPE text;", facts()) == ("low", {})
    risk, found = judged(WIDEN, FILE_ONLY)
    assert risk == "medium" and "old type unknown" in found["MG306"]
    assert "expression indexes" in found["MG306"] and "guardian snapshot" in found["MG306"]


def test_varchar_widening_rebuilds_an_expression_or_partial_index_but_keeps_a_plain_one():
    lower = Index(name="customers_lower_email_idx", columns=("",), expression=True, uses=("email",))
    risk, found = judged(WIDEN, facts(index_facts=CUSTOMERS.index_facts + (lower,)))
    assert risk == "high" and "customers_lower_email_idx (expression)" in found["MG315"]
    assert "rebuilt under ACCESS EXCLUSIVE" in found["MG315"] and "2,000,000 rows" in found["MG315"]
    partial = Index(name="customers_email_live", columns=("email",), partial=True, uses=("email", "code"))
    assert "customers_email_live (partial)" in judged(WIDEN, facts(index_facts=(partial,)))[1]["MG315"]
    plain = Index(name="customers_email_idx", columns=("email",), uses=("email",))
    assert judged(WIDEN, facts(index_facts=(plain,))) == ("low", {})
    dropped = "DROP INDEX CONCURRENTLY customers_lower_email_idx;\n" + WIDEN
    assert "MG315" not in judged(dropped, facts(index_facts=(lower,)))[1]


def test_an_expression_index_created_earlier_in_the_file_is_rebuilt_too():
    sql = "CREATE INDEX CONCURRENTLY customers_lower_email_idx ON customers (lower(email));\n" + WIDEN
    assert "customers_lower_email_idx" in judged(sql, facts())[1]["MG315"]


COLLATE = 'ALTER TABLE customers ALTER COLUMN email TYPE varchar(200) COLLATE "C";'


def test_a_collation_change_rebuilds_the_indexes_on_the_column_and_nothing_without_one():
    """PG 15: every index on the column gets a new filenode; with none, the heap keeps its own."""
    assert judged(COLLATE, facts()) == ("low", {})
    plain = Index(name="customers_email_idx", columns=("email",), uses=("email",))
    risk, found = judged(COLLATE, facts(index_facts=CUSTOMERS.index_facts + (plain,)))
    assert risk == "high" and "customers_email_idx (index) on it is rebuilt" in found["MG308"]
    assert "MG315" not in found and "customers_pkey" not in found["MG308"]
    risk, found = judged(COLLATE, FILE_ONLY)
    assert risk == "high" and "catalog-only" in found["MG308"] and "guardian snapshot" in found["MG308"]


def test_a_check_on_the_column_is_rechecked_and_one_elsewhere_is_not():
    check = Constraint(name="customers_email_check", kind="check", columns=("email",))
    ctx = facts(checks=("email",), constraints=(check,))
    assert "CHECK customers_email_check uses customers.email" in judged(WIDEN, ctx)[1]["MG901"]
    dropped = "ALTER TABLE customers DROP CONSTRAINT customers_email_check;\n" + WIDEN
    assert "MG901" not in judged(dropped, ctx)[1]
    unvalidated = facts(constraints=(replace(check, validated=False),))
    assert judged(WIDEN, unvalidated) == ("low", {})  # a NOT VALID CHECK is re-created NOT VALID, unchecked
    assert judged(WIDEN, facts(checks=("code",))) == ("low", {})


def test_a_view_selecting_the_column_makes_the_type_change_fail():
    cols = dict(CUSTOMERS.column_facts, email=Column(not_null=True, views=("public.customer_emails",)))
    risk, found = judged(WIDEN, facts(column_facts=cols))
    assert risk == "critical" and "public.customer_emails selects customers.email" in found["MG314"]
    assert judged("ALTER TABLE customers ALTER COLUMN name TYPE text;", facts(column_facts=cols)) == ("low", {})
    recreated = f"DROP VIEW customer_emails;\n{WIDEN}\nCREATE VIEW customer_emails AS SELECT id, email FROM customers;"
    assert "MG314" not in judged(recreated, facts(column_facts=cols))[1]
    in_file = "CREATE VIEW customer_emails AS SELECT id, email FROM customers;\n" + WIDEN
    assert judged(in_file, FILE_ONLY)[0] == "critical"  # the file's own view: decided without the catalog


def test_numeric_precision_is_catalog_only_and_a_scale_change_rewrites():
    assert judged("ALTER TABLE customers ALTER COLUMN score TYPE numeric(12,2);", facts()) == ("low", {})
    risk, found = judged("ALTER TABLE customers ALTER COLUMN score TYPE numeric(12,4);", facts())
    assert risk == "high" and "rewrites the table" in found["MG306"]


TZ = "ALTER TABLE customers ALTER COLUMN created TYPE timestamptz;"


def test_timestamptz_keeps_the_heap_under_utc_rebuilds_its_indexes_and_rewrites_elsewhere():
    assert judged(TZ, facts("Etc/UTC")) == ("low", {})
    created = Index(name="customers_created_idx", columns=("created",), uses=("created",))
    risk, found = judged(TZ, facts("UTC", index_facts=(created,)))
    assert risk == "high" and "customers_created_idx (index)" in found["MG315"] and "TimeZone UTC" in found["MG315"]
    risk, found = judged(TZ, facts("Europe/Paris"))
    assert risk == "high" and "TimeZone is Europe/Paris, not UTC" in found["MG306"]
    risk, found = judged(TZ, replace(facts(), timezone=None))  # sizes and columns but no TimeZone: hedged
    assert risk == "medium" and "guardian snapshot" in found["MG306"]
    assert zero_offset("GMT") and zero_offset("etc/gmt+0") and not zero_offset("America/New_York")


SET_NN = "ALTER TABLE customers ALTER COLUMN ref SET NOT NULL;"


def test_set_not_null_skips_its_scan_with_a_validated_not_null_check_only():
    proof = Constraint(name="customers_ref_nn", kind="check", columns=("ref",), not_null_column="ref")
    assert judged(SET_NN, facts(constraints=(proof,))) == ("low", {})
    unproven = replace(proof, validated=False)
    risk, found = judged(SET_NN, facts(constraints=(unproven,)))
    assert risk == "high" and "customers_ref_nn is NOT VALID" in found["MG208"]
    assert "no validated CHECK (ref IS NOT NULL) on customers" in judged(SET_NN, facts())[1]["MG208"]
    validated_here = "ALTER TABLE customers VALIDATE CONSTRAINT customers_ref_nn;\n" + SET_NN
    assert "MG208" not in judged(validated_here, facts(constraints=(unproven,)))[1]
    risk, found = judged(SET_NN, FILE_ONLY)
    assert risk == "high" and "no scan if a validated CHECK (ref IS NOT NULL) exists" in found["MG208"]


PK = "ALTER TABLE customers ADD CONSTRAINT customers_pk PRIMARY KEY USING INDEX {};"


def test_primary_key_using_index_scans_only_for_nullable_columns():
    legacy = Index(name="customers_legacy_key", columns=("legacy_id",), uses=("legacy_id",), unique=True)
    code = Index(name="customers_code_key", columns=("code",), uses=("code",), unique=True)
    ctx = facts(index_facts=(legacy, code))
    risk, found = judged(PK.format("customers_legacy_key"), ctx)
    assert risk == "medium" and "legacy_id is nullable" in found["MG206"]
    assert judged(PK.format("customers_code_key"), ctx) == ("low", {})
    made_not_null = "ALTER TABLE customers ALTER COLUMN legacy_id SET NOT NULL;\n" + PK.format("customers_legacy_key")
    assert "MG206" not in judged(made_not_null, ctx)[1]
    report = analyze(PK.format("customers_code_key"), FILE_ONLY)
    (mg206,) = [f for f in report.findings if f.code == "MG206"]
    assert mg206.severity.value == "low" and "guardian snapshot" in mg206.message


def test_add_column_of_a_constrained_domain_rewrites_and_a_plain_domain_does_not():
    sql = "ALTER TABLE customers ADD COLUMN quantity positive_int;"
    types = {"public.positive_int": TypeFacts(kind="domain", base="integer", checks=("CHECK ((VALUE > 0))",)),
             "positive_int": TypeFacts(kind="domain", base="integer", checks=("CHECK ((VALUE > 0))",)),
             "plain_int": TypeFacts(kind="domain", base="integer")}
    risk, found = judged(sql, facts(types=types))
    assert risk == "high" and "domain positive_int" in found["MG316"]
    assert judged(sql.replace("positive_int", "plain_int"), facts(types=types)) == ("low", {})
    in_file = "CREATE DOMAIN positive_int AS int CHECK (VALUE > 0);\n" + sql
    assert "MG316" in judged(in_file, FILE_ONLY)[1]
    assert "MG316" not in judged(sql, FILE_ONLY)[1]  # an unknown type: today's verdict


@pytest.mark.parametrize("ctx", [facts(), FILE_ONLY], ids=["facts", "file-only"])
def test_add_column_references_validates_only_with_a_default(ctx):
    bare = "ALTER TABLE customers ADD COLUMN country_id int REFERENCES countries (id);"
    assert "MG201" not in judged(bare, ctx)[1] and not analyze(bare, ctx).statements[0].scan
    with_default = "ALTER TABLE customers ADD COLUMN country_id int DEFAULT 1 REFERENCES countries (id);"
    assert "MG201" in judged(with_default, ctx)[1] and analyze(with_default, ctx).statements[0].scan


def test_add_column_not_null_default_with_check_scans_without_rewriting():
    report = analyze("ALTER TABLE customers ADD COLUMN priority int NOT NULL DEFAULT 1 CHECK (priority > 0);", facts())
    assert report.risk.value == "high" and "MG202" in {f.code for f in report.findings}
    assert report.statements[0].scan and not report.statements[0].rewrite
    assert judged("ALTER TABLE customers ADD COLUMN priority int NOT NULL DEFAULT 1;", facts()) == ("low", {})


def test_set_default_volatile_after_add_column_is_catalog_only():
    sql = ("ALTER TABLE customers ADD COLUMN token uuid;\n"
           "ALTER TABLE customers ALTER COLUMN token SET DEFAULT gen_random_uuid();")
    assert judged(sql, facts())[0] == "low"
    assert not any(s.rewrite for s in analyze(sql, facts()).statements)
