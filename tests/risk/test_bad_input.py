"""Bad input never crashes: syntax errors, empty files, bad bytes, huge files."""
import os
import pickle
import time  # timing asserts use CPU time, so a busy CI box does not make them flaky

import pytest

from bot.risk import Severity, analyze

from risk_helpers import CORPUS, finding


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


def test_fifty_thousand_statements_scale_linearly():
    """Bounded time without a wall-clock limit (speed is bench/lint's job): doubling the file at most
    about doubles the work, so nothing in the engine is quadratic."""
    def cpu(n: int) -> float:
        sql = "".join(f"ALTER TABLE t{i % 50} ADD COLUMN c{i} int;\n" for i in range(n))
        start = time.process_time()
        r = analyze(sql)
        spent = time.process_time() - start
        assert len(r.statements) == n and r.statements[-1].line == n
        return spent

    cpu(2_000)  # warm up imports and caches
    assert cpu(50_000) < 3.5 * cpu(25_000)


@pytest.mark.slow
def test_twenty_megabyte_file_gives_a_complete_report():
    stmt = "INSERT INTO audit (id, payload) VALUES (1, '" + "x" * 1000 + "');\n"
    sql = stmt * (20 * 2**20 // len(stmt) + 1)
    assert len(sql) >= 20 * 2**20
    r = analyze(sql)
    assert len(r.statements) == sql.count("INSERT INTO")
    assert r.statements[-1].kind == "INSERT"
    assert all(len(s.excerpt) <= 240 for s in r.statements[:10])


def _corpus_parts() -> list[str]:
    parts = [p.read_text(encoding="utf-8") for p in sorted(CORPUS.glob("*/migration.sql"))]
    assert parts, f"corpus not found at {CORPUS} (set GUARDIAN_CORPUS)"
    return parts


def test_one_megabyte_of_real_migrations_analyses_completely():
    """(Its timing is printed by bench/lint.py, never asserted here.)"""
    parts = _corpus_parts()
    sql = ""
    while len(sql) < 2**20:
        sql += "\n;\n".join(parts) + "\n;\n"
    sql = sql[: 2**20].rsplit("\n;\n", 1)[0]
    r = analyze(sql)
    assert len(r.statements) > 1000 and not [f for f in r.findings if f.code == "MG001"]
    assert r.risk.value == "critical"  # the corpus drops tables and deletes without WHERE


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


def _split_cases():
    body = "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$\nSELECT 1;\nSELECT 2;\n$$;\n"
    alters = "ALTER TABLE t ADD COLUMN c int;\n" * 8
    yield "plain", "SELECT 1;\n" * 10 + alters + "CREATE INDEX i ON t (a);\n" + alters
    yield "body across cuts", "SELECT 1;\n" * 5 + body + alters + body + "CREATE INDEX i ON t (a);\n"
    yield "body in tail", alters * 4 + "CREATE INDEX i ON t (a);\n" + body + alters + body
    yield "error in head", "SELEC x;\n" + alters * 3 + "CREATE INDEX i ON t (a);\n"
    yield "error in tail", alters * 3 + "SELEC x;\n" + "CREATE INDEX i ON t (a);\n" + alters
    yield "directives and a transaction over the split", (
        "CREATE TABLE fresh (id bigint);\n" + alters + "BEGIN;\n-- guardian: accept MG101 because reviewed\n"
        + alters + "CREATE INDEX i ON t (a); -- guardian: accept MG101 because ok\n"
        + "-- guardian: accept MG999\n" + alters + "ALTER TABLE fresh ADD COLUMN x int DEFAULT random();\n"
        + "COMMIT;\n" + "CREATE INDEX j ON t (b);\nBEGIN;\n" + alters)
    yield "bad utf-8", (alters * 2).encode() + b"-- caf\xe9\n" + (alters * 2).encode()


@pytest.mark.parametrize("label,sql", list(_split_cases()))
def test_split_in_two_parts_gives_the_same_report(monkeypatch, label, sql):
    """engine.Split (head in one process, ahead + finish in another) must equal analyze() exactly."""
    from bot.risk import parse as parse_module
    from bot.risk.engine import Split
    from bot.risk.parse import NeedsWhole

    monkeypatch.setattr(parse_module, "CHUNK_CHARS", 60)
    whole = analyze(sql)
    tried = 0
    for share in (0.1, 0.3, 0.5, 0.7, 0.9):
        split = Split(sql, share=share)
        assert split.ok, label
        try:
            head = split.head()
            split.ahead()
        except NeedsWhole:  # a piece that analyze() parses differently failed: lint falls back to analyze()
            assert label in ("body across cuts", "body in tail", "error in head", "error in tail"), label
            continue
        tried += 1
        report = split.finish(pickle.loads(pickle.dumps(head)))
        assert report == whole, (label, share)
        assert report.statements == whole.statements
        assert report.findings == whole.findings
    assert tried or label in ("body across cuts", "error in head")


def test_lint_forks_for_big_files_with_the_same_output(monkeypatch):
    """guardian lint's two-process path (bot.lint_runner.analyze_file) renders exactly what analyze() gives."""
    from bot import lint, lint_render, lint_runner
    from bot.risk import Context
    from bot.risk import parse as parse_module

    monkeypatch.setattr(parse_module, "CHUNK_CHARS", 60)
    monkeypatch.setattr(lint_runner, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(lint_runner, "_two_cores", lambda: True)
    for label, sql in _split_cases():
        data = sql if isinstance(sql, bytes) else sql.encode()
        ctx = Context()
        got = lint_runner.analyze_file(data, ctx)
        assert got == analyze(data, ctx), label
        assert lint.render_json([("x", got)]) == lint.render_json([("x", analyze(data, ctx))])


def test_lint_forks_before_importing_the_parser_and_renders_the_same(monkeypatch, tmp_path):
    """One big file through `guardian lint`: the fork comes before the parser and rules are imported
    (each process parses its own pieces), and the output equals the reference rendering."""
    import io
    import subprocess
    import sys

    from bot import lint, lint_render, lint_runner
    from bot.risk import parse as parse_module

    probe = ("import sys, bot.lint; print(sorted(m for m in ('pglast', 'bot.risk.engine', 'bot.risk.parse') "
             "if m in sys.modules))")
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "[]"  # so a forked child does not wait on one core for them
    monkeypatch.setattr(parse_module, "CHUNK_CHARS", 60)
    monkeypatch.setattr(lint_runner, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(lint_runner, "_two_cores", lambda: True)
    monkeypatch.setenv("GUARDIAN_CONFIG", str(tmp_path / "absent.toml"))
    lint_runner._keep = kept = []
    try:
        for label, sql in _split_cases():
            path = tmp_path / "m.sql"
            path.write_bytes(sql if isinstance(sql, bytes) else sql.encode())
            parser = lint.argparse.ArgumentParser()
            lint.add_arguments(parser)
            out = io.StringIO()
            code = lint.run(parser.parse_args(["--format", "json", str(path)]), out=out, err=io.StringIO())
            expected = lint.render_json_reference([(str(path), analyze(path.read_bytes()))])
            assert out.getvalue() == expected, label
            assert code == (1 if '"risk": "high"' in expected[:300] or '"risk": "critical"' in expected[:300] else 0)
    finally:
        lint_runner._keep = None
    assert any(type(k).__name__ == "Split" for k in kept)  # the two-process path was taken

    # above PARALLEL_MAX_BYTES memory comes first: one process, the same output
    monkeypatch.setattr(lint_runner, "PARALLEL_MAX_BYTES", 10)
    lint_runner._keep = kept = []
    try:
        out = io.StringIO()
        lint.run(parser.parse_args(["--format", "json", str(path)]), out=out, err=io.StringIO())
    finally:
        lint_runner._keep = None
    assert out.getvalue() == lint.render_json_reference([(str(path), analyze(path.read_bytes()))])
    assert not any(type(k).__name__ == "Split" for k in kept)


def test_lint_json_stays_whole_when_the_child_fails_after_sending_its_state(monkeypatch, tmp_path):
    """For JSON the head's statement records come only as the child's rendered text: if that never comes,
    lint analyses the file again in one process instead of printing a report without them."""
    import io

    from bot import lint, lint_render, lint_runner
    from bot.risk import parse as parse_module

    monkeypatch.setattr(parse_module, "CHUNK_CHARS", 60)
    monkeypatch.setattr(lint_runner, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(lint_runner, "_two_cores", lambda: True)
    monkeypatch.setenv("GUARDIAN_CONFIG", str(tmp_path / "absent.toml"))
    parent, render = os.getpid(), lint_render.statements_json

    def fails_in_the_child(*args, **kwargs):
        if os.getpid() != parent:
            os._exit(3)
        return render(*args, **kwargs)

    monkeypatch.setattr(lint_render, "statements_json", fails_in_the_child)
    sql = "".join(f"CREATE INDEX i{i} ON t (c{i});\nALTER TABLE t ADD COLUMN d{i} int;\n" for i in range(40))
    path = tmp_path / "m.sql"
    path.write_text(sql)
    lint_runner._keep = kept = []
    try:
        out = io.StringIO()
        parser = lint._parser()
        lint.run(parser.parse_args(["--format", "json", str(path)]), out=out, err=io.StringIO())
    finally:
        lint_runner._keep = None
    assert any(type(k).__name__ == "Split" for k in kept)  # the two-process path was tried
    assert out.getvalue() == lint.render_json_reference([(str(path), analyze(sql))])


def test_a_syntax_error_after_a_dollar_quoted_body_loses_no_other_statement():
    """The file does not parse, so it is split statement by statement: an untagged `$$` body, a tagged
    `$fn$` one and an E'' string with an escaped quote and a `;` must not swallow what follows."""
    body = "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$\nSELECT 1;\nSELECT 2;\n$$;\n"
    tagged = "CREATE FUNCTION g() RETURNS int LANGUAGE sql AS $fn$ SELECT 1; $fn$;\n"
    sql = ("SELECT 1;\n" + body + "ALTER TABLE t ADD COLUMN c int;\n" + tagged
           + "INSERT INTO t VALUES (E'it\\'s; fine');\n" + "CREATE INDEX i ON t (a);\n" + "SELEC x;\n")
    r = analyze(sql)
    assert [s.kind for s in r.statements] == ["SELECT", "CREATE FUNCTION", "ALTER TABLE", "CREATE FUNCTION",
                                              "INSERT", "CREATE INDEX"]
    codes = {f.code: f.line for f in r.findings}
    assert codes["MG101"] == sql.count("\n") - 1  # the risky CREATE INDEX is still reported
    assert codes["MG001"] == sql.count("\n")


def test_a_file_cut_in_its_last_statement_keeps_every_earlier_statement():
    """A 2 MB file (the corpus joined) whose last statement is cut short: one syntax error at the end,
    all the statements before it analysed."""
    parts, data = _corpus_parts(), ""
    while len(data) < 2 * 2**20:
        data += "\n;\n".join(parts) + "\n;\n"
    whole = data[: 2 * 2**20].rsplit("\n;\n", 1)[0].encode()
    last = whole[whole.rfind(b"\n-- ") + 1:]
    cut = whole[: len(whole) - len(last) // 2]  # the last statement stops halfway
    full, broken = analyze(whole), analyze(cut)
    assert [f.line for f in broken.findings if f.code == "MG001"] == [full.statements[-1].line]
    assert len(broken.statements) == len(full.statements) - 1
    assert broken.statements[-1] == full.statements[-2]


def test_big_files_are_not_cut_inside_an_indented_function_body(monkeypatch):
    """Pieces end after a `;` whose next line starts a statement at column 0, so a plpgsql body
    (indented, with BEGIN/END at column 0) stays whole and every piece parses on its own."""
    from pglast import parser as pg

    from bot.risk import parse as parse_module

    body = ("CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$\nDECLARE\n    a int := 0;\n    b int := 1;\n"
            "BEGIN\n    a := a + b;\n    RETURN a;\nEND;\n$$;\n")
    sql = ("ALTER TABLE t ADD COLUMN c int;\n" * 3 + body) * 6
    whole = analyze(sql)
    monkeypatch.setattr(parse_module, "CHUNK_CHARS", 40)
    cuts = parse_module._cuts(sql)
    assert len(cuts) > 6
    for a, b in cuts:
        pg.parse_sql_json(sql[a:b])  # raises if a cut fell inside the body
    assert analyze(sql) == whole
