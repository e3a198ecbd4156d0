"""No regular expression in bot/ or workers/ backtracks catastrophically (issue 13: 80 bytes took 35 s).

Two kinds of checks. The comment patterns of bot/risk/parse.py, which did, are fed inputs sized so that
the former patterns would run for longer than anyone waits (2**78 ways to split 78 blanks): a regression
makes these tests hang rather than pass. Every other pattern found in the code (module-level compiled
patterns and literal patterns passed to re.* calls) goes through a battery of long runs of the
characters that make alternatives overlap, unterminated quotes, comments and dollar quotes, each with and
without a character that makes the match fail at the end, through fullmatch and finditer. Speed itself
is measured by bench/fuzz.py, not asserted here.
"""
from __future__ import annotations

import ast
import importlib
import pkgutil
import random
import re
from pathlib import Path

import pytest

from bot.risk import analyze
from bot.risk.fallback import _ONLY_COMMENTS, _split
from bot.risk.parse import _LEADING

ROOT = Path(__file__).resolve().parents[2]
# The patterns before issue 13, kept as the reference for what the new ones must still match.
OLD_COMMENTS = re.compile(r"(?:\s+|--[^\n]*|/\*.*?\*/)*", re.DOTALL)


# ------------------------------------------------------------------ the comment patterns of parse.py

@pytest.mark.parametrize("text", [
    " " * 100_000 + "x",
    " \t\n" * 30_000 + "x",
    "/**/" * 25_000 + "x",
    "/**/ " * 20_000 + "x",
    "/* */ */" * 10_000 + "x",
    "--\n" * 30_000 + "x",
    "-- -- --" * 10_000 + "\nx",
    "/*" * 50_000,
    "-- a\n/* b */ " * 10_000 + "/* unterminated",
])
def test_only_comments_rejects_adversarial_text_that_is_not_only_comments(text):
    assert _ONLY_COMMENTS.fullmatch(text) is None


@pytest.mark.parametrize("text", [
    " " * 100_000,
    "/**/" * 25_000,
    "-- a\n/* b */ " * 10_000,
    "--" * 50_000,
    "/* ** / * */\n\t-- x\n",
])
def test_only_comments_accepts_text_made_of_comments_and_blanks(text):
    assert _ONLY_COMMENTS.fullmatch(text) is not None


def test_leading_comments_end_where_the_statement_starts():
    data = b" \n-- note\n/* a ** b */\t" * 5_000 + b"SELECT 1;"
    assert _LEADING.match(data).end() == len(data) - len(b"SELECT 1;")
    assert _LEADING.match(b"/* unterminated " + b" " * 100_000).end() == 0


def test_new_comment_patterns_match_what_the_old_ones_did():
    """Same prefix as before on every short text over the characters that matter; a whole-text match
    differs only where the old pattern stretched a comment over a later `*/` (`/* a */ b */` is not
    comments only: PostgreSQL reads `b */` as SQL)."""
    rnd = random.Random(13)
    alphabet = [" ", "\n", "\t", "-", "/", "*", "a", ";", "'"]
    for _ in range(60_000):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 11)))
        assert _ONLY_COMMENTS.match(text).end() == OLD_COMMENTS.match(text).end(), repr(text)
        assert _LEADING.match(text.encode()).end() == OLD_COMMENTS.match(text).end(), repr(text)
        if _ONLY_COMMENTS.fullmatch(text) is not None:
            assert OLD_COMMENTS.fullmatch(text) is not None, repr(text)
    assert OLD_COMMENTS.fullmatch("/* a */ b */") and not _ONLY_COMMENTS.fullmatch("/* a */ b */")


def test_the_80_byte_file_of_the_issue_is_two_syntax_errors():
    # An unparsable file is split per statement; its second piece is blanks then a word. The old
    # whole-text match tried every way to split the blanks: 2**77 here.
    report = analyze("SELEC 1;" + " " * 78 + "x")
    assert [f.code for f in report.findings] == ["MG001", "MG001"]


def test_fallback_splitter_on_long_unterminated_openers():
    for opener in ("'", '"', "E'", "$$", "$tag$", "/*", "--"):
        text = "SELECT 1;\n" + opener + ("a;" * 50_000)
        pieces = list(_split(text))
        assert pieces[0] == (0, len("SELECT 1;")), opener
        assert pieces[-1][1] == len(text), opener


# ------------------------------------------------------------------ every pattern in the code

def _modules() -> list[str]:
    names = []
    for package in ("bot", "workers"):
        pkg = importlib.import_module(package)
        names.append(package)
        names += [m.name for m in pkgutil.walk_packages(pkg.__path__, package + ".")]
    return names


def _patterns_in(value, depth: int = 0):
    if isinstance(value, re.Pattern):
        yield value
    elif depth < 2 and isinstance(value, (tuple, list)):
        for item in value:
            yield from _patterns_in(item, depth + 1)
    elif depth < 2 and isinstance(value, dict):
        for item in value.values():
            yield from _patterns_in(item, depth + 1)


_RE_CALLS = {"compile", "match", "search", "fullmatch", "sub", "subn", "split", "findall", "finditer"}


def _literal_patterns(path: Path):
    """Patterns written as literals in re.<call>(...) anywhere in a file (inline, not module globals)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _RE_CALLS
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "re" and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, (str, bytes))):
            flags = 0
            for kw in node.keywords:
                if kw.arg == "flags":
                    flags = eval(compile(ast.Expression(kw.value), str(path), "eval"), {"re": re})  # noqa: S307
            if node.func.attr == "compile" and len(node.args) > 1:
                flags = eval(compile(ast.Expression(node.args[1]), str(path), "eval"), {"re": re})  # noqa: S307
            yield re.compile(node.args[0].value, flags)


def all_patterns() -> dict[str, re.Pattern]:
    found: dict[str, re.Pattern] = {}
    for name in _modules():
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            for i, pattern in enumerate(_patterns_in(value)):
                found.setdefault(f"{name}.{attr}[{i}]", pattern)
    for package in ("bot", "workers"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for i, pattern in enumerate(_literal_patterns(path)):
                found.setdefault(f"{path.relative_to(ROOT)}:re[{i}]", pattern)
    return found


PATTERNS = all_patterns()

# Long runs of what makes alternatives overlap or openers go unterminated, for SQL, URLs, config
# values, file names and pg_restore listings.
ATOMS = [" ", " \t\n", "\n", "-", "--", "--\n", "/", "*", "/*", "*/", "/**/", "'", "''", '"', '""', "$", "$$",
         "$a", "$a$", "E'", "\\", "a", "A", "0", "0.", "_", "a_", "(", "()", ",", ";", ";\n", ":", "=",
         "password=", "value ", "://", "postgres://", "a ", "1 ", "1;", "guardian:", "-- guardian: accept ",
         " because", "timestamp", "@", "%"]
RUN_CHARS = 16_000


def _battery(pattern: re.Pattern):
    for atom in ATOMS:
        run = atom * (RUN_CHARS // len(atom))
        for text in (run, run + "\x00", "x" + run + "!"):
            yield text.encode("utf-8") if isinstance(pattern.pattern, bytes) else text


def test_the_battery_finds_the_patterns_in_the_code():
    sources = {p.pattern for p in PATTERNS.values()}
    assert any(isinstance(s, bytes) and b"guardian" in s for s in sources)  # parse._DIRECTIVE
    assert r"<@([UW][A-Z0-9_]+)>" in sources  # an inline re.findall in bot/incidents.py
    assert len(PATTERNS) >= 30


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_pattern_finishes_on_adversarial_input(name):
    pattern = PATTERNS[name]
    for text in _battery(pattern):
        whole = pattern.fullmatch(text)
        spans = [m.span() for m in pattern.finditer(text)]
        # finditer's matches never overlap and move forward: the scan really covered the text
        assert all(a <= b for a, b in spans) and all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))
        if whole is not None:
            assert whole.end() == len(text)
