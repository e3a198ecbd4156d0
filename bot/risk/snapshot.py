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
    if not isinstance(cols, dict) or not all(isinstance(k, str) and isinstance(v, (str, dict)) for k, v in cols.items()):
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
    """A frozen value from JSON, each field checked against its annotation."""
    at = f"{where}: " if where else ""
    if not isinstance(data, dict):
        raise ValueError(f"{at}expected an object, got {data!r}")
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"{at}unknown key {sorted(unknown)[0]!r} ({', '.join(known)})")
    values: dict[str, Any] = {}
    for name, f in known.items():
        key = f"{where}.{name}" if where else name
        if name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ValueError(f"{key}: missing")
            continue
        values[name] = _field(str(f.type), data[name], key)
    if cls in _KINDS and values["kind"] not in _KINDS[cls]:
        raise ValueError(f"{where + '.' if where else ''}kind: expected one of {', '.join(_KINDS[cls])}, got {values['kind']!r}")
    return cls(**values)


def _field(kind: str, v: Any, key: str) -> Any:
    optional = kind.endswith(" | None")
    if optional:
        if v is None:
            return None
        kind = kind[:-len(" | None")]
    if kind == "bool":
        if not isinstance(v, bool):
            raise ValueError(f"{key}: expected true or false, got {v!r}")
        return v
    if kind == "int":
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or v != int(v):
            raise ValueError(f"{key}: expected a whole number >= 0, got {v!r}")
        return int(v)
    if kind == "str":
        return _str(v, key)
    if kind == "tuple[str, ...]":
        return _strings(v, key)
    if kind == "dict[str, str]":
        return dict(v)  # checked by table_stats
    if kind == "tuple[tuple[str, ...], ...]":
        if not isinstance(v, (list, tuple)) or not all(isinstance(i, (list, tuple)) for i in v):
            raise ValueError(f"{key}: expected a list of column lists, e.g. [[\"email\"], [\"a\", \"b\"]]")
        return tuple(_strings(i, key) for i in v)
    if kind == "dict[str, Column]":
        if not isinstance(v, dict):
            raise ValueError(f"{key}: expected an object of column name -> facts")
        return {name: _value(Column, x, f"columns.{name}") for name, x in v.items()}
    if kind == "tuple[Index, ...]":
        return tuple(_value(Index, x, f"{key}[{i}]") for i, x in enumerate(_list(v, key)))
    if kind == "tuple[Constraint, ...]":
        return tuple(_value(Constraint, x, f"{key}[{i}]") for i, x in enumerate(_list(v, key)))
    raise TypeError(f"{key}: no JSON reader for {kind}")  # a field added to a model without one here


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
