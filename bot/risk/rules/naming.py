"""Naming policy (opt-in): new names that are not snake_case and so must be double-quoted forever."""
from __future__ import annotations

import re
from typing import Iterator

from pglast.keywords import RESERVED_KEYWORDS, TYPE_FUNC_NAME_KEYWORDS

from ..state import State, Stmt
from . import Hit, rule

R = rule("naming")
RULES = (
    R(code="MG921", name="naming-convention", severity="low",
      summary="A new name is not snake_case: mixed case, spaces or a reserved word must be double-quoted forever.",
      why="PostgreSQL folds unquoted names to lower case, so a table created as \"Users\" can only be reached as "
          "\"Users\", quoted, in every query, psql session and tool; names with spaces or other characters, and "
          "reserved words, are the same. A schema that mixes conventions invites errors. Opt-in: ORMs such as "
          "Prisma quote PascalCase names everywhere by design.",
      fix="CREATE TABLE users (id bigint, created_at timestamptz);  -- lower-case snake_case, never quoted",
      bad="CREATE TABLE \"Users\" (id bigint, \"createdAt\" timestamptz);",
      good="CREATE TABLE users (id bigint, created_at timestamptz);", hazards=(80,), default=False),
)

# (?<!_): a search never starts inside a run of underscores, so it stays linear (fullmatch: the same)
_SNAKE = re.compile(r"(?<!_)_*[a-z][a-z0-9_]*")
_RESERVED = RESERVED_KEYWORDS | TYPE_FUNC_NAME_KEYWORDS
_SHOWN = 3  # names listed per statement

# check() reads neither the state nor the statement's transaction flags, so the engine may run it
# ahead of the in-order pass (in another process for big files).
STATELESS = True

# Statement types this family looks at (None: all).
TYPES: frozenset[str] | None = frozenset({
    "CreateStmt", "AlterTableStmt", "IndexStmt", "RenameStmt", "ViewStmt", "CreateTableAsStmt", "CreateSeqStmt",
    "CreateEnumStmt", "CreateSchemaStmt"})


def check(s: Stmt, st: State) -> Iterator[Hit]:
    bad = [(kind, name, why) for kind, name in _new_names(s.type, s.node) if (why := _not_snake(name))]
    if bad:
        listed = ", ".join(f'{kind} "{name}" ({why})' for kind, name, why in bad[:_SHOWN])
        more = f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
        yield Hit("MG921", f"Not snake_case: {listed}{more}; such names must be double-quoted in every query.")


def _new_names(t: str, n: dict) -> list[tuple[str, str]]:
    """(kind, name) of the names this statement creates."""
    if t == "CreateStmt":
        out = [("table", (n.get("relation") or {}).get("relname") or "")]
        for elt in n.get("tableElts") or ():
            if "ColumnDef" in elt:
                out += _column_names(elt["ColumnDef"])
            elif "Constraint" in elt and elt["Constraint"].get("conname"):
                out.append(("constraint", elt["Constraint"]["conname"]))
        return out
    if t == "AlterTableStmt":  # the table exists: only what it adds is new
        out = []
        for item in n.get("cmds") or ():
            cmd = item["AlterTableCmd"]
            sub = cmd.get("subtype")
            if sub == "AT_AddColumn":
                out += _column_names(cmd["def"]["ColumnDef"])
            elif sub == "AT_AddConstraint" and (cmd.get("def") or {}).get("Constraint", {}).get("conname"):
                out.append(("constraint", cmd["def"]["Constraint"]["conname"]))
        return out
    if t == "IndexStmt":
        return [("index", n["idxname"])] if n.get("idxname") else []
    if t == "RenameStmt":
        return [("name", n["newname"])] if n.get("newname") else []
    if t == "ViewStmt":
        return [("view", (n.get("view") or {}).get("relname") or "")]
    if t == "CreateSeqStmt":
        return [("sequence", (n.get("sequence") or {}).get("relname") or "")]
    if t == "CreateTableAsStmt":
        kind = "materialized view" if n.get("objtype") == "OBJECT_MATVIEW" else "table"
        return [(kind, ((n.get("into") or {}).get("rel") or {}).get("relname") or "")]
    if t == "CreateEnumStmt":
        names = n.get("typeName") or ()
        return [("type", names[-1].get("String", {}).get("sval") or "")] if names else []
    if t == "CreateSchemaStmt" and n.get("schemaname"):
        return [("schema", n["schemaname"])]
    return []


def _column_names(col: dict) -> list[tuple[str, str]]:
    out = [("column", col.get("colname") or "")]
    for c in col.get("constraints") or ():
        if c.get("Constraint", {}).get("conname"):
            out.append(("constraint", c["Constraint"]["conname"]))
    return out


def _not_snake(name: str) -> str | None:
    """Why `name` is not plain snake_case, or None."""
    if _SNAKE.fullmatch(name):
        return "a reserved word" if name in _RESERVED else None
    if not name:
        return None
    if name != name.lower():
        return "mixed case"
    if any(c.isspace() for c in name):
        return "spaces"
    return "not snake_case"
