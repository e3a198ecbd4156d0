"""Statement by statement, for a file that does not parse whole: the fallback splitter, comment-only
pieces (PostgreSQL's comments nest) and runs that PostgreSQL's scanner reads in quadratic time."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

from pglast import parser as _pg

# Whitespace and comments (before a statement, or all of a piece). Each alternative starts with its own
# character and has one way to match (one whitespace character, a `--` comment to the end of its line, a
# `/* */` comment to its first `*/`), so a failed fullmatch backtracks in linear time: the former
# `(?:\s+|...)*` could split a run of blanks, or stretch a comment to a later `*/`, in 2**n ways (an
# 80-byte file took 35 s).
COMMENTS = r"(?:\s|--[^\n]*(?![^\n])|/\*(?:[^*]|\*(?!/))*\*/)*"


def per_statement(sql: str, byte_base: int) -> Iterator[tuple[str, int, str | _pg.ParseError | Trap]]:
    """The text does not parse: parse statement by statement so the others are still analysed."""
    char_pos = 0
    for start, stop in _split(sql):
        piece = sql[start:stop]
        body = piece[:-1] if piece.endswith(";") else piece  # a lone `;` is no statement: not worth a parse
        trap = scanner_trap(piece)
        # Comments only: nothing to parse, unless they nest and do not close (`/* /* */` is unterminated)
        if trap is None and (not body.strip() or (_ONLY_COMMENTS.fullmatch(body) and _comments_close(body))):
            continue
        byte_base += len(sql[char_pos:start].encode("utf-8"))
        char_pos = start
        if trap is not None:
            yield piece, byte_base, trap
            continue
        try:
            yield piece, byte_base, _pg.parse_sql_json(piece)
        except _pg.ParseError as exc:
            no_memory(exc)
            yield piece, byte_base, exc


def no_memory(exc: Exception) -> None:
    """libpg_query reports running out of memory as a parse error: it is no finding about the SQL."""
    if str(exc.args[0] if exc.args else "").startswith("out of memory"):
        raise MemoryError(f"libpg_query: {exc.args[0]}") from exc


def _comments_close(text: str) -> bool:
    """Whether text made of blanks and comments (it matched _ONLY_COMMENTS) leaves no block comment open
    when comments nest as PostgreSQL nests them: `/* /* */ */` closes, `/* /* */` does not."""
    depth, at, end = 0, 0, len(text)
    ahead = {"/*": -1, "*/": -1, "--": -1}  # the next occurrence of each at or after `at`, found once

    def next_at(token: str) -> int:
        if ahead[token] < at:
            found = text.find(token, at)
            ahead[token] = found if found >= 0 else end + 1
        return ahead[token]

    while at < end:
        opens, closes = next_at("/*"), next_at("*/")
        if depth == 0:
            dash = next_at("--")
            if not text[at:min(dash, opens, end)].isspace() and at < min(dash, opens, end):
                return False  # something other than blanks between comments: let the parser say what
            if dash < opens:  # a line comment, up to its end of line
                newline = text.find("\n", dash)
                at = end if newline < 0 else newline + 1
                continue
            if opens > end:
                return True
            depth, at = 1, opens + 2
        elif closes > end:
            return False
        elif opens < closes:
            depth, at = depth + 1, opens + 2
        else:
            depth, at = depth - 1, closes + 2
    return depth == 0


# PostgreSQL's scanner (libpg_query's too) reads `/*` and the operator characters after it as one token,
# then backs up to the `/*`: every `/*` inside a long run of operator characters re-reads the rest of the
# run, so `/**/` 20,000 times (80 KB) takes 4 s to scan. Such a run makes its statement too complex to
# analyse (MG006) instead of being parsed. The lookbehind starts a match only where a run starts: linear.
_OP_RUN = re.compile(r"(?<![~!@#^&|`?+\-*/%<>=])[~!@#^&|`?+\-*/%<>=]{1000,}")
_TRAP_COST = 5_000_000  # comment openers in one run times its length: ~20 ms of scanning
# The pre-check for _OP_RUN: bytes.translate maps the operator characters to 1 and every other byte to 0
# (a character outside ASCII encodes to bytes >= 0x80, none of them an operator), so a run of 1,000
# operator characters is a run of 1,000 ones, which bytes.find looks for in C. On a 5.5 MB file that
# holds none (nearly every file): ~12 ms instead of the regex's ~150 ms, which tries every position.
_OP_BYTES = bytes(1 if chr(b) in "~!@#^&|`?+-*/%<>=" else 0 for b in range(256))
_OP_RUN_BYTES = b"\x01" * 1000


@dataclass(slots=True)
class Trap:
    """Where a piece holds a run of operator characters the scanner would take quadratic time over."""

    offset: int  # in characters, within the piece
    message: str


def scanner_trap(sql: str) -> Trap | None:
    """The first run of operator characters in `sql` that PostgreSQL's scanner reads in quadratic time."""
    if len(sql) < 1000 or "/*" not in sql:
        return None
    if sql.encode("utf-8", "surrogatepass").translate(_OP_BYTES).find(_OP_RUN_BYTES) < 0:
        return None  # no run of 1,000 operator characters: _OP_RUN cannot match
    for m in _OP_RUN.finditer(sql):
        run = m.group()
        openers = run.count("/*")
        if openers * len(run) > _TRAP_COST:
            return Trap(m.start(), f"a run of {len(run):,} operator characters holding {openers:,} comment "
                                   "openers (/*), which PostgreSQL's scanner reads in quadratic time")
    return None


# Fallback splitter used only when the file does not parse: top-level `;` outside quotes,
# dollar quotes and comments, so every other statement still gets analysed.
# `$$` bodies get their own branch: a backreference to a group that did not take part never matches,
# so one `$tag?$` pattern would read everything after an untagged `$$` as one quoted body.
_SPLIT_TOKENS = re.compile(
    r"(?<![\w$])[Ee]'(?:[^'\\]|\\.|'')*'?|'(?:[^']|'')*'?|\"(?:[^\"]|\"\")*\"?|--[^\n]*|/\*.*?(?:\*/|\Z)"
    r"|\$\$.*?(?:\$\$|\Z)|\$([A-Za-z_]\w*)\$.*?(?:\$\1\$|\Z)|;",
    re.DOTALL,
)
_ONLY_COMMENTS = re.compile(COMMENTS)


def _split(sql: str) -> Iterator[tuple[int, int]]:
    start = 0
    for m in _SPLIT_TOKENS.finditer(sql):
        if m.group() == ";":
            yield start, m.end()
            start = m.end()
    if sql[start:].strip():
        yield start, len(sql)
