"""Row layout: CREATE TABLE column orders that waste alignment padding in every row."""
from __future__ import annotations

from typing import Iterator

from ..nodes import rv_name
from ..state import State, Stmt
from . import Hit, rule

R = rule("layout")
RULES = (
    R(code="MG911", name="column-order-padding", severity="low",
      summary="CREATE TABLE lists its columns in an order that wastes alignment padding in every row.",
      why="PostgreSQL aligns each fixed-width value to its type's alignment (8 bytes for bigint, timestamptz, "
          "double precision; 4 for integer, date, real; 2 for smallint), so a narrow column before a wide one "
          "leaves unused bytes in every row, and rows are stored in multiples of 8 bytes. Changing the order "
          "later means rebuilding the table; at CREATE TABLE it is free.",
      fix="CREATE TABLE t (id bigint, n int, s smallint, flag boolean);\n"
          "-- 8-byte-aligned types first, then 4, 2 and 1; variable-length types (text, numeric, jsonb) last",
      bad="CREATE TABLE t (id bigint, flag boolean, n int, s smallint);",
      good="CREATE TABLE t (id bigint, n int, s smallint, flag boolean);", hazards=(79,)),
)

# pg_type (typlen, typalign in bytes) of the built-in fixed-width types; a test compares them with a server.
FIXED = {
    "bool": (1, 1), "char": (1, 1), "int2": (2, 2), "int4": (4, 4), "int8": (8, 8), "float4": (4, 4),
    "float8": (8, 8), "oid": (4, 4), "date": (4, 4), "time": (8, 8), "timetz": (12, 8), "timestamp": (8, 8),
    "timestamptz": (8, 8), "interval": (16, 8), "uuid": (16, 1), "money": (8, 8), "macaddr": (6, 4),
    "macaddr8": (8, 4), "pg_lsn": (8, 8), "point": (16, 8),
}
_WIDTHS = {**FIXED, **{alias: FIXED[name] for alias, name in (  # the parser gives int8 for bigint, and so on
    ("serial", "int4"), ("serial4", "int4"), ("bigserial", "int8"), ("serial8", "int8"), ("smallserial", "int2"),
    ("serial2", "int2"))}}
MIN_SAVING = 8  # bytes per row worth a finding (rows are stored in multiples of 8 bytes)
_SHOWN = 15  # column names listed in the suggested order

# check() reads neither the state nor the statement's transaction flags, so the engine may run it
# ahead of the in-order pass (in another process for big files).
STATELESS = True

# Statement types this family looks at (None: all).
TYPES: frozenset[str] | None = frozenset({"CreateStmt"})


def check(s: Stmt, st: State) -> Iterator[Hit]:
    n = s.node
    if n.get("inhRelations") or n.get("ofTypename") or n.get("partbound"):
        return  # inherited columns come first, in an order the statement does not show
    cols = []
    fixed = 0
    for elt in n.get("tableElts") or ():
        col = elt.get("ColumnDef")
        if col is not None:
            w = _width(col.get("typeName"))
            cols.append((col.get("colname") or "?", w))
            fixed += w is not None
        elif "TableLikeClause" in elt:
            return
    if fixed < 3:
        return  # two fixed-width columns pad at most 7 bytes
    pad, length = layout([w for _, w in cols])
    every = fixed == len(cols)
    if (_maxalign(length) - _maxalign(length - pad) if every else pad) < MIN_SAVING:
        return  # no order could save enough (the usual case: skip the sort)
    best = sorted((c for c in cols if c[1] is not None), key=lambda c: (-c[1][1], c[1][0] % c[1][1] != 0))
    best += [c for c in cols if c[1] is None]
    best_pad, best_length = layout([w for _, w in best])
    saving = _maxalign(length) - _maxalign(best_length) if every else pad - best_pad
    if saving < MIN_SAVING:
        return
    names = [name for name, _ in best]
    order = ", ".join(names[:_SHOWN]) + (f", … ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else "")
    yield Hit("MG911", f"Column order of {rv_name(n.get('relation'))} wastes ~{saving} bytes of alignment padding "
              f"per row; ordered 8-byte-aligned types first, then 4, 2, 1, variable-length last: {order}.")


def _width(tn: dict | None) -> tuple[int, int] | None:
    """(length, alignment) of a built-in fixed-width type; None for variable-length and unknown types."""
    if not tn or tn.get("arrayBounds") or tn.get("pct_type"):
        return None
    names = tn.get("names")
    if not names or len(names) > 2 or (len(names) == 2 and names[0]["String"]["sval"] != "pg_catalog"):
        return None
    return _WIDTHS.get(names[-1]["String"]["sval"])


def layout(widths: list[tuple[int, int] | None]) -> tuple[int, int]:
    """(alignment padding, data length) of a row whose columns have these (length, alignment) widths.

    None stands for a variable-length or unknown type: the offset after it is unknown, so the next
    fixed-width column is assumed to need no padding (the padding is then a lower bound) and the length
    covers the fixed-width columns only.

    >>> layout([(8, 8), (1, 1), (4, 4), (2, 2)])
    (3, 18)
    """
    off, mod, pad, length = 0, 8, 0, 0  # the offset is known modulo `mod`
    for w in widths:
        if w is None:
            off, mod = 0, 1
            continue
        size, align = w
        if mod >= align:
            p = -off % align
            pad += p
            off = (off + p + size) % mod
        else:
            mod, off = align, size % align
        length += size
    return pad, length + pad


def _maxalign(n: int) -> int:
    return (n + 7) & ~7
