"""Does a table's validated CHECK prove a partition bound (so ATTACH PARTITION skips its scan)?

PostgreSQL skips the scan when the table's constraints imply the partition constraint: for a range
partition `lo <= key < hi` and `key IS NOT NULL`, for a list partition `key IN (...)` (and NOT NULL unless
the list holds NULL). Observed on PostgreSQL 15 (seq_scan of the attached table): CHECK (id >= 100 AND
id < 200) on a NOT NULL column skips it, as do two CHECKs holding one side each; a wider CHECK, one side
only, a NOT VALID CHECK or a nullable column without `IS NOT NULL` scan. Usage::

    proves_bound(bound, "RANGE (id)", ["CHECK (((id >= 100) AND (id < 200)))"], key_not_null=True)

The DEFAULT partition's scan (a new partition, PARTITION OF or ATTACH) is skipped the other way round: when
its validated CHECKs put every row outside the new range (`excludes_bound`).
"""
from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation

from pglast import parser

from .nodes import const_value, strings

_KEY = re.compile(r"(RANGE|LIST) \(\"?([A-Za-z_][A-Za-z0-9_$]*)\"?\)", re.IGNORECASE)
# a date or timestamp literal, with a time zone offset of zero or none (others are left as strings)
_WHEN = re.compile(r"(\d{4})-(\d\d)-(\d\d)(?:[ T](\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,6}))?)?)?(?:\+00(?::?00)?|Z)?")
_FLIP = {">=": "<=", ">": "<", "<=": ">=", "<": ">", "=": "="}


def proves_bound(bound: dict, partition_key: str | None, checks: list[str], key_not_null: bool) -> bool:
    """bound: the statement's PartitionBoundSpec; partition_key: the parent's, e.g. "RANGE (id)" (one plain
    column; others are never proven); checks: the attached table's validated CHECK definitions."""
    key = key_column(partition_key)
    if key is None or bound.get("is_default"):
        return False
    facts = _Facts()
    for definition in checks:
        facts.read(_expression(definition), key)
    if bound.get("strategy") == "r":
        return (key_not_null or facts.not_null) and _lower_ok(bound.get("lowerdatums"), facts) \
            and _upper_ok(bound.get("upperdatums"), facts)
    if bound.get("strategy") == "l":
        values = [_value(d) for d in bound.get("listdatums") or ()]
        allowed = {v for v in values if v is not None}
        if any(v is None for v in values) or facts.values is None or not allowed:
            return False  # a NULL in the list or no IN/= check: leave it to the scan
        return (key_not_null or facts.not_null) and facts.values <= allowed
    return False


def excludes_bound(bound: dict, partition_key: str | None, checks: list[str]) -> bool:
    """Whether the DEFAULT partition's validated CHECKs keep every row out of a new range partition's bound, so
    PostgreSQL skips its scan. Observed on PostgreSQL 15 (seq_scan of the DEFAULT partition, PARTITION OF and
    ATTACH alike, bound [lo, hi)): key >= hi, key > v with v >= hi, key < lo, key <= v with v < lo, and an OR
    each arm of which does, skip it; key > hi - 1 (no discreteness) and key <= lo scan."""
    key = key_column(partition_key)
    if key is None or bound.get("strategy") != "r":
        return False
    lower, upper = bound.get("lowerdatums") or (), bound.get("upperdatums") or ()
    lo = None if len(lower) != 1 or _unbounded(lower, "minvalue") else _value(lower[0])
    hi = None if len(upper) != 1 or _unbounded(upper, "maxvalue") else _value(upper[0])
    return any(_outside(_expression(definition), key, lo, hi) for definition in checks)


def _outside(node: dict | None, key: str, lo, hi) -> bool:
    """Whether the expression holding implies key < lo or key >= hi."""
    if not node:
        return False
    if "BoolExpr" in node:
        args = node["BoolExpr"].get("args") or ()
        op = node["BoolExpr"].get("boolop")
        if op == "AND_EXPR":
            return any(_outside(a, key, lo, hi) for a in args)
        return op == "OR_EXPR" and bool(args) and all(_outside(a, key, lo, hi) for a in args)
    e = node.get("A_Expr")
    op = (strings(e.get("name")) or ["?"])[-1] if e else None
    if not e or e.get("kind") != "AEXPR_OP" or op not in _FLIP:
        return False
    lhs, rhs = e.get("lexpr"), e.get("rexpr")
    if _is_key(rhs, key):
        lhs, rhs, op = rhs, lhs, _FLIP[op]
    v = _value(rhs)
    if not _is_key(lhs, key) or v is None:
        return False
    above = hi is not None and op in (">=", ">", "=") and _le(hi, v)
    below = lo is not None and (op == "<" and _le(v, lo) or op in ("<=", "=") and _lt(v, lo))
    return above or below


def key_column(partition_key: str | None) -> str | None:
    """The column of a one-column RANGE or LIST key ("RANGE (id)" -> "id"), else None."""
    m = _KEY.fullmatch(partition_key or "")
    return m.group(2) if m else None


class _Facts:
    """What the conjuncts of the CHECKs say about the key: bounds, allowed values, NOT NULL."""

    def __init__(self) -> None:
        self.lower: list[tuple[str, object]] = []  # (">=" or ">", value)
        self.upper: list[tuple[str, object]] = []  # ("<" or "<=", value)
        self.values: set | None = None
        self.not_null = False

    def read(self, node: dict | None, key: str) -> None:
        if not node:
            return
        if "BoolExpr" in node:
            if node["BoolExpr"].get("boolop") == "AND_EXPR":
                for arg in node["BoolExpr"].get("args") or ():
                    self.read(arg, key)
            return
        if "NullTest" in node:
            t = node["NullTest"]
            self.not_null |= t.get("nulltesttype") == "IS_NOT_NULL" and _is_key(t.get("arg"), key)
            return
        e = node.get("A_Expr")
        if not e:
            return
        op = (strings(e.get("name")) or ["?"])[-1]
        lhs, rhs = e.get("lexpr"), e.get("rexpr")
        if e.get("kind") in ("AEXPR_OP_ANY", "AEXPR_IN") and op == "=" and _is_key(lhs, key):
            items = (rhs or {}).get("A_ArrayExpr", {}).get("elements") if e["kind"] == "AEXPR_OP_ANY" else \
                (rhs or {}).get("List", {}).get("items")
            self._allow({_value(i) for i in items or ()})
            return
        if e.get("kind") != "AEXPR_OP" or op not in _FLIP:
            return
        if _is_key(rhs, key):
            lhs, rhs, op = rhs, lhs, _FLIP[op]
        v = _value(rhs)
        if not _is_key(lhs, key) or v is None:
            return
        if op in (">=", ">", "="):
            self.lower.append((">=" if op == "=" else op, v))
        if op in ("<", "<=", "="):
            self.upper.append(("<=" if op == "=" else op, v))
        if op == "=":
            self._allow({v})

    def _allow(self, values: set) -> None:
        if None in values:
            return
        self.values = values if self.values is None else self.values & values


def _lower_ok(datums: list | None, facts: _Facts) -> bool:
    if _unbounded(datums, "minvalue"):
        return True
    bound = _value(datums[0])
    return any(_le(bound, v) for _, v in facts.lower)  # key >= v or key > v, with v >= the bound


def _upper_ok(datums: list | None, facts: _Facts) -> bool:
    if _unbounded(datums, "maxvalue"):
        return True
    bound = _value(datums[0])
    return any(_le(v, bound) if op == "<" else _lt(v, bound) for op, v in facts.upper)


def _unbounded(datums: list | None, word: str) -> bool:
    if not datums or len(datums) != 1:
        return False
    ref = datums[0].get("ColumnRef")
    return bool(ref) and strings(ref.get("fields")) == [word]


def _is_key(node: dict | None, key: str) -> bool:
    ref = (node or {}).get("ColumnRef")
    return bool(ref) and (strings(ref.get("fields")) or ["?"])[-1] == key


def _expression(definition: str) -> dict | None:
    """The expression of "CHECK (...)" (pg_get_constraintdef) as a parse-tree node."""
    text = definition.strip()
    if not text.upper().startswith("CHECK"):
        return None
    text = re.sub(r"\s+NOT VALID$", "", text[5:].strip(), flags=re.IGNORECASE)
    try:
        tree = json.loads(parser.parse_sql_json(f"SELECT WHERE {text}"))
    except parser.ParseError:
        return None
    return tree["stmts"][0]["stmt"]["SelectStmt"].get("whereClause")


def _value(node: dict | None):
    """A constant as a comparable value: Decimal for numbers, a (year, ..., microsecond) tuple for dates and
    timestamps in UTC or without a zone, else the string; None for anything else (a NULL, an expression)."""
    if not node:
        return None
    if "TypeCast" in node:
        node = node["TypeCast"].get("arg")
    if "A_Expr" in node and (strings(node["A_Expr"].get("name")) or [""])[-1] == "-" and not node["A_Expr"].get("lexpr"):
        v = _value(node["A_Expr"].get("rexpr"))
        return -v if isinstance(v, Decimal) else None
    if "A_Const" not in node or node["A_Const"].get("isnull"):
        return None
    v = const_value(node)
    if isinstance(v, bool):
        return None
    try:
        number = Decimal(str(v))
    except InvalidOperation:
        number = None
    if number is not None and number.is_finite():
        return number
    when = _WHEN.fullmatch(v)
    if when is None:
        return v
    y, mo, d, h, mi, sec, frac = when.groups()
    return (int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(sec or 0), int((frac or "0").ljust(6, "0")))


def _le(a, b) -> bool:
    return type(a) is type(b) and a <= b


def _lt(a, b) -> bool:
    return type(a) is type(b) and a < b
