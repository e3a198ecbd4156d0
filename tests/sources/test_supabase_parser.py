"""The Supabase `statements` column equals the CLI's own splitting, on the CLI's own parser test cases.

Fixtures in tests/fixtures/supabase_parser/ are vendored from supabase/cli (MIT, LICENSE.supabase-cli there):
apps/cli-go/pkg/parser/testdata/{all.sql,split_*.sql} (TestSplit) and the checkSplit cases of
apps/cli-go/pkg/parser/state_test.go, extracted into state_cases.json.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.sources.supabase_parser import split, split_and_trim

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "supabase_parser"
CASES = json.loads((FIXTURES / "state_cases.json").read_text("utf-8"))["cases"]


def test_split_matches_the_cli_testdata() -> None:
    """TestSplit: all.sql splits into exactly the split_NN.sql files, then the trailing newline."""
    expected = [p.read_text("utf-8") for p in sorted(FIXTURES.glob("split_*.sql"))]
    assert len(expected) == 18
    assert split((FIXTURES / "all.sql").read_text("utf-8")) == expected + ["\n"]


def test_split_and_trim_on_the_cli_testdata() -> None:
    expected = [s.rstrip(";").strip() for s in (p.read_text("utf-8") for p in sorted(FIXTURES.glob("split_*.sql")))]
    assert split_and_trim((FIXTURES / "all.sql").read_text("utf-8")) == expected


@pytest.mark.parametrize("case", CASES, ids=[c["test"] for c in CASES])
def test_state_machine_cases(case: dict) -> None:
    assert split("".join(case["statements"])) == case["statements"]


def test_trim_keeps_leading_comments_and_a_trailing_comment_alone() -> None:
    sql = "-- header\ncreate table a (id int);\n\n/* why */\ncreate index on a (id);\n-- the end\n"
    assert split_and_trim(sql) == [
        "-- header\ncreate table a (id int)", "/* why */\ncreate index on a (id)", "-- the end",
    ]


def test_trim_is_go_trimspace_not_python_strip() -> None:
    # Go's unicode.IsSpace does not count U+001C..U+001F (Python's str.strip does)
    assert split_and_trim("\x1cselect 1;") == ["\x1cselect 1"]
