"""Bad input never crashes: syntax errors, empty files, bad bytes, huge files."""
import os
import time  # timing asserts use CPU time, so a busy CI box does not make them flaky
from pathlib import Path

import pytest

from bot.risk import Severity, analyze

from risk_helpers import finding


def test_syntax_error_is_a_critical_finding_and_the_rest_is_still_analysed():
    r = analyze("SELECT 1;\nALTER TABLE users ADD COLUMN;\nCREATE INDEX i ON users (email);\n")
    f = finding(r, "MG001")
    assert f.name == "syntax-error" and f.severity is Severity.CRITICAL
    assert f.line == 2 and "syntax error" in f.message
    assert r.risk is Severity.CRITICAL
    assert [s.kind for s in r.statements] == ["SELECT", "CREATE INDEX"]
    assert r.statements[1].line == 3


@pytest.mark.parametrize("sql", ["SELECT 'unterminated;\n", "DO $$ BEGIN", "/* never closed", "SELEC 1; SELECT (;"])
def test_unparseable_files_give_a_report(sql):
    r = analyze(sql)
    assert finding(r, "MG001").severity is Severity.CRITICAL
    assert r.risk is Severity.CRITICAL


@pytest.mark.parametrize("sql", ["", "   \n\n", "-- only a comment\n/* and another */\n"])
def test_empty_and_comment_only_files(sql):
    r = analyze(sql)
    assert r.statements == () and r.findings == ()
    assert r.risk is Severity.LOW and "no SQL statements" in r.reasons[0]


def test_non_utf8_bytes_are_reported_and_analysis_continues():
    r = analyze(b"SELECT 1;\nSELECT 'caf\xe9';\nCREATE INDEX i ON users (email);")
    f = finding(r, "MG002")
    assert f.line == 2
    assert "MG101" in [x.code for x in r.findings]


def test_nul_bytes_do_not_truncate_the_file():
    r = analyze("SELECT 1;\x00\nCREATE INDEX i ON users (email);")
    assert "MG101" in [x.code for x in r.findings]


def test_fifty_thousand_statements_in_bounded_time():
    sql = "".join(f"ALTER TABLE t{i % 50} ADD COLUMN c{i} int;\n" for i in range(50_000))
    start = time.process_time()
    r = analyze(sql)
    assert time.process_time() - start < 10
    assert len(r.statements) == 50_000
    assert r.statements[-1].line == 50_000


@pytest.mark.slow
def test_twenty_megabyte_file_in_bounded_time():
    stmt = "INSERT INTO audit (id, payload) VALUES (1, '" + "x" * 1000 + "');\n"
    sql = stmt * (20 * 2**20 // len(stmt) + 1)
    assert len(sql) >= 20 * 2**20
    start = time.process_time()
    r = analyze(sql)
    assert time.process_time() - start < 30
    assert r.statements[-1].kind == "INSERT"
    assert all(len(s.excerpt) <= 240 for s in r.statements[:10])


def test_one_megabyte_migration_well_under_a_second():
    corpus = Path(os.environ.get("GUARDIAN_CORPUS",
                                 Path(__file__).resolve().parents[3] / "shared" / "corpus" / "documenso-prisma"))
    parts = [p.read_text(encoding="utf-8") for p in sorted(corpus.glob("*/migration.sql"))]
    assert parts, f"corpus not found at {corpus}"
    sql = ""
    while len(sql) < 2**20:
        sql += "\n;\n".join(parts) + "\n;\n"
    sql = sql[: 2**20].rsplit("\n;\n", 1)[0]
    analyze(sql[:1000])  # warm up imports and caches
    start = time.process_time()
    analyze(sql)
    assert time.process_time() - start < 1.0


def test_big_files_are_parsed_in_chunks_with_the_same_result(monkeypatch):
    from bot.risk import parse as parse_module

    body = "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$\nSELECT 1;\nSELECT 2;\n$$;\n"
    sql = "SELECT 1;\n" * 20 + body + "ALTER TABLE t ADD COLUMN c int;\n" * 30 + "CREATE INDEX i ON t (a);\nSELEC x;\n"
    whole = analyze(sql)
    monkeypatch.setattr(parse_module, "CHUNK_CHARS", 40)  # cuts land inside the function body too
    chunked = analyze(sql)
    assert chunked.statements == whole.statements
    assert chunked.findings == whole.findings
    assert [f.line for f in chunked.findings if f.code == "MG001"] == [sql.count("\n")]
