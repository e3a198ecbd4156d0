"""MG901 type-change-rechecks-check (#27): a type change re-checks the CHECKs on its column."""
import json
import pickle

import pytest

from bot.risk import Context, Severity, TableStats, analyze

from test_lint_cli import _run


def hits(sql: str, code: str, ctx: Context | None = None) -> list:
    return [f for f in analyze(sql, ctx).findings if f.code == code]


# ---- MG901 type-change-rechecks-check (#27)

def test_type_change_after_a_validated_check_added_in_the_file():
    found = hits("ALTER TABLE acct ADD CONSTRAINT acct_bal_pos CHECK (bal >= 0);\n"
                 "ALTER TABLE acct ALTER COLUMN bal TYPE bigint;", "MG901")
    assert [(f.line, f.severity) for f in found] == [(2, Severity.HIGH)]
    assert "acct_bal_pos" in found[0].message and "acct.bal" in found[0].message


def test_other_columns_and_not_valid_checks_are_not_rechecked():
    assert not hits("ALTER TABLE acct ADD CONSTRAINT acct_bal_pos CHECK (bal >= 0);\n"
                    "ALTER TABLE acct ALTER COLUMN note TYPE text;", "MG901")
    not_valid = "ALTER TABLE acct ADD CONSTRAINT acct_bal_pos CHECK (bal >= 0) NOT VALID;\n"
    assert not hits(not_valid + "ALTER TABLE acct ALTER COLUMN bal TYPE bigint;", "MG901")
    # once validated it is re-checked again
    assert hits(not_valid + "COMMIT;\nALTER TABLE acct VALIDATE CONSTRAINT acct_bal_pos;\n"
                "ALTER TABLE acct ALTER COLUMN bal TYPE bigint;", "MG901")


def test_every_column_of_a_multi_column_check_and_column_checks_of_added_columns():
    both = "ALTER TABLE r ADD CONSTRAINT r_range CHECK (lo <= r.hi);\n"
    assert hits(both + "ALTER TABLE r ALTER COLUMN hi TYPE numeric;", "MG901")
    assert hits(both + "ALTER TABLE r ALTER COLUMN lo TYPE numeric;", "MG901")
    assert hits("ALTER TABLE r ADD COLUMN q int CHECK (q > 0);\nALTER TABLE r ALTER COLUMN q TYPE bigint;", "MG901")


@pytest.mark.parametrize("drop", [
    "ALTER TABLE acct DROP CONSTRAINT acct_bal_pos;\nALTER TABLE acct ALTER COLUMN bal TYPE bigint;",
    # one statement: PostgreSQL runs the drop before the type change
    "ALTER TABLE acct ALTER COLUMN bal TYPE bigint, DROP CONSTRAINT acct_bal_pos;",
])
def test_the_recipe_drop_first_is_silent(drop):
    assert not hits("ALTER TABLE acct ADD CONSTRAINT acct_bal_pos CHECK (bal >= 0);\n" + drop, "MG901")


def test_unnamed_checks_get_postgres_default_names():
    sql = "ALTER TABLE acct ADD CHECK (bal >= 0);\nALTER TABLE acct DROP CONSTRAINT {};\n" \
          "ALTER TABLE acct ALTER COLUMN bal TYPE bigint;"
    assert not hits(sql.format("acct_bal_check"), "MG901")
    assert hits(sql.format("acct_other_check"), "MG901")


def test_a_check_known_from_the_context():
    ctx = Context(tables={"acct": TableStats(rows=5_000_000, checks=("bal",))})
    found = hits("ALTER TABLE acct ALTER COLUMN bal TYPE numeric(20,2);", "MG901", ctx)
    assert len(found) == 1 and "target" in found[0].message and found[0].severity == Severity.HIGH
    assert not hits("ALTER TABLE acct ALTER COLUMN note TYPE text;", "MG901", ctx)
    # a table created in this file is invisible to other sessions: no lock hazard
    assert not hits("CREATE TABLE acct2 (bal int CHECK (bal > 0));\nALTER TABLE acct2 ALTER COLUMN bal TYPE bigint;",
                    "MG901", Context(tables={"acct2": TableStats(checks=("bal",))}))
    # size-sensitive: a small table drops to low
    small = Context(tables={"acct": TableStats(rows=40, checks=("bal",))})
    assert [f.severity for f in hits("ALTER TABLE acct ALTER COLUMN bal TYPE bigint;", "MG901", small)] == [
        Severity.LOW]


def test_context_checks_dropped_in_the_file():
    ctx = Context(tables={"acct": TableStats(checks=("bal", "fee"))})
    change = "ALTER TABLE acct ALTER COLUMN bal TYPE bigint;"
    # the default name of bal's CHECK, or a name we cannot attribute: the recipe, silent
    assert not hits("ALTER TABLE acct DROP CONSTRAINT acct_bal_check;\n" + change, "MG901", ctx)
    assert not hits("ALTER TABLE acct DROP CONSTRAINT bal_positive;\n" + change, "MG901", ctx)
    # the default name of another column's CHECK: bal's is still there
    assert hits("ALTER TABLE acct DROP CONSTRAINT acct_fee_check;\n" + change, "MG901", ctx)


def test_lint_context_file_carries_checks(monkeypatch, tmp_path):
    ctx = tmp_path / "ctx.json"
    ctx.write_text(json.dumps({"tables": {"acct": {"rows": 2_000_000, "checks": ["bal"]}}}))
    sql = b"ALTER TABLE acct ALTER COLUMN bal TYPE bigint;\n"
    _, out, _ = _run(["--format", "json", "--context", str(ctx), "-"], monkeypatch, tmp_path, stdin=sql)
    assert "MG901" in [f["code"] for f in json.loads(out)["files"][0]["findings"]]
    _, out, _ = _run(["--format", "json", "-"], monkeypatch, tmp_path, stdin=sql)
    assert "MG901" not in [f["code"] for f in json.loads(out)["files"][0]["findings"]]
    ctx.write_text(json.dumps({"tables": {"acct": {"checks": "bal"}}}))
    code, _, err = _run(["--context", str(ctx), "-"], monkeypatch, tmp_path, stdin=sql)
    assert code == 2 and "checks" in err


def test_checks_added_in_the_head_of_a_split_file_reach_its_tail(monkeypatch):
    from bot.risk import parse as parse_module
    from bot.risk.engine import Split

    monkeypatch.setattr(parse_module, "CHUNK_CHARS", 60)
    filler = "".join(f"ALTER TABLE t{i} ADD COLUMN c int;\n" for i in range(30))
    sql = "ALTER TABLE acct ADD CONSTRAINT acct_bal_pos CHECK (bal >= 0);\n" + filler + \
          "ALTER TABLE acct ALTER COLUMN bal TYPE bigint;\n"
    whole = analyze(sql)
    assert [f.line for f in whole.findings if f.code == "MG901"] == [32]
    split = Split(sql, share=0.3)
    head = split.head()
    split.ahead()
    assert split.finish(pickle.loads(pickle.dumps(head))) == whole
