"""A readable diff of two schema snapshots: human lines plus structured changes.

Usage::

    result = diff_snapshots(before, after)
    result.lines   # ('+ table public.accounts', '~ column public.users.email: nullable true -> false', ...)
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from bot.pg.snapshot import SchemaSnapshot


class Change(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str  # table | column | index | constraint | policy | trigger | function
    action: Literal["added", "removed", "changed"]
    name: str  # schema-qualified, e.g. public.users.email
    fields: dict[str, tuple[Any, Any]] = {}  # changed field -> (before, after)

    @property
    def line(self) -> str:
        sign = {"added": "+", "removed": "-", "changed": "~"}[self.action]
        if self.action != "changed":
            return f"{sign} {self.kind} {self.name}"
        parts = "; ".join(f"{k} {_show(a)} -> {_show(b)}" for k, (a, b) in self.fields.items())
        return f"{sign} {self.kind} {self.name}: {parts}"


class SchemaDiff(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    changes: tuple[Change, ...] = ()

    @property
    def lines(self) -> tuple[str, ...]:
        return tuple(c.line for c in self.changes)

    @property
    def empty(self) -> bool:
        return not self.changes


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _flatten(s: SchemaSnapshot) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for t in s.tables:
        out[("table", t.key)] = {"kind": t.kind, "rls_enabled": t.rls_enabled, "rls_forced": t.rls_forced}
        for c in t.columns:
            out[("column", f"{t.key}.{c.name}")] = c.model_dump(exclude={"name"})
    for i in s.indexes:
        out[("index", f"{i.schema_name}.{i.name}")] = i.model_dump(exclude={"schema_name", "name"})
    for k in s.constraints:
        out[("constraint", f"{k.schema_name}.{k.table}.{k.name}")] = k.model_dump(
            exclude={"schema_name", "table", "name"})
    for p in s.policies:
        out[("policy", f"{p.schema_name}.{p.table}.{p.name}")] = p.model_dump(exclude={"schema_name", "table", "name"})
    for g in s.triggers:
        out[("trigger", f"{g.schema_name}.{g.table}.{g.name}")] = g.model_dump(exclude={"schema_name", "table", "name"})
    for f in s.functions:
        out[("function", f"{f.schema_name}.{f.signature}")] = f.model_dump(exclude={"schema_name", "signature"})
    return out


_ORDER = {"table": 0, "column": 1, "constraint": 2, "index": 3, "policy": 4, "trigger": 5, "function": 6}


def diff_snapshots(before: SchemaSnapshot, after: SchemaSnapshot) -> SchemaDiff:
    """Everything added, removed or changed from ``before`` to ``after``, tables first."""
    a, b = _flatten(before), _flatten(after)
    changes: list[Change] = []
    for key in sorted(a.keys() | b.keys(), key=lambda k: (_ORDER[k[0]], k[1])):
        kind, name = key
        if key not in a:
            changes.append(Change(kind=kind, action="added", name=name))
        elif key not in b:
            changes.append(Change(kind=kind, action="removed", name=name))
        else:
            fields = {f: (a[key][f], b[key].get(f)) for f in a[key] if a[key][f] != b[key].get(f)}
            if fields:
                changes.append(Change(kind=kind, action="changed", name=name, fields=fields))
    return SchemaDiff(changes=tuple(changes))
