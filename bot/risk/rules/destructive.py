"""Destructive and backward-incompatible changes: drops, renames, schema moves, enums, access, behaviour."""
from __future__ import annotations

from typing import Iterator

from .. import catalog
from ..models import Severity
from ..nodes import rv_name, strings
from ..state import State, Stmt
from . import Hit, rule

R = rule("destructive")
RULES = (
    R(code="MG501", name="drop-table", severity="critical",
      summary="DROP TABLE deletes the table and its data for good.",
      why="Running code that still uses the table fails at once; the data is gone unless a backup is restored. "
          "It also takes ACCESS EXCLUSIVE on tables it has foreign keys to.",
      fix="Stop all use of the table and deploy; back it up (pg_dump -t); check it is unused or empty "
          "(SELECT NOT EXISTS (SELECT 1 FROM t)); then DROP TABLE IF EXISTS t; in its own migration.",
      bad="DROP TABLE old_stuff;",
      good="CREATE TABLE scratch (id bigint);\nDROP TABLE scratch;", hazards=(47,)),
    R(code="MG502", name="drop-column", severity="high",
      summary="DROP COLUMN deletes data and breaks code that still reads or writes the column.",
      why="The drop is metadata only (brief ACCESS EXCLUSIVE) but irreversible without a backup, and any query "
          "naming the column fails.",
      fix="Make the application ignore the column, deploy, back it up, then: ALTER TABLE t DROP COLUMN IF EXISTS c;",
      bad="ALTER TABLE users DROP COLUMN legacy_flag;",
      good="ALTER TABLE users ADD COLUMN new_flag boolean;", hazards=(48,)),
    R(code="MG503", name="drop-schema-or-database", severity="critical",
      summary="DROP SCHEMA / DROP DATABASE deletes everything inside it.",
      why="All tables, functions and data in the schema or database are lost at once.",
      fix="Never from a routine migration: back up, get a second approval, and run it by hand.",
      bad="DROP SCHEMA app CASCADE;",
      good="CREATE SCHEMA IF NOT EXISTS archive;", hazards=(49,)),
    R(code="MG504", name="drop-object", severity="medium",
      summary="Dropping a view, function, type, sequence, domain, extension, trigger or policy breaks its dependants.",
      why="Queries, defaults and other objects that use it fail; CASCADE silently drops dependants too.",
      fix="Check pg_depend for dependants, drop without CASCADE, and keep a definition to restore.",
      bad="DROP FUNCTION audit_row() CASCADE;",
      good="CREATE OR REPLACE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;",
      hazards=(50,)),
    R(code="MG505", name="rename-column", severity="high",
      summary="RENAME COLUMN breaks every running client that uses the old name.",
      why="The rename is instant, but queries from code deployed before it fail until the new code is out.",
      fix="Expand/contract: add the new column, write both, backfill, move readers, then drop the old one; or "
          "expose the old name through a view during the transition.",
      bad="ALTER TABLE users RENAME COLUMN name TO full_name;",
      good="ALTER TABLE users ADD COLUMN full_name text;", hazards=(51,)),
    R(code="MG506", name="rename-table", severity="high",
      summary="RENAME TABLE breaks every running client that uses the old name.",
      why="Queries naming the old table fail at once.",
      fix="Rename, then CREATE VIEW old_name AS SELECT * FROM new_name; in the same transaction, drop the view "
          "after every client is deployed.",
      bad="ALTER TABLE users RENAME TO customers;",
      good="CREATE TABLE customers (id bigint);", hazards=(52,)),
    R(code="MG507", name="rename-object", severity="medium",
      summary="Renaming a schema, view, type, enum value or function breaks clients that use the old name.",
      why="Code and other objects referring to the old name fail.",
      fix="Add the new object or value, move clients to it, then remove the old one.",
      bad="ALTER TYPE status RENAME VALUE 'done' TO 'completed';",
      good="ALTER TYPE status ADD VALUE IF NOT EXISTS 'completed' AFTER 'done';", hazards=(53,)),
    R(code="MG508", name="set-schema", severity="medium",
      summary="SET SCHEMA moves an object; clients using the old qualified name break.",
      why="Queries that name schema.object (or rely on search_path) no longer find it.",
      fix="Leave a view (or wrapper function) in the old schema while clients move.",
      bad="ALTER TABLE t SET SCHEMA archive;",
      good="CREATE SCHEMA IF NOT EXISTS archive;", hazards=(54,)),
    R(code="MG509", name="enum-add-value", severity="low",
      summary="ALTER TYPE ... ADD VALUE appends to the enum and clients start receiving the new value.",
      why="Without BEFORE/AFTER the value sorts last (changing < and ORDER BY semantics); before PG 12 it cannot run "
          "in a transaction; since PG 12 the value cannot be used in the same transaction.",
      fix="ALTER TYPE status ADD VALUE IF NOT EXISTS 'pending' BEFORE 'active';  -- deploy readers first",
      bad="ALTER TYPE status ADD VALUE 'pending';",
      good="ALTER TYPE status ADD VALUE IF NOT EXISTS 'pending' BEFORE 'active';", hazards=(56,)),
    R(code="MG510", name="access-change", severity="medium",
      summary="REVOKE, row-level-security toggles and policies change who can see or write rows.",
      why="The application role can suddenly read nothing (or too much); policies and RLS toggles take "
          "ACCESS EXCLUSIVE on the table.",
      fix="Test the change with the application's role and JWT claims on staging; roll out policies before "
          "enabling row-level security.",
      bad="ALTER TABLE documents ENABLE ROW LEVEL SECURITY;",
      good="GRANT SELECT ON documents TO app_reader;", hazards=(57,)),
    R(code="MG511", name="behaviour-change", severity="low",
      summary="Replacing views/functions or altering functions, extensions, sequences, roles or server settings changes behaviour.",
      why="These statements are cheap but change results for running code; the linter cannot judge the new "
          "behaviour, a human must.",
      fix="Review the diff of the definition; deploy with the application change it belongs to.",
      bad="CREATE OR REPLACE VIEW active_users AS SELECT id FROM users WHERE active;",
      good="CREATE VIEW active_users_v2 AS SELECT id FROM users WHERE active;", hazards=(58,)),
    R(code="MG512", name="truncate-table", severity="high",
      summary="TRUNCATE deletes every row at once under ACCESS EXCLUSIVE.",
      why="The data is gone (no WHERE, no undo once committed) and readers wait during the truncate.",
      fix="Back the table up first; delete only what is meant to go, in batches.",
      bad="TRUNCATE audit_log;",
      good="DELETE FROM audit_log WHERE created_at < now() - interval '90 days' AND id < 100000;", hazards=(46, 47)),
    R(code="MG513", name="drop-default-not-null", severity="high",
      summary="DROP DEFAULT on a NOT NULL column makes every INSERT that omits the column fail.",
      why="Clients that leave the column out (a serial or nextval id, a created_at filled by its default) get "
          "null-value violations (23502) from the moment it commits.",
      fix="Drop NOT NULL first, or keep the default until no client omits the column:\n"
          "ALTER TABLE t ALTER COLUMN c DROP NOT NULL;  -- if the column may become optional\n"
          "ALTER TABLE t ALTER COLUMN c DROP DEFAULT;",
      bad="-- members.id is a serial (NOT NULL DEFAULT nextval(...))\nALTER TABLE members ALTER COLUMN id DROP DEFAULT;",
      good="-- members.nickname is nullable\nALTER TABLE members ALTER COLUMN nickname DROP DEFAULT;", hazards=(32,)),
)

_RLS = {
    "AT_EnableRowSecurity": "Enables row-level security on {table}: roles without a policy now see no rows and "
                            "cannot write any.",
    "AT_DisableRowSecurity": "Disables row-level security on {table}: every role with privileges on it now sees "
                             "and writes every row.",
    "AT_ForceRowSecurity": "Forces row-level security on {table}: its owner is now bound by the policies too.",
    "AT_NoForceRowSecurity": "Stops forcing row-level security on {table}: its owner bypasses the policies again.",
}
_RENAME_REL = {"OBJECT_TABLE": "MG506", "OBJECT_COLUMN": "MG505"}
_BEHAVIOUR = {"AlterFunctionStmt", "AlterExtensionStmt", "AlterExtensionContentsStmt", "AlterRoleStmt",
              "AlterDatabaseStmt", "AlterDatabaseSetStmt", "AlterSystemStmt", "AlterRoleSetStmt"}


# Statement types this family looks at (None: all).
TYPES: frozenset[str] | None = frozenset({
    "DropStmt", "DropdbStmt", "TruncateStmt", "RenameStmt", "AlterObjectSchemaStmt", "AlterEnumStmt",
    "AlterTableStmt", "GrantStmt", "CreatePolicyStmt", "AlterPolicyStmt", "ViewStmt", "CreateFunctionStmt",
    "AlterSeqStmt"} | _BEHAVIOUR)

def check(s: Stmt, st: State) -> Iterator[Hit]:
    t, n = s.type, s.node
    if t == "DropStmt":
        yield from _drop(s, st, n)
    elif t == "DropdbStmt":
        yield Hit("MG503", f"DROP DATABASE {n.get('dbname')} deletes a whole database.")
    elif t == "TruncateStmt":
        rels = [r for r in s.fx.locks if not st.is_new(r)]
        if rels:
            yield Hit("MG512", f"TRUNCATE deletes every row of {', '.join(rels)}.", rels[0])
    elif t == "RenameStmt":
        yield from _rename(s, st, n)
    elif t == "AlterObjectSchemaStmt" and not st.is_new(s.fx.target):
        low = Severity.LOW if n.get("objectType") == "OBJECT_DOMAIN" else None  # columns keep their domain
        yield Hit("MG508", f"SET SCHEMA {n.get('newschema')} moves {s.fx.target or 'the object'}; old names break.",
                  None, low)
    elif t == "AlterEnumStmt":
        yield from _enum(s, st, n)
    elif t == "AlterTableStmt" and not st.is_new(rv_name(n.get("relation"))):
        table = rv_name(n.get("relation"))
        for item in n.get("cmds") or ():
            sub = item["AlterTableCmd"].get("subtype", "")
            if sub == "AT_DropColumn":
                yield Hit("MG502", f"DROP COLUMN {table}.{item['AlterTableCmd'].get('name')} deletes its data.",
                          item=item["AlterTableCmd"])
            elif sub == "AT_ColumnDefault" and not item["AlterTableCmd"].get("def"):
                yield from _drop_default(st, table, item["AlterTableCmd"].get("name", "?"))
            elif sub in ("AT_EnableRowSecurity", "AT_DisableRowSecurity", "AT_ForceRowSecurity",
                         "AT_NoForceRowSecurity"):
                yield Hit("MG510", _RLS[sub].format(table=table), table)
    elif t == "GrantStmt" and not n.get("is_grant"):
        yield Hit("MG510", "REVOKE removes privileges running clients may need.")
    elif t in ("CreatePolicyStmt", "AlterPolicyStmt") and not st.is_new(s.fx.target):
        yield Hit("MG510", f"{s.fx.kind} on {s.fx.target} changes which rows clients can see or write.", s.fx.target)
    elif t in _BEHAVIOUR or (t == "AlterSeqStmt" and not st.is_new(rv_name(n.get("sequence")))):
        yield Hit("MG511", f"{s.fx.kind} changes behaviour for running code; needs a human review.")
    elif t in ("ViewStmt", "CreateFunctionStmt") and n.get("replace"):
        yield Hit("MG511", f"CREATE OR REPLACE {'VIEW' if t == 'ViewStmt' else 'FUNCTION'} changes what running "
                  "code gets; review the new definition.")


def _drop(s: Stmt, st: State, n: dict) -> Iterator[Hit]:
    rt = n.get("removeType", "")
    names = list(s.fx.locks) or [s.fx.kind]
    if rt == "OBJECT_TABLE":
        gone = [r for r in s.fx.locks if not st.is_new(r)]
        if gone:
            yield Hit("MG501", f"DROP TABLE {', '.join(gone)} deletes the table and its data.")
    elif rt == "OBJECT_SCHEMA":
        yield Hit("MG503", "DROP SCHEMA deletes everything in it" + (" (CASCADE)." if n.get("behavior") == "DROP_CASCADE"
                                                                     else "."))
    elif rt == "OBJECT_TYPE" and all(
            (strings((o.get("TypeName") or {}).get("names")) or ["?"])[-1] in st.type_renames
            for o in n.get("objects") or ()):
        return  # an enum swap's old type, renamed earlier in this file after its columns moved to the new one
    elif rt in ("OBJECT_TYPE", "OBJECT_DOMAIN") and n.get("behavior") == "DROP_CASCADE" and catalog.known(st.ctx):
        yield from _drop_type_cascade(s, st, n)
    elif rt == "OBJECT_TRIGGER":
        if s.fx.locks and all(st.is_new(r) for r in s.fx.locks):
            return
        for obj in n.get("objects") or ():
            parts = strings(obj.get("List", {}).get("items"))
            if parts:
                yield Hit("MG504", f"DROP TRIGGER {parts[-1]} on {'.'.join(parts[:-1])}: what it did on every write "
                          "(audit rows, derived columns) stops.", None, Severity.LOW)
    elif rt != "OBJECT_INDEX":
        if s.fx.locks and all(st.is_new(r) for r in s.fx.locks):
            return
        sev = Severity.HIGH if n.get("behavior") == "DROP_CASCADE" else None
        if sev is None and rt in ("OBJECT_TYPE", "OBJECT_SEQUENCE", "OBJECT_DOMAIN"):
            # without CASCADE PostgreSQL refuses while a column or default still uses it: nothing breaks silently
            yield Hit("MG504", f"{s.fx.kind} {_object_names(n)}: fails if a column or default still uses it; app "
                      "code naming it in casts breaks.", None, Severity.LOW)
            return
        depends = f"; which columns it drops depends on the target: {catalog.HOW}" \
            if sev and rt in ("OBJECT_TYPE", "OBJECT_DOMAIN") else ""
        yield Hit("MG504", f"{s.fx.kind} {', '.join(names) if s.fx.locks else _object_names(n)} breaks objects and code that use it"
                  f"{' and CASCADE drops them too' if sev else ''}{depends}.".replace("  ", " "), None, sev)


def _drop_type_cascade(s: Stmt, st: State, n: dict) -> Iterator[Hit]:
    """With the catalog: the columns CASCADE drops with the type, or none (observed on PostgreSQL 15:
    DROP TYPE mood CASCADE drops people.m under ACCESS EXCLUSIVE on people)."""
    for obj in n.get("objects") or ():
        name = ".".join(strings((obj.get("TypeName") or {}).get("names")))
        if name.rsplit(".", 1)[-1] in st.enum_types or st.is_new(name):
            continue  # created in this file
        used = catalog.type_columns(st.ctx, name)
        if used is None:
            yield Hit("MG504", f"{s.fx.kind} {name} CASCADE: the target has no type {name}; the statement fails "
                      "unless the file creates it.", None, Severity.LOW)
        elif used:
            yield Hit("MG504", f"{s.fx.kind} {name} CASCADE drops column{'s' if len(used) > 1 else ''} "
                      f"{', '.join(used)} with {'their' if len(used) > 1 else 'its'} data (ACCESS EXCLUSIVE on "
                      f"{', '.join(dict.fromkeys(u.rsplit('.', 1)[0] for u in used))}).", None, Severity.HIGH)
        else:
            yield Hit("MG504", f"{s.fx.kind} {name} CASCADE: no column uses {name}, so CASCADE drops no data; "
                      "code naming it in casts breaks.", None, Severity.LOW)


def _drop_default(st: State, table: str, column: str) -> Iterator[Hit]:
    found = catalog.table(st.ctx, table)
    facts = found[1].column_facts.get(column) if found else None
    if facts is not None:
        if facts.not_null and facts.default and not facts.identity:
            yield Hit("MG513", f"{table}.{column} is NOT NULL with DEFAULT {facts.default}: after DROP DEFAULT every "
                      "INSERT that omits it fails (null value violates not-null constraint).")
    elif not st.is_new(table) and (table, column) not in st.null_columns:
        yield Hit("MG513", f"DROP DEFAULT on {table}.{column}: if the column is NOT NULL (a serial's nextval, say) "
                  f"every INSERT that omits it fails; the verdict depends on the target, so {catalog.HOW}.",
                  None, Severity.LOW)


def _object_names(n: dict) -> str:
    out = []
    for obj in n.get("objects") or ():
        if "List" in obj:
            out.append(".".join(strings(obj["List"].get("items"))))
        elif "String" in obj:
            out.append(obj["String"]["sval"])
        elif "ObjectWithArgs" in obj:
            out.append(".".join(strings(obj["ObjectWithArgs"].get("objname"))) + "()")
        elif "TypeName" in obj:
            out.append(".".join(strings(obj["TypeName"].get("names"))))
    return ", ".join(out)


def _rename(s: Stmt, st: State, n: dict) -> Iterator[Hit]:
    rt = n.get("renameType", "")
    rel = rv_name(n["relation"]) if n.get("relation") else None
    if rel and st.is_new(rel):
        return
    code = _RENAME_REL.get(rt)
    if code == "MG505":
        yield Hit(code, f"RENAME COLUMN {rel}.{n.get('subname')} TO {n.get('newname')} breaks clients using the old name.")
    elif code == "MG506":
        yield Hit(code, f"RENAME {rel} TO {n.get('newname')} breaks clients using the old name.")
    elif rt in ("OBJECT_INDEX", "OBJECT_TABCONSTRAINT", "OBJECT_TRIGGER", "OBJECT_SEQUENCE"):
        return  # internal names: clients do not refer to them
    elif rt == "OBJECT_TYPE":
        old = strings((n.get("object") or {}).get("List", {}).get("items"))[-1:] or ["?"]
        if old[0] in st.enum_types:
            return  # the type this file created takes over the name: the swap's last step
        yield Hit("MG507", f"RENAME TYPE {old[0]} TO {n.get('newname')} breaks clients using the old name.")
    elif rt in ("OBJECT_DOMCONSTRAINT", "OBJECT_DOMAIN"):
        yield Hit("MG507", f"{s.fx.kind} to {n.get('newname')}: only DDL that names the old name breaks.", None,
                  Severity.LOW)
    else:
        yield Hit("MG507", f"{s.fx.kind} to {n.get('newname')} breaks clients using the old name.")


def _enum(s: Stmt, st: State, n: dict) -> Iterator[Hit]:
    if n.get("oldVal"):
        yield Hit("MG507", f"RENAME VALUE '{n.get('oldVal')}' breaks clients and data using it.")
        return
    placement = n.get("newValNeighbor")
    v = st.ctx.pg_version
    if v < 12:
        yield Hit("MG509", f"ADD VALUE '{n.get('newVal')}' cannot run inside a transaction block before "
                  "PostgreSQL 12: it must run alone, outside a transaction.", None, Severity.HIGH)
    elif not placement:
        yield Hit("MG509", f"ADD VALUE '{n.get('newVal')}' sorts last; clients start receiving it.")
