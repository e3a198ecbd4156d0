"""What bench/fuzz.py found slow or wrong besides the regexes: PostgreSQL's scanner is quadratic on `/*`
inside long runs of operator characters, lone `;`s were each parsed, and an unterminated nested comment
in an unparsable file was skipped as "only comments"."""
from __future__ import annotations

import random

import pytest
from pglast import parser

from bot import lint_runner
from bot.risk import Context, analyze
from bot.risk.engine import Split
from bot.risk import fallback
from bot.risk.fallback import _ONLY_COMMENTS, _comments_close, scanner_trap
from bot.risk.parse import CHUNK_CHARS, NeedsWhole

from risk_helpers import finding

# 200 KB: libpg_query needs ~25 s to scan it (4 s for 80 KB, quadratic); the analysis never hands it over
TRAP = "/**/" * 50_000


def test_a_scanner_trap_is_too_complex_and_the_other_statements_are_analysed():
    report = analyze("SELECT 1;\n" + TRAP + " SELECT 2;\nDROP TABLE x;\n")
    too = finding(report, "MG006")
    assert too.line == 2 and "200,000 operator characters" in too.message and "quadratic" in too.message
    assert finding(report, "MG501").line == 3
    assert report.risk.value == "critical"


def test_a_scanner_trap_inside_an_unterminated_comment_is_still_reported():
    assert [f.code for f in analyze("/*" + TRAP).findings] == ["MG006"]


@pytest.mark.parametrize("sql", [
    "/" + "*" * 5_000 + "/\nSELECT 1;",  # a banner comment: one opener
    "SELECT 1; " + "-" * 5_000 + "\nSELECT 2;",  # a long run without openers (a line comment)
    "SELECT '" + "/*" * 1_000 + "';",  # below the trap's cost, in a string
])
def test_ordinary_long_operator_runs_are_parsed(sql):
    assert scanner_trap(sql) is None
    assert [f.code for f in analyze(sql).findings if f.code in ("MG006", "MG001")] == []


def test_big_files_with_a_trap_are_analysed_in_one_process():
    text = "".join(f"ALTER TABLE t ADD COLUMN c{i} int;\n" for i in range(3 * CHUNK_CHARS // 34)) + TRAP + ";\n"
    with pytest.raises(NeedsWhole):
        Split(text).head()
    assert lint_runner._split(text.encode(), Context(), head=True) is None
    assert finding(analyze(text), "MG006").line == text.count("\n") + 1 - 1


def test_lone_semicolons_in_an_unparsable_file_cost_no_parse_and_change_nothing():
    report = analyze("SELEC 1;" + ";" * 200_000 + "\nDROP TABLE x;")
    assert [f.code for f in report.findings][:1] == ["MG001"] and finding(report, "MG501").line == 2


@pytest.mark.parametrize("sql,codes", [
    ("/* /* */", ["MG001"]),  # PostgreSQL's comments nest: this one never closes
    ("SELEC 1;\n/* /* */\n", ["MG001", "MG001"]),
    ("SELEC 1;\n/* /* */ */\n", ["MG001"]),
    ("/* /* */ */ SELECT 1;", []),
    ("SELEC 1;\n-- /* not a comment opener\n", ["MG001"]),
])
def test_nested_comments_in_an_unparsable_file_are_read_as_postgresql_reads_them(sql, codes):
    assert [f.code for f in analyze(sql).findings] == codes


def test_comments_close_never_says_yes_where_postgresql_says_no():
    rnd = random.Random(11)
    alphabet = ["/*", "*/", "--", "\n", " ", "*", "/", "a"]
    checked = 0
    for _ in range(100_000):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12)))
        if not _ONLY_COMMENTS.fullmatch(text):
            continue
        try:
            parser.parse_sql_json(text)
            parses = True
        except parser.ParseError:
            parses = False
        assert _comments_close(text) == parses, repr(text)
        checked += 1
    assert checked > 10_000


def _trap_by_regex_alone(sql: str) -> int | None:
    """scanner_trap without its byte pre-check: the regex over every run (what it did before)."""
    for m in fallback._OP_RUN.finditer(sql):
        run = m.group()
        if run.count("/*") * len(run) > fallback._TRAP_COST:
            return m.start()
    return None


def test_the_byte_pre_check_never_hides_a_trap():
    # runs just under and over 1,000 characters, next to characters outside ASCII and a lone surrogate
    # (their UTF-8 bytes must not count as operators), in and around ordinary text
    rnd = random.Random(5)
    pieces = ["/*", "/**/", "-", "*/", "+", "=", " ", "a", "é", "€", "\ud800", "\n", "SELECT 1;"]
    found = 0
    for _ in range(400):
        parts = []
        for _ in range(rnd.randint(1, 5)):
            if rnd.random() < 0.5:
                parts.append("".join(rnd.choice(pieces[:6]) for _ in range(rnd.randint(200, 3_000))))
            else:
                parts.append("".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 50))))
        sql = "".join(parts)
        trap = scanner_trap(sql)
        expected = _trap_by_regex_alone(sql) if len(sql) >= 1000 and "/*" in sql else None
        assert (trap.offset if trap else None) == expected
        found += trap is not None
    assert 50 < found < 350  # both outcomes were exercised
    assert scanner_trap("é" * 999 + TRAP).offset == 999  # the offset counts characters, not bytes
