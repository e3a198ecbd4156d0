"""Look-ups in the target's catalog facts (Context.tables, Context.types): partitions and their DEFAULT
partition, an index's table, the columns using a type, a materialized view's tables.

Names come back as the statement would write them: the plain name when the table is on the search path
(the snapshot marks it visible), else schema.name. Usage::

    default_partition(ctx, "events")   # "events_default", or None (none, or no facts about events)
"""
from __future__ import annotations

from .models import Context, Index, TableStats

HOW = ("run `guardian snapshot --env <env> -o snapshot.json`, then `guardian lint --context snapshot.json` "
       "(`guardian plan` reads the target itself)")


def known(ctx: Context) -> bool:
    """Whether the context holds catalog facts (a snapshot), not only table sizes."""
    return bool(ctx.types) or any(s.catalog for s in ctx.tables.values())


def table(ctx: Context, name: str | None) -> tuple[str, TableStats] | None:
    """(schema.name, facts) of a relation named as a statement names it, when its catalog facts are known."""
    if not name:
        return None
    t = ctx.tables
    stats = t.get(name) or t.get(f"public.{name}")
    if stats is None or not stats.catalog:
        return None
    if "." in name:
        return name, stats
    if t.get(f"public.{name}") is stats:
        return f"public.{name}", stats
    return next((k for k, v in t.items() if v is stats and "." in k), name), stats


def short(ctx: Context, qualified: str) -> str:
    """The plain name of schema.name when that is how the snapshot lets statements name it."""
    plain = qualified.rsplit(".", 1)[-1]
    return plain if plain in ctx.tables and ctx.tables[plain] is ctx.tables.get(qualified) else qualified


def default_partition(ctx: Context, parent: str) -> str | None:
    found = table(ctx, parent)
    return short(ctx, found[1].default_partition) if found and found[1].default_partition else None


def partitions(ctx: Context, parent: str) -> list[str]:
    """Every partition under a partitioned table (sub-partitions too), by short name."""
    found = table(ctx, parent)
    if not found:
        return []
    out, todo = [], [found[0]]
    while todo:
        p = todo.pop()
        for k, v in _entries(ctx):
            if v.partition_of and _same(ctx, v.partition_of, p):
                out.append(short(ctx, k))
                todo.append(k)
    return out


def index_table(ctx: Context, index: str) -> str | None:
    """The table an existing index belongs to (by short name)."""
    found = index_owner(ctx, index)
    return found[0] if found else None


def index_owner(ctx: Context, index: str) -> tuple[str, TableStats, Index] | None:
    """(table's short name, its facts, the index's facts) of an existing index."""
    schema, _, name = index.rpartition(".")
    for k, v in _entries(ctx):
        if not schema or k.startswith(schema + "."):
            for i in v.index_facts:
                if i.name == name:
                    return short(ctx, k), v, i
    return None


def type_columns(ctx: Context, type_name: str) -> list[str] | None:
    """"table.column" of the columns using an enum or domain; None when the type is not in the facts."""
    facts = ctx.types.get(type_name) or ctx.types.get(f"public.{type_name}")
    if facts is None:
        return None
    names = {k for k, v in ctx.types.items() if v is facts}
    return [f"{short(ctx, k)}.{c}" for k, v in _entries(ctx) for c, f in v.column_facts.items() if f.type_ref in names]


def matview_tables(ctx: Context, view: str) -> list[str]:
    """The tables whose columns a materialized view selects (it reads them while it refreshes)."""
    found = table(ctx, view)
    if not found:
        return []
    return [short(ctx, k) for k, v in _entries(ctx)
            if any(_same(ctx, name, found[0]) for c in v.column_facts.values() for name in c.views)]


def _entries(ctx: Context) -> list[tuple[str, TableStats]]:
    """(name, facts) once per relation, by schema.name when the context has it."""
    by_id: dict[int, tuple[str, TableStats]] = {}
    for k, v in ctx.tables.items():
        if id(v) not in by_id or "." in k and "." not in by_id[id(v)][0]:
            by_id[id(v)] = (k, v)
    return list(by_id.values())


def _same(ctx: Context, a: str, b: str) -> bool:
    """Whether two names (plain or schema.name) denote the same relation of the context."""
    if a == b:
        return True
    t = ctx.tables
    found = t.get(a) or t.get(f"public.{a}")
    return found is not None and found is (t.get(b) or t.get(f"public.{b}"))
