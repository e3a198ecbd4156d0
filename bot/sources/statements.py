"""Splitting a migration script into statements with PostgreSQL's own parser (pglast), with positions."""
from __future__ import annotations

import json
from dataclasses import dataclass

from pglast import parser as _pg


@dataclass(frozen=True, slots=True)
class Piece:
    """One statement: its text (surrounding whitespace, comments before it and the final `;` trimmed), 1-based line."""

    index: int
    text: str
    line: int
    node_type: str | None  # e.g. "IndexStmt"; None when the script did not parse
    node: dict | None = None  # the statement's parse tree (pglast JSON), None when it did not parse


def split_statements(sql: str) -> list[Piece]:
    """Statements of ``sql``; a script that does not parse comes back as one piece with node_type None.

    >>> [p.text for p in split_statements("select 1; -- c\\nselect 2;")]
    ['select 1', 'select 2']
    """
    data = sql.encode("utf-8")
    try:
        tree = json.loads(_pg.parse_sql_json(sql))
    except _pg.ParseError:
        text = sql.strip().rstrip(";").strip()
        return [Piece(0, text, 1, None)] if text else []
    pieces: list[Piece] = []
    for raw in tree.get("stmts", []):
        start = raw.get("stmt_location", 0)
        length = raw.get("stmt_len", 0)
        chunk = data[start:start + length] if length else data[start:]
        text = chunk.decode("utf-8").strip()
        while text.endswith(";"):
            text = text[:-1].rstrip()
        if not text:
            continue
        lead = len(chunk) - len(chunk.lstrip())
        line = data[: start + lead].count(b"\n") + 1
        node_type = next(iter(raw.get("stmt", {})), None)
        node = raw["stmt"][node_type] if node_type else None
        pieces.append(Piece(len(pieces), text, line, node_type, node))
    return pieces
