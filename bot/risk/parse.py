"""Split SQL into parsed statements with pglast's JSON output, streaming, with 1-based positions."""
from __future__ import annotations

import json
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator

import orjson
from pglast import parser as _pg

from .fallback import COMMENTS, Trap, no_memory as _no_memory, per_statement as _per_statement, scanner_trap

_loads = orjson.loads

# Measured on a 5.5 MB file of 31k statements (pglast 8.8): parse_sql_json 0.40 s plus a JSON
# decode of 0.36 s with orjson (0.48 s with the json module), with the cyclic GC paused, against
# 3.7 s for parse_sql's Python AST objects. So each piece (about 1 MB, see _cuts) is parsed to
# JSON, and each statement's part of it decoded with orjson as the statement's turn comes.
_DIRECTIVE = re.compile(rb"--[ \t]*guardian:[ \t]*accept\b([^\n]*)", re.IGNORECASE)
_BECAUSE = re.compile(r"\bbecause\b", re.IGNORECASE)
_LEADING = re.compile(COMMENTS.encode())  # whitespace and comments before a statement (fallback.COMMENTS)


@dataclass(slots=True)
class Directive:
    """`-- guardian: accept CODE[, CODE] because <reason>` found in the SQL."""

    codes: tuple[str, ...]
    reason: str | None
    line: int
    offset: int


@dataclass(slots=True)
class RawStatement:
    index: int
    node_type: str
    node: dict
    start: int  # byte offset
    end: int
    line: int
    column: int
    text: str
    directives: list[Directive] | tuple = ()  # Attach gives a statement with directives its own list
    # 64 or more bytes in a row with no whitespace or double quote: a name may be too long (rules/design.py)
    long_word: bool = False
    # False for an INSERT, UPDATE or DELETE whose parse tree holds no table reference besides its target:
    # it reads no other table, which saves searching a big VALUES list for one (locks.describe)
    other_tables: bool = True
    # the string literals of a statement whose text was dropped to save memory (engine.Split.ahead)
    literals: set | None = None


@dataclass(slots=True)
class SyntaxProblem:
    line: int
    column: int
    message: str
    text: str
    piece_end: int = 0  # byte offset where the unparsable piece ends (its directives are skipped)
    too_complex: bool = False  # it parsed, but is nested too deeply to analyse (rule MG006), not a syntax error


TOO_DEEP = "too_deep"  # key of the placeholder _statements yields for a statement nested too deeply to decode


def too_complex(raw: RawStatement, why: str) -> SyntaxProblem:
    """A parsed statement the engine could not analyse (nested deeper than Python's recursion allows)."""
    return SyntaxProblem(raw.line, raw.column, why, raw.text[:200], raw.end, too_complex=True)


class Positions:
    """Byte offset -> (line, column), 1-based; column counts characters. Offsets must not go backwards much."""

    __slots__ = ("data", "_pos", "_line")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._pos = 0
        self._line = 1

    def at(self, offset: int) -> tuple[int, int]:
        data = self.data
        if offset < 0:
            offset = 0
        elif offset > len(data):
            offset = len(data)
        if offset >= self._pos:
            self._line += data.count(b"\n", self._pos, offset)
        else:
            self._line -= data.count(b"\n", offset, self._pos)
        self._pos = offset
        if offset == 0 or data[offset - 1] == 10:  # most statements start a line
            return self._line, 1
        line_start = data.rfind(b"\n", 0, offset) + 1
        prefix = data[line_start:offset]
        column = (len(prefix) if prefix.isascii() else len(prefix.decode("utf-8", "replace"))) + 1
        return self._line, column


def _directives(data: bytes, pos: Positions) -> list[Directive]:
    found = []
    if b"guardian" not in data:
        return found
    for m in _DIRECTIVE.finditer(data):
        body = m.group(1).decode("utf-8", "replace").strip()
        parts = _BECAUSE.split(body, maxsplit=1)
        codes = tuple(c for c in re.split(r"[\s,]+", parts[0].strip()) if c)
        reason = parts[1].strip() if len(parts) > 1 and parts[1].strip() else None
        line, _ = pos.at(m.start())
        found.append(Directive(codes, reason, line, m.start()))
    pos.at(0)
    return found


_STMT_START = '{"stmt":'
_DML_OPENINGS = ('{"InsertStmt"', '{"UpdateStmt"', '{"DeleteStmt"')


def _statements(js: str) -> Iterator[dict]:
    """The `stmts` of a parse_sql_json result, decoded one at a time, so that only one statement's tree
    is alive at once (a whole 1 MB piece decoded at once is ~150 MB of objects).

    Each statement's object starts with `{"stmt":`; inside a JSON string a quote is always escaped, so
    that text cannot occur there, and no other parse node has a `stmt` field. If a slice still does not
    decode, the rest is decoded whole, as it would have been."""
    starts = []
    at = js.find(_STMT_START)
    while at >= 0:
        starts.append(at)
        at = js.find(_STMT_START, at + 8)
    close = js.rfind("]")  # of "stmts": the text ends with ]}
    for k, a in enumerate(starts):
        b = starts[k + 1] - 1 if k + 1 < len(starts) else close  # less the comma between statements
        piece = js[a:b]
        try:
            item = _loads(piece)
        except ValueError:
            try:
                item = json.loads(piece)  # orjson refuses integers beyond 64 bits; the json module does not
            except RecursionError:  # nested deeper than either decoder goes (orjson stops at 1024 levels)
                yield _too_deep(piece)
                continue
            except ValueError:
                yield from json.loads(js).get("stmts", [])[k:]
                return
        if piece.startswith(_DML_OPENINGS, 8):  # after {"stmt":
            # The target is a plain "relation" field; any other table is a RangeVar node. Only a key is
            # followed by `:` (a string value never is), so this finds nodes, never SQL text.
            item["other_tables"] = '"RangeVar":' in piece
        yield item


def _too_deep(piece: str) -> dict:
    """The placeholder of a statement whose tree cannot be decoded: only where it is. Its position keys end
    the statement's object, and a key (followed by `:`) cannot occur inside a JSON string."""
    tail = piece[-80:]
    found = {}
    for key in ("stmt_location", "stmt_len"):
        at = tail.rfind(f'"{key}":')
        if at >= 0:
            digits = tail[at + len(key) + 3:].split(",")[0].split("}")[0]
            found[key] = int(digits) if digits.isdigit() else 0
    return {TOO_DEEP: True, **found}


CHUNK_CHARS = 1 << 20  # parse big files about 1 MB at a time: bounded parser output, same results


# Where to cut a big file: after a `;` that ends a line when the next line starts, at column 0, with a
# comment or a word that begins a migration statement (not BEGIN, DECLARE, END...: plpgsql bodies put
# those at column 0 and indent the rest). So a cut rarely lands inside a function body; one that does
# costs time, never a different result.
_CUT = re.compile(r";\n(?=--|(?:CREATE|ALTER|DROP|INSERT|UPDATE|DELETE|COMMENT|GRANT|REVOKE|TRUNCATE|SET|SELECT"
                  r"|WITH|DO|COPY|REFRESH|REINDEX|VACUUM|ANALYZE|CLUSTER|LOCK|CALL)\b)", re.IGNORECASE)


def _cut_after(sql: str, pos: int) -> int:
    """The offset just after the first good cut at or past `pos`, or -1 (the rest stays whole, unless
    it is very long: then any `;` ending a line will do)."""
    m = _CUT.search(sql, pos)
    if m is not None:
        return m.end()
    at = sql.find(";\n", pos) if len(sql) - pos > 8 * CHUNK_CHARS else -1
    return at + 2 if at >= 0 else -1


def _cuts(sql: str) -> list[tuple[int, int]]:
    """Pieces of about CHUNK_CHARS, each ending after a `;` at the end of a line (see _CUT)."""
    cuts, pos = [], 0
    while len(sql) - pos > 2 * CHUNK_CHARS:
        cut = _cut_after(sql, pos + CHUNK_CHARS)
        if cut < 0:
            break
        cuts.append((pos, cut))
        pos = cut
    cuts.append((pos, len(sql)))
    return cuts


def source(sql: str | bytes) -> tuple[str, tuple[int, int] | None, bytes]:
    """decode(), and the text in UTF-8: the input itself when that is what it already was (no encoding
    a big file back again)."""
    text, bad = decode(sql)
    if bad is None and isinstance(sql, bytes) and b"\x00" not in sql:
        return text, bad, sql
    return text, bad, text.encode("utf-8")


def decode(sql: str | bytes) -> tuple[str, tuple[int, int] | None]:
    """The text to analyse (NULs blanked) and where the first invalid UTF-8 byte is, if any."""
    if isinstance(sql, str):
        try:
            sql.encode("utf-8")
        except UnicodeEncodeError:
            sql = sql.encode("utf-8", "surrogateescape")
        else:
            return sql.replace("\x00", " ") if "\x00" in sql else sql, None
    try:
        return sql.decode("utf-8").replace("\x00", " "), None
    except UnicodeDecodeError as exc:
        line = sql.count(b"\n", 0, exc.start) + 1
        col = len(sql[sql.rfind(b"\n", 0, exc.start) + 1:exc.start].decode("utf-8", "replace")) + 1
        return sql.decode("utf-8", "replace").replace("\x00", " "), (line, col)


SHARE = 0.42  # of a big file for engine.Split's head, which also does the in-order pass over it


def split_pieces(text: str, share: float = SHARE) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The pieces of a big file for engine.Split: (head, tail), split after the first `;` ending a line
    past `share` of the text. The piece it falls in is parsed as two; both must parse on their own
    (strict), which proves the split is a statement boundary, and then the result is the same as
    with the sequential pieces."""
    cuts = _cuts(text)
    at = _cut_after(text, int(len(text) * share)) if len(cuts) > 1 else -1
    at = at if at >= 0 else len(text)
    return [(a, min(b, at)) for a, b in cuts if a < at], [(max(a, at), b) for a, b in cuts if b > at]


PREPARSE_THREAD = "guardian-preparse"


class Preparse:
    """parse_sql_json of the given pieces, in order, on a helper thread started now (libpg_query
    releases the GIL, so this runs while the caller does other work, e.g. imports)."""

    def __init__(self, text: str, cuts: list[tuple[int, int]]) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=PREPARSE_THREAD)
        self.futures = {cut: self.pool.submit(_pg.parse_sql_json, text[cut[0]:cut[1]]) for cut in cuts}
        self.pool.shutdown(wait=False)  # the worker ends once the queue is done


class NeedsWhole(Exception):
    """A piece of a strict range failed to parse: only the sequential parse of the rest gives the result."""


def _chunks(sql: str, cuts: list[tuple[int, int]] | None = None, strict: int = 0,
            parsed: dict | None = None) -> Iterator[tuple[str, int, str | _pg.ParseError | Trap]]:
    """Yield (piece, byte base, JSON or error) covering the file (or the pieces `cuts` of it) in order.

    Small files are parsed whole. Big ones are cut after a `;` at the end of a line roughly every
    CHUNK_CHARS, and the next piece is parsed on a helper thread (libpg_query releases the GIL)
    while this one is analysed. If a cut lands inside a string or body the piece fails to parse
    and the rest of the file is parsed whole instead: a bad cut costs time, never a different result.
    A failure in one of the first `strict` pieces raises NeedsWhole instead (engine.Split: those
    pieces are not the sequential ones, or the rest of the file is not this range's to parse).
    `parsed` maps pieces already submitted for parsing (Preparse) to their futures.
    """
    if cuts is None:
        cuts = _cuts(sql)
    if len(cuts) == 1 and cuts[0] == (0, len(sql)):
        yield from _rest(sql, 0)
        return
    if scanner_trap(sql) is not None:  # the trap is parsed statement by statement, never as a piece
        if strict:
            raise NeedsWhole()
        yield from _per_statement(sql[cuts[0][0]:], len(sql[:cuts[0][0]].encode("utf-8")))
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = deque()
        pending = iter(cuts)

        def submit() -> None:
            cut = next(pending, None)
            if cut is not None:
                piece = sql[cut[0]:cut[1]]
                future = parsed.pop(cut, None) if parsed else None  # its JSON is freed once used
                ahead.append((cut[0], piece, future or pool.submit(_pg.parse_sql_json, piece)))

        submit()
        byte_base = len(sql[:cuts[0][0]].encode("utf-8"))
        done = 0
        while ahead:
            start, piece, future = ahead.popleft()
            try:
                js = future.result()
            except _pg.ParseError as exc:
                _no_memory(exc)
                for _, _, other in ahead:
                    other.cancel()
                if done < strict:
                    raise NeedsWhole() from None
                yield from _rest(sql[start:], byte_base)
                return
            submit()
            done += 1
            yield piece, byte_base, js
            byte_base += len(piece.encode("utf-8"))


def _rest(sql: str, byte_base: int) -> Iterator[tuple[str, int, str | _pg.ParseError | Trap]]:
    if scanner_trap(sql) is not None:
        yield from _per_statement(sql, byte_base)
        return
    try:
        js = _pg.parse_sql_json(sql)
    except _pg.ParseError as exc:
        _no_memory(exc)
        yield from _per_statement(sql, byte_base)
    else:
        yield sql, byte_base, js


@dataclass(frozen=True, slots=True)
class Piece:
    """One statement of a script as it is run: the engine's statement (same index, line, column and span),
    its text without the comments before it and without the final `;`."""

    index: int  # the engine's statement index (StatementInfo.index, Finding.statement)
    text: str
    line: int  # 1-based, of the statement's first character (comments before it are not part of it)
    node_type: str | None  # e.g. "IndexStmt"; None when the script did not parse
    node: dict | None = field(default=None, repr=False)  # the parse tree (pglast JSON), None when it did not parse
    start: int = 0  # byte offsets of the statement in the script (UTF-8)
    end: int = 0
    column: int = 1  # 1-based, in characters


def split_statements(sql: str | bytes) -> list[Piece]:
    """The statements of ``sql``, from the parse the engine analyses (items(): the same cuts of a big file, the
    same numbering), so a piece's index is the statement index of the file's Report. A script with a syntax
    error, or a statement too complex to analyse, comes back as one piece with node_type None: it runs whole.

    >>> [(p.index, p.text, p.line) for p in split_statements("select 1; -- c\\nselect 2;")]
    [(0, 'select 1', 1), (1, 'select 2', 2)]
    """
    text, _, data = source(sql)
    pieces: list[Piece] = []
    for item in items(text, data, Positions(data), None):
        if isinstance(item, SyntaxProblem):
            return _unparsed(data)
        body = item.text
        while body.endswith(";"):
            body = body[:-1].rstrip()
        pieces.append(Piece(item.index, body, item.line, item.node_type, item.node, item.start, item.end, item.column))
    return pieces


def _unparsed(data: bytes) -> list[Piece]:
    """The one piece of a script that does not parse: all of it, surrounding blanks and final `;`s trimmed."""
    body = data.strip()
    while body.endswith(b";"):
        body = body[:-1].rstrip()
    if not body:
        return []
    start = data.find(body)
    line, column = Positions(data).at(start)
    return [Piece(0, body.decode("utf-8", "replace"), line, None, None, start, start + len(body), column)]


def parse(sql: str, data: bytes | None = None) -> Iterator[RawStatement | SyntaxProblem]:
    """Yield each statement (or syntax problem) in file order (`data`: sql in UTF-8, if at hand).

    >>> [s.node_type for s in parse("BEGIN; SELECT 1;")]
    ['TransactionStmt', 'SelectStmt']
    """
    data = sql.encode("utf-8") if data is None else data
    pos = Positions(data)
    attach = Attach(data, _directives(data, pos))
    for item in items(sql, data, pos, None):
        attach(item)
        yield item


class Attach:
    """Hands the `guardian: accept` directives to the statements they belong to, walking in file order."""

    __slots__ = ("data", "directives", "i")

    def __init__(self, data: bytes, directives: list[Directive], i: int = 0) -> None:
        self.data, self.directives, self.i = data, directives, i

    def __call__(self, item: RawStatement | SyntaxProblem) -> None:
        directives = self.directives
        d_i, n = self.i, len(directives)
        if d_i >= n:
            return
        if isinstance(item, SyntaxProblem):
            while d_i < n and directives[d_i].offset < item.piece_end:
                d_i += 1
            self.i = d_i
            return
        end, data = item.end, self.data
        first = d_i
        # a directive belongs to the statement it precedes or sits inside ...
        while d_i < n and directives[d_i].offset < end:
            d_i += 1
        # ... or to the one whose line it ends: `ALTER ...; -- guardian: accept X because y`
        while d_i < n and _same_line(data, end, directives[d_i].offset):
            d_i += 1
        if d_i > first:
            item.directives = [*item.directives, *directives[first:d_i]]
        self.i = d_i


def directives_of(data: bytes) -> list[Directive]:
    return _directives(data, Positions(data))


def items(sql: str, data: bytes, pos: Positions, cuts: list[tuple[int, int]] | None,
          strict: int = 0, parsed: dict | None = None) -> Iterator[RawStatement | SyntaxProblem]:
    """The statements and syntax problems of `sql` (or of its pieces `cuts`), without directives;
    statement indexes count from 0 within what is parsed here."""
    index = 0
    for piece, byte_base, js in _chunks(sql, cuts, strict, parsed):
        piece_end = len(data) if piece is sql else byte_base + len(piece.encode("utf-8"))
        if piece_end > len(data):  # pieces are slices of the text, so this only guards bad offsets
            piece_end = len(data)
        words = data[byte_base:piece_end].translate(_WORD_BYTES)  # one C pass per piece, not per statement
        long_words = _LONG_WORD in words
        if isinstance(js, Trap):
            line, column = pos.at(byte_base + len(piece[:js.offset].encode("utf-8")))
            yield SyntaxProblem(line, column, js.message, piece.strip()[:200], piece_end, too_complex=True)
            continue
        if isinstance(js, _pg.ParseError):
            loc = js.args[1] if len(js.args) > 1 and isinstance(js.args[1], int) else 0
            loc = max(0, min(loc, len(piece)))
            line, column = pos.at(byte_base + len(piece[:loc].encode("utf-8")))
            yield SyntaxProblem(line, column, str(js.args[0]), piece.strip()[:200], piece_end)
            continue
        for item in _statements(js):
            start = byte_base + item.get("stmt_location", 0)
            length = item.get("stmt_len")
            end = start + length if length else piece_end
            m = _LEADING.match(data, start, end)
            if m:
                start = m.end()
            line, column = pos.at(start)
            if TOO_DEEP in item:
                yield SyntaxProblem(line, column, DEEP_MESSAGE, data[start:end].decode("utf-8", "replace").strip()[:200],
                                    end, too_complex=True)
                continue
            stmt = item["stmt"]
            node_type = next(iter(stmt))
            raw = RawStatement(index, node_type, stmt[node_type], start, end, line, column,
                               data[start:end].decode("utf-8", "replace").strip())
            if long_words:
                raw.long_word = words.find(_LONG_WORD, start - byte_base, end - byte_base) >= 0
            if item.get("other_tables") is False:
                raw.other_tables = False
            yield raw
            index += 1


DEEP_MESSAGE = "its parse tree is nested more than about 1,000 levels deep"


# bytes.translate maps whitespace and `"` to a space and every other byte to `a`; a run of 64 `a`s is
# then a candidate for a name longer than PostgreSQL's 63 bytes (characters are >= 1 byte each).
_WORD_BYTES = bytes(32 if chr(b) in ' \t\n\r\f\v"' else 97 for b in range(256))
_LONG_WORD = b"a" * 64


def _same_line(data: bytes, a: int, b: int) -> bool:
    return b >= a and data.find(b"\n", a, b) < 0
