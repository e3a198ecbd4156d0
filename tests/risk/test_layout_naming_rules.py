"""MG911 column-order-padding (#79) and MG921 naming-convention (#80, opt-in)."""
import json

from bot.risk import Context, Severity, analyze
from bot.risk.rules.layout import layout

from test_lint_cli import _run


def hits(sql: str, code: str, ctx: Context | None = None) -> list:
    return [f for f in analyze(sql, ctx).findings if f.code == code]


# ---- MG911 column-order-padding (#79)

def test_padding_of_the_reference_example():
    assert layout([(8, 8), (1, 1), (4, 4), (2, 2)]) == (3, 18)  # 18 bytes -> 24 stored
    assert layout([(8, 8), (4, 4), (2, 2), (1, 1)]) == (0, 15)  # 15 bytes -> 16 stored
    found = hits("CREATE TABLE t (id bigint, flag bool, n int, s smallint);", "MG911")
    assert len(found) == 1 and found[0].severity == Severity.LOW
    assert "~8 bytes" in found[0].message and found[0].message.endswith(": id, n, s, flag.")


def test_padding_with_variable_length_and_unknown_types():
    # 7 + 7 bytes of padding before the text column; the suggested order keeps text last
    found = hits("CREATE TABLE t (a bool, b bigint, c bool, d timestamptz, name text);", "MG911")
    assert len(found) == 1 and "~14 bytes" in found[0].message and found[0].message.endswith("b, d, a, c, name.")
    # 7 bytes on average: below the threshold
    assert not hits("CREATE TABLE t (a bool, b bigint, name text);", "MG911")
    # after a variable-length or unknown (enum, domain) column the offset is unknown: no padding is assumed
    assert not hits('CREATE TABLE t (s text, a bool, b bigint, r "Role", c bool, d bigint);', "MG911")
    # all fixed: 3 bytes of padding cost a whole 8-byte step here (10 -> 16 bytes stored, 7 -> 8)...
    assert "~8 bytes" in hits("CREATE TABLE t (a bool, b int, c smallint);", "MG911")[0].message
    # ...but none here: 16 bytes stored either way
    assert not hits("CREATE TABLE t (a bool, b int, c bigint);", "MG911")


def test_no_padding_finding_for_good_orders_or_inherited_columns():
    assert not hits("CREATE TABLE t (id bigint, at timestamptz, n int, d date, s smallint, f bool, x text);", "MG911")
    assert not hits("CREATE TABLE c (a bool, b bigint, c bool, d bigint) INHERITS (p);", "MG911")
    assert not hits("CREATE TABLE c (LIKE p, a bool, b bigint, c bool, d bigint);", "MG911")
    assert not hits("CREATE TABLE t (a bool[], b bigint, c bool[], d bigint);", "MG911")  # arrays are varlena


# ---- MG921 naming-convention (#80), opt-in

NAMING = Context(enabled=frozenset({"naming-convention"}))


def test_naming_is_opt_in():
    sql = 'CREATE TABLE "Users" (id bigint, "createdAt" timestamptz);'
    assert not hits(sql, "MG921")
    assert not hits(sql, "MG921", Context(enabled=frozenset({"MG911"})))
    found = hits(sql, "MG921", NAMING)
    assert len(found) == 1
    assert found[0].message.startswith('Not snake_case: table "Users" (mixed case), column "createdAt" (mixed case);')


def test_naming_reasons_and_the_names_it_looks_at():
    msg = hits('CREATE TABLE t ("Full Name" text, "user" int, "e-mail" text, ok_name int, _hidden int, b int);',
               "MG921", NAMING)[0].message
    assert '"Full Name" (mixed case)' in msg and '"user" (a reserved word)' in msg
    assert '"e-mail" (not snake_case)' in msg and "ok_name" not in msg and "_hidden" not in msg
    assert '"full name" (spaces)' in hits('CREATE TABLE t ("full name" text);', "MG921", NAMING)[0].message
    many = hits('CREATE TABLE "T" ("A" int, "B" int, "C" int, "D" int);', "MG921", NAMING)
    assert len(many) == 1 and many[0].message.count('"') == 6 and "and 2 more" in many[0].message
    for sql in ('CREATE INDEX "Users_email_key" ON users (email);', 'ALTER TABLE users RENAME TO "Users";',
                'ALTER TABLE "Users" ADD COLUMN "nickName" text;', 'CREATE TYPE "Role" AS ENUM (\'a\');',
                'CREATE VIEW "V" AS SELECT 1;', 'ALTER TABLE users ADD CONSTRAINT "Fk" CHECK (id > 0) NOT VALID;'):
        assert hits(sql, "MG921", NAMING), sql
    # an existing table's name is not new: only the added column is reported
    assert '"Users"' not in hits('ALTER TABLE "Users" ADD COLUMN "nickName" text;', "MG921", NAMING)[0].message
    assert not hits('ALTER TABLE "Users" ADD COLUMN nick_name text;', "MG921", NAMING)


def test_lint_config_switches_naming_on(monkeypatch, tmp_path):
    sql = b'CREATE TABLE "Users" (id bigint);\n'
    _, out, _ = _run(["--format", "json", "-"], monkeypatch, tmp_path, stdin=sql)
    assert "MG921" not in [f["code"] for f in json.loads(out)["files"][0]["findings"]]
    _, out, _ = _run(["--format", "json", "-"], monkeypatch, tmp_path, stdin=sql,
                     config='[lint]\nenabled = ["naming-convention"]\n')
    assert "MG921" in [f["code"] for f in json.loads(out)["files"][0]["findings"]]
