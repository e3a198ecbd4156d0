"""The Supabase CLI's statement splitter, so `schema_migrations.statements` holds what `supabase db push` stores.

A port of supabase/cli `pkg/parser` (state.go: the tokenizer's states; token.go: Split and
SplitAndTrim), MIT-licensed, Copyright (c) 2021 Supabase, Inc. and contributors. The CLI does not
parse SQL: a small state machine finds the `;` that is outside quotes, dollar quotes, comments,
parentheses and `BEGIN ATOMIC … END` bodies, and cuts there. Comments and blank lines before a
statement stay attached to it; a comment after the last `;` is an element of its own. The CLI then
runs each element as its own query in one implicit transaction (pkg/migration/file.go ExecBatch)
and stores the list in `statements` (insertVersionSQL); `supabase migration fetch` writes the
files back from that column, joined with `;\\n`.

It walks runes over the UTF-8 bytes exactly as the Go code does (``data`` is the token so far),
so the quirks are the CLI's too: a backslash escapes the next character anywhere outside quotes,
``$`` followed by a non-tag character is not a quote, and so on.

    >>> split_and_trim("select 1; -- note\\nselect 2;\\n-- trailing\\n")
    ['select 1', '-- note\\nselect 2', '-- trailing']
"""
from __future__ import annotations

import unicodedata

BEGIN_ATOMIC = b"ATOMIC"
END_ATOMIC = b"END"

# Go's unicode.IsSpace: these in Latin-1, the Unicode White_Space property above it.
_LATIN1_SPACE = frozenset("\t\n\v\f\r \x85\xa0")


def _is_space(ch: str) -> bool:
    if ord(ch) < 0x100:
        return ch in _LATIN1_SPACE
    return ch.isspace()


def _is_letter(ch: str) -> bool:  # unicode.IsLetter: categories L*
    return unicodedata.category(ch).startswith("L")


def _is_digit(ch: str) -> bool:  # unicode.IsDigit: category Nd
    return unicodedata.category(ch) == "Nd"


def _is_identifier(ch: str) -> bool:
    return _is_letter(ch) or _is_digit(ch) or ch in "_$"


def _last_rune(data: bytes) -> str:
    """utf8.DecodeLastRune: the last character of ``data`` (U+FFFD for a broken sequence)."""
    for width in range(1, min(4, len(data)) + 1):
        try:
            return data[-width:].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return "\ufffd"


def _fold_equal(a: bytes, b: bytes) -> bool:
    return a.decode("utf-8", "replace").casefold() == b.decode("utf-8", "replace").casefold()


def _is_begin_atomic(data: bytes) -> bool:
    offset = len(data) - len(BEGIN_ATOMIC)
    if offset < 0 or not _fold_equal(data[offset:], BEGIN_ATOMIC):
        return False
    if offset > 0 and _is_identifier(_last_rune(data[:offset])):
        return False
    prefix = data[:offset].decode("utf-8", "replace")
    while prefix and _is_space(prefix[-1]):
        prefix = prefix[:-1]
    raw = prefix.encode("utf-8")
    offset = len(raw) - len(b"BEGIN")
    if offset < 0 or not _fold_equal(raw[offset:], b"BEGIN"):
        return False
    if offset == 0:
        return True
    return not _is_identifier(_last_rune(raw[:offset]))


class _State:
    def next(self, ch: str, data: bytes) -> _State | None:  # None: emit the token
        raise NotImplementedError


class _Ready(_State):
    def next(self, ch: str, data: bytes) -> _State | None:
        if ch == "$":
            return _Tag(len(data) - 1)
        if ch in "'\"":
            return _Quote(ch)
        if ch == "-":
            return _Comment()
        if ch == "/":
            return _Block()
        if ch == "\\":
            return _Escape()
        if ch == ";":
            return None
        if ch == "(":
            return _Atomic(self, b")")
        if ch in "cC" and _is_begin_atomic(data):
            return _Atomic(self, END_ATOMIC)
        return self


class _Comment(_State):
    def next(self, ch: str, data: bytes) -> _State | None:
        if ch == "-":
            return _Dollar(b"\n")  # no escapes in a line comment, as in a dollar quote
        return _Ready().next(ch, data)


class _Block(_State):
    def __init__(self) -> None:
        self.depth = 0

    def next(self, ch: str, data: bytes) -> _State | None:
        window = data[-2:]
        if window == b"/*":
            self.depth += 1
            return self
        if self.depth == 0:
            return _Ready().next(ch, data)
        if window == b"*/":
            self.depth -= 1
            if self.depth == 0:
                return _Ready()
        return self


class _Quote(_State):
    def __init__(self, delimiter: str) -> None:
        self.delimiter = delimiter
        self.escape = False

    def next(self, ch: str, data: bytes) -> _State | None:
        if self.escape:
            if ch == self.delimiter:  # a doubled quote stays inside
                self.escape = False
                return self
            return _Ready().next(ch, data)
        if ch == self.delimiter:
            self.escape = True
        return self


class _Dollar(_State):
    def __init__(self, delimiter: bytes) -> None:
        self.delimiter = delimiter

    def next(self, ch: str, data: bytes) -> _State | None:
        if data[len(data) - len(self.delimiter):] == self.delimiter:
            return _Ready()
        return self


class _Tag(_State):
    def __init__(self, offset: int) -> None:
        self.offset = offset

    def next(self, ch: str, data: bytes) -> _State | None:
        if ch == "$":
            return _Dollar(bytes(data[self.offset:]))
        if _is_letter(ch) or _is_digit(ch) or ch == "_":
            return self
        return _Ready().next(ch, data)


class _Escape(_State):
    def next(self, ch: str, data: bytes) -> _State | None:
        return _Ready()


class _Atomic(_State):
    def __init__(self, prev: _State, delimiter: bytes) -> None:
        self.prev = prev
        self.delimiter = delimiter

    def next(self, ch: str, data: bytes) -> _State | None:
        current = self.prev.next(ch, data)
        if current is not None:
            self.prev = current
        if isinstance(self.prev, _Ready):
            window = data[len(data) - len(self.delimiter):]
            if _fold_equal(window, self.delimiter):
                return _Ready()
        return self


def split(sql: str) -> list[str]:
    """parser.Split without transforms: every token as it is, comments and whitespace kept."""
    data = sql.encode("utf-8")  # a str is valid UTF-8, so each character is one Go rune
    tokens: list[str] = []
    state: _State = _Ready()
    start = end = 0
    for ch in sql:
        end += len(ch.encode("utf-8"))
        nxt = state.next(ch, data[start:end])
        if nxt is None:
            tokens.append(data[start:end].decode("utf-8"))
            start = end
            state = _Ready()
        else:
            state = nxt
    if start < len(data):
        tokens.append(data[start:].decode("utf-8"))
    return tokens


def _trim_space(text: str) -> str:
    lo, hi = 0, len(text)
    while lo < hi and _is_space(text[lo]):
        lo += 1
    while hi > lo and _is_space(text[hi - 1]):
        hi -= 1
    return text[lo:hi]


def split_and_trim(sql: str) -> list[str]:
    """parser.SplitAndTrim: each token with trailing `;` removed, then surrounding whitespace; empty ones dropped."""
    out = []
    for token in split(sql):
        trimmed = _trim_space(token.rstrip(";"))
        if trimmed:
            out.append(trimmed)
    return out
