"""The one SQL splitter (bot.risk.parse.split_statements): the engine's statements, with the same index, line,
column and byte span, as the runner, the rehearsal and trace (which match statements by index) use them."""
from bot.risk import analyze
from bot.risk.parse import source, split_statements

from risk_helpers import CORPUS


def _agree(sql: str) -> list:
    """The pieces of `sql`, checked against the engine's report: same statements, index, line, column; each
    piece's text is its byte span in the file, less the final `;`."""
    pieces = split_statements(sql)
    report = analyze(sql)
    assert [(p.index, p.line, p.column) for p in pieces] == [(s.index, s.line, s.column) for s in report.statements]
    data = source(sql)[2]
    for p in pieces:
        assert p.node_type is not None and p.node is not None
        assert data[p.start:p.end].decode("utf-8").rstrip().rstrip(";").rstrip() == p.text
        assert report.statements[p.index].excerpt.startswith(p.text[:240])
    return pieces


def test_pieces_are_the_engines_statements_on_real_files():
    files = sorted(CORPUS.glob("*/migration.sql"))
    assert len(files) > 50, f"corpus not found at {CORPUS} (set GUARDIAN_CORPUS)"
    count = 0
    for path in files:
        count += len(_agree(path.read_text(encoding="utf-8")))
    assert count > 500


def test_a_big_file_parsed_in_pieces_splits_the_same():
    """Past 2 MB the engine parses about 1 MB at a time (parse._cuts): the pieces still follow the file."""
    one = ";\n".join(p.read_text(encoding="utf-8") for p in sorted(CORPUS.glob("*/migration.sql"))) + ";"
    sql = "\n".join([one] * (2_300_000 // len(one.encode()) + 1))
    pieces = _agree(sql)
    assert pieces[-1].index == len(pieces) - 1 and pieces[-1].line > sql.count("\n") - 50


def test_comments_before_a_statement_are_not_part_of_it():
    sql = ("-- a comment\n/* a block\n comment */\n  CREATE TABLE t (id int);\n"
           "CREATE INDEX i ON t (id); -- after, on its line\n\n-- guardian: batch 100\nUPDATE t SET id = 1;\n")
    pieces = _agree(sql)
    assert [(p.index, p.line, p.column, p.text) for p in pieces] == [
        (0, 4, 3, "CREATE TABLE t (id int)"), (1, 5, 1, "CREATE INDEX i ON t (id)"), (2, 8, 1, "UPDATE t SET id = 1")]


def test_dollar_quoted_bodies_empty_statements_and_characters():
    sql = ("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; SELECT 2; $$ LANGUAGE sql;;\n;\n"
           "DO $body$ BEGIN PERFORM 1; END $body$; SELECT 'é'; SELECT 2")
    pieces = _agree(sql)
    assert [p.node_type for p in pieces] == ["CreateFunctionStmt", "DoStmt", "SelectStmt", "SelectStmt"]
    assert pieces[0].text.endswith("$$ LANGUAGE sql") and "SELECT 2;" in pieces[0].text
    last = pieces[3]
    assert (last.index, last.line, last.column, last.text) == (3, 3, 52, "SELECT 2")
    assert last.start == len(sql.encode()) - len("SELECT 2")  # bytes: 'é' is two
    assert split_statements(";;\n-- only a comment\n") == []


def test_a_script_that_does_not_parse_is_one_piece_run_whole():
    sql = "\n-- first\nCREATE TABLE t (id int);\nCREATE TABL u (id int);;\n"
    pieces = split_statements(sql)
    assert [(p.index, p.line, p.node_type, p.text) for p in pieces] == [
        (0, 2, None, "-- first\nCREATE TABLE t (id int);\nCREATE TABL u (id int)")]
    assert any(f.code == "MG001" for f in analyze(sql).findings)
