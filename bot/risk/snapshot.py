"""The schema snapshot JSON (`guardian snapshot`, `guardian lint --context`): read and checked into Context values.

A snapshot is what `bot.pg.introspect.TargetFacts.to_snapshot()` writes; an older hand-written context
(`{"tables": {"users": {"rows": 5e7}}}`) is a snapshot with most keys left out. Usage::

    ctx = Context(**context_values(json.loads(text)))
"""
from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any

from .models import Column, Constraint, Index, TableStats, TypeFacts

SNAPSHOT_VERSION = 1
# How Guardian runs the files (a snapshot written with --env): Context fields of the same names
RUNNER_KEYS = ("runner", "runner_lock_timeout", "runner_statement_timeout")
_TOP = ("snapshot", "pg_version", "pg_minor", "timezone", *RUNNER_KEYS, "tables", "types", "functions")
_VOLATILITIES = ("immutable", "stable", "volatile")
_KINDS = {Constraint: ("check", "foreign_key", "primary_key", "unique", "exclusion"), TypeFacts: ("enum", "domain")}


def context_values(data: Any) -> dict[str, Any]:
    """Context keyword arguments from a snapshot document; ValueError names the bad key and what it expects.
    A table or type with `"visible": true` (keyed `schema.name`) is also reachable by its plain name."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object like {{\"tables\": {{\"users\": {{\"rows\": 50000000}}}}}}, "
                         f"got {type(data).__name__}")
    unknown = set(data) - set(_TOP)
    if unknown:
        raise ValueError(f"unknown key {sorted(unknown)[0]!r} ({', '.join(_TOP)})")
    snapshot = data.get("snapshot", SNAPSHOT_VERSION)
    if snapshot != SNAPSHOT_VERSION:
        raise ValueError(f"snapshot: this guardian reads version {SNAPSHOT_VERSION}, the file is {snapshot!r}; "
                         "write it again with this guardian's `guardian snapshot`")
    values: dict[str, Any] = {}
    for key, low, high in (("pg_version", 9, 30), ("pg_minor", 0, 9999)):
        if key in data:
            v = data[key]
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
                raise ValueError(f"{key}: expected a whole number from {low} to {high}, got {v!r}")
            values[key] = v
    if data.get("timezone") is not None:
        values["timezone"] = _str(data["timezone"], "timezone")
    if "runner" in data:
        if data["runner"] not in ("guardian", "prisma"):
            raise ValueError(f"runner: expected \"guardian\" or \"prisma\", got {data['runner']!r}")
        values["runner"] = data["runner"]
    for key in RUNNER_KEYS[1:]:
        if key in data:
            values[key] = _field("bool", data[key], key)
    values["tables"] = _named(data.get("tables", {}), "tables", table_stats)
    values["types"] = _named(data.get("types", {}), "types", lambda v: _value(TypeFacts, v, ""))
    functions = data.get("functions", {})
    if not isinstance(functions, dict):
        raise ValueError("functions: expected an object of function name -> \"immutable\", \"stable\" or \"volatile\"")
    bad = [k for k, v in functions.items() if v not in _VOLATILITIES]
    if bad:
        raise ValueError(f"functions.{bad[0]}: expected \"immutable\", \"stable\" or \"volatile\"")
    values["functions"] = dict(functions)
    return values


def table_stats(data: Any) -> TableStats:
    """One table's JSON; `columns` maps a column to its type, or to an object with its type and facts
    (`{"email": {"type": "varchar(50)", "not_null": true}}`), split into columns and column_facts."""
    if not isinstance(data, dict):
        raise ValueError(f"expected an object like {{\"rows\": 50000000}}, got {data!r}")
    data = dict(data)
    cols = data.get("columns", {})
    if not isinstance(cols, dict) or not all(isinstance(k, str) and isinstance(v, (str, dict))
                                             for k, v in cols.items()):
        raise ValueError("columns: expected an object of column name -> type, e.g. {\"email\": \"varchar(50)\"}")
    types, facts = {}, dict(data.get("column_facts") or {})
    for name, v in cols.items():
        if isinstance(v, dict):
            v = dict(v)
            if not isinstance(v.get("type"), str):
                raise ValueError(f"columns.{name}.type: expected the column's type, e.g. \"varchar(50)\"")
            types[name] = v.pop("type")
            facts[name] = v
        else:
            types[name] = v
    data["columns"] = types
    data["column_facts"] = facts
    return _value(TableStats, data, "")


def _named(data: Any, where: str, read) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object of name -> object")
    out: dict[str, Any] = {}
    for name, v in data.items():
        visible = isinstance(v, dict) and v.get("visible", False)
        if isinstance(v, dict) and "visible" in v:
            if not isinstance(visible, bool):
                raise ValueError(f"{where}.{name}.visible: expected true or false, got {visible!r}")
            v = {k: x for k, x in v.items() if k != "visible"}
        try:
            out[name] = read(v)
        except ValueError as exc:
            raise ValueError(f"{where}.{name}: {exc}") from None
        if visible:
            out.setdefault(name.rsplit(".", 1)[-1], out[name])
    return out


def _value(cls, data: Any, where: str):
    """A frozen value from JSON, each given field checked against its annotation."""
    if not isinstance(data, dict):
        raise ValueError(f"{where + ': ' if where else ''}expected an object, got {data!r}")
    kinds, required = _fields(cls)
    if not data.keys() <= kinds.keys():
        unknown = sorted(set(data) - set(kinds))[0]
        raise ValueError(f"{where + ': ' if where else ''}unknown key {unknown!r} ({', '.join(kinds)})")
    for name in required:
        if name not in data:
            raise ValueError(f"{where + '.' if where else ''}{name}: missing")
    values = {name: _field(kinds[name], v, f"{where}.{name}" if where else name) for name, v in data.items()}
    if cls in _KINDS and values["kind"] not in _KINDS[cls]:
        raise ValueError(f"{where + '.' if where else ''}kind: expected one of {', '.join(_KINDS[cls])}, "
                         f"got {values['kind']!r}")
    return cls(**values)


_FIELDS: dict[type, tuple[dict[str, str], tuple[str, ...]]] = {}


def _fields(cls) -> tuple[dict[str, str], tuple[str, ...]]:
    """(field -> annotation, required fields) of a model, looked up once per class."""
    found = _FIELDS.get(cls)
    if found is None:
        found = _FIELDS[cls] = ({f.name: str(f.type) for f in fields(cls)}, tuple(
            f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING))
    return found


def _field(kind: str, v: Any, key: str) -> Any:
    if v is None and kind.endswith(" | None"):
        return None
    read = _READERS.get(kind.removesuffix(" | None"))
    if read is None:
        raise TypeError(f"{key}: no JSON reader for {kind}")  # a field added to a model without one here
    return read(v, key)


def _bool(v: Any, key: str) -> bool:
    if v is not True and v is not False:
        raise ValueError(f"{key}: expected true or false, got {v!r}")
    return v


def _whole(v: Any, key: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or v != int(v):
        raise ValueError(f"{key}: expected a whole number >= 0, got {v!r}")
    return int(v)


def _column_lists(v: Any, key: str) -> tuple[tuple[str, ...], ...]:
    if not isinstance(v, (list, tuple)) or not all(isinstance(i, (list, tuple)) for i in v):
        raise ValueError(f"{key}: expected a list of column lists, e.g. [[\"email\"], [\"a\", \"b\"]]")
    return tuple(_strings(i, key) for i in v)


def _column_facts(v: Any, key: str) -> dict[str, Column]:
    if not isinstance(v, dict):
        raise ValueError(f"{key}: expected an object of column name -> facts")
    return {name: _value(Column, x, f"columns.{name}") for name, x in v.items()}


def _values(cls):
    return lambda v, key: tuple(_value(cls, x, f"{key}[{i}]") for i, x in enumerate(_list(v, key)))


def _str(v: Any, key: str) -> str:
    if not isinstance(v, str):
        raise ValueError(f"{key}: expected a string, got {v!r}")
    return v


def _list(v: Any, key: str) -> list:
    if not isinstance(v, (list, tuple)):
        raise ValueError(f"{key}: expected a list, got {v!r}")
    return list(v)


def _strings(v: Any, key: str) -> tuple[str, ...]:
    if not isinstance(v, (list, tuple)) or not all(isinstance(c, str) for c in v):
        raise ValueError(f"{key}: expected a list of names, e.g. [\"bal\"]")
    return tuple(v)


_READERS = {
    "bool": _bool, "int": _whole, "str": _str, "tuple[str, ...]": _strings,
    "dict[str, str]": lambda v, key: dict(v),  # checked by table_stats
    "tuple[tuple[str, ...], ...]": _column_lists, "dict[str, Column]": _column_facts,
    "tuple[Index, ...]": _values(Index), "tuple[Constraint, ...]": _values(Constraint),
}
