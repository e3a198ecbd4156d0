"""One tailored recipe per rule, written from the statement (see fixes.py for the conventions).

tailored(code, stmt, state, item) -> the fix text; `item` is the part of the statement the finding is
about (an ALTER TABLE subcommand, a constraint), when the rule said so.
"""
from __future__ import annotations

from typing import Callable

from .catalogue import BY_CODE
from .fixes import Names, Recipe, advice, body, derived_table, index_name, make_object_name, online_index
from .nodes import rv_name, strings
from .state import State, Stmt

_FK_ACTIONS = {"r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}
_DEFAULTS = {"boolean": "false", "bool": "false", "integer": "0", "int4": "0", "bigint": "0", "int8": "0",
             "smallint": "0", "int2": "0", "double precision": "0", "float8": "0", "real": "0", "numeric": "0",
             "decimal": "0", "text": "''", "varchar": "''", "citext": "''", "jsonb": "'{}'", "json": "'{}'",
             "timestamp": "CURRENT_TIMESTAMP", "timestamptz": "CURRENT_TIMESTAMP", "date": "CURRENT_DATE"}


def tailored(code: str, s: Stmt, st: State, item: dict | None) -> str:
    """The fix for a finding of rule `code` on statement `s`."""
    gen = _GENERATORS.get(code)
    if gen is not None and s is not None:
        rec = Recipe(prisma=st.ctx.runner == "prisma")
        names = Names(s.raw.text)
        try:
            out = gen(s, st, item, rec, names)
        except (KeyError, IndexError, TypeError, AttributeError):  # an unexpected tree shape: the generic advice
            out = None
        if out:
            return out
    return advice(BY_CODE[code].fix)


def _table(s: Stmt) -> dict | None:
    return s.node.get("relation")


def _cmd_of(s: Stmt, item: dict | None, *subtypes: str) -> dict | None:
    if item is not None and item.get("subtype") in subtypes:
        return item
    for c in s.node.get("cmds") or ():
        cmd = c.get("AlterTableCmd", {})
        if cmd.get("subtype") in subtypes:
            return cmd
    return None


def _single_cmd(s: Stmt) -> bool:
    return len(s.node.get("cmds") or ()) == 1


# ------------------------------------------------------------------ indexes

def _mg101(s, st, item, rec: Recipe, names: Names):
    sql, name = online_index(s.raw.text, s.node, names)
    rec.file("build the index online, without blocking writes", alone=True).sql(sql)
    rec.say(f"If the build fails it leaves an INVALID index {name}: check pg_index.indisvalid, drop it with\n"
            f"DROP INDEX CONCURRENTLY IF EXISTS {names.q(name)}; and retry.")
    return rec.text()


def _mg102(s, st, item, rec: Recipe, names: Names):
    objs = [x["List"]["items"] for x in s.node.get("objects") or () if "List" in x]
    for items in objs:
        rec.file("drop the index without blocking queries on its table", alone=True)
        rec.sql(f"DROP INDEX CONCURRENTLY IF EXISTS {names.qualified(strings(items))}")
    rec.say("An index that backs a constraint cannot be dropped this way: drop the constraint instead.")
    return rec.text() if objs else None


def _mg103(s, st, item, rec: Recipe, names: Names):
    text = body(s.raw.text)
    if s.type == "IndexStmt":
        text, _ = online_index(s.raw.text, s.node, names)
    elif s.type == "DropStmt" and not s.node.get("missing_ok") and s.node.get("removeType") == "OBJECT_INDEX":
        objs = [x["List"]["items"] for x in s.node.get("objects") or () if "List" in x]
        text = f"DROP INDEX CONCURRENTLY IF EXISTS {names.qualified(strings(objs[0]))}" if objs else text
    if not text:
        return None
    rec.file("move this statement out of the transaction", alone=True).sql(text)
    rec.say("Remove it (and any BEGIN/COMMIT around it) from this file.")
    return rec.text()


def _mg104(s, st, item, rec: Recipe, names: Names):
    n = s.node
    kind = {"REINDEX_OBJECT_INDEX": "INDEX", "REINDEX_OBJECT_TABLE": "TABLE"}.get(n.get("kind", ""))
    if not kind or not n.get("relation"):
        return None
    rec.file("rebuild online (PostgreSQL 12+)", alone=True).sql(f"REINDEX {kind} CONCURRENTLY {names.rel(n['relation'])}")
    return rec.text()


def _mg105(s, st, item, rec: Recipe, names: Names):
    n = s.node
    table = derived_table(n.get("relation"))
    name = n.get("idxname") or index_name(table, _cols(n))
    rel = names.rel(n.get("relation"))
    cols = names.cols(_cols(n))
    unique = "UNIQUE " if n.get("unique") else ""
    rec.file("an invalid parent index, instant").sql(f"CREATE {unique}INDEX IF NOT EXISTS {names.q(name)} ON ONLY {rel} ({cols})")
    rec.say(f"Then, for each partition of {rel}, in its own migration file (for Prisma its own folder):\n"
            f"CREATE {unique}INDEX CONCURRENTLY <partition>_{'_'.join(_cols(n))}_idx ON <partition> ({cols});\n"
            f"ALTER INDEX {names.q(name)} ATTACH PARTITION <partition>_{'_'.join(_cols(n))}_idx;\n"
            f"{name} becomes valid once every partition's index is attached.")
    return rec.text()


def _cols(n: dict) -> list[str]:
    from .fixes import _index_cols
    return _index_cols(n)


def _mg107(s, st, item, rec: Recipe, names: Names):
    sql, name = online_index(s.raw.text, s.node, names)
    rec.say(f"Name it as PostgreSQL would ({name}) so a failed build can be found and dropped:").sql(sql)
    return rec.text()


def _mg108(s, st, item, rec: Recipe, names: Names):
    cols = _cols(s.node)[:2]
    table = derived_table(s.node.get("relation"))
    name = index_name(table, cols)
    rec.say("Index the one to three most selective columns, e.g. the leading two:")
    rec.sql(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {names.q(name)} ON {names.rel(s.node.get('relation'))} "
            f"({names.cols(cols)})")
    return rec.text()


def _mg109(s, st, item, rec: Recipe, names: Names):
    n = s.node
    cols = names.cols(_cols(n))
    rel = names.rel(n.get("relation"))
    rec.say("Before shipping, check the live data has no duplicates (the build fails on the first one):")
    rec.sql(f"SELECT {cols}, count(*) FROM {rel} GROUP BY {cols} HAVING count(*) > 1")
    if not n.get("concurrent") and not st.is_new(rv_name(n.get("relation"))):
        sql, _ = online_index(s.raw.text, n, names)
        rec.file("then build it online", alone=True).sql(sql)
    return rec.text()


# ------------------------------------------------------------------ constraints

def _fk_sql(c: dict, names: Names, name: str, cols: list[str]) -> str:
    ref = names.rel(c.get("pktable"))
    pk = strings(c.get("pk_attrs"))
    out = f"FOREIGN KEY ({names.cols(cols)}) REFERENCES {ref}" + (f" ({names.cols(pk)})" if pk else "")
    if c.get("fk_matchtype") == "f":
        out += " MATCH FULL"
    if c.get("fk_del_action") in _FK_ACTIONS:
        out += f" ON DELETE {_FK_ACTIONS[c['fk_del_action']]}"
    if c.get("fk_upd_action") in _FK_ACTIONS:
        out += f" ON UPDATE {_FK_ACTIONS[c['fk_upd_action']]}"
    return f"ADD CONSTRAINT {names.q(name)} {out}"


def _constraint(s: Stmt, item: dict | None, contype: str) -> tuple[dict | None, dict | None]:
    """(constraint, column definition it is inline in) for the finding."""
    cmds = [item] if item is not None else [c.get("AlterTableCmd", {}) for c in s.node.get("cmds") or ()]
    for cmd in cmds:
        d = cmd.get("def") or {}
        if "Constraint" in d and d["Constraint"].get("contype") == contype:
            return d["Constraint"], None
        if "ColumnDef" in d:
            for c in d["ColumnDef"].get("constraints") or ():
                if c.get("Constraint", {}).get("contype") == contype:
                    return c["Constraint"], d["ColumnDef"]
    return None, None


def _mg201(s, st, item, rec: Recipe, names: Names):
    c, col = _constraint(s, item, "CONSTR_FOREIGN")
    if c is None:
        return None
    table = derived_table(_table(s))
    cols = strings(c.get("fk_attrs")) or [col["colname"]]
    name = c.get("conname") or make_object_name(table, "_".join(cols), "fkey")
    rel = names.rel(_table(s))
    rec.file("add the key without checking existing rows (a brief SHARE ROW EXCLUSIVE on both tables)")
    if col is not None:
        rec.sql(f"ALTER TABLE {rel} ADD COLUMN {names.q(col['colname'])} {names.typ(col.get('typeName'))}")
    rec.sql(f"ALTER TABLE {rel} {_fk_sql(c, names, name, cols)} NOT VALID")
    rec.file("after the lock above is released, check the existing rows while reads and "
             "writes continue (SHARE UPDATE EXCLUSIVE)")
    rec.sql(f"ALTER TABLE {rel} VALIDATE CONSTRAINT {names.q(name)}")
    return rec.text()


def _mg202(s, st, item, rec: Recipe, names: Names):
    c, col = _constraint(s, item, "CONSTR_CHECK")
    if c is None or col is not None:
        return None
    rel = names.rel(_table(s))
    name = c.get("conname")
    text = body(s.raw.text)
    if not name or not text or not _single_cmd(s):
        return None
    rec.file("add the check for new rows only (brief ACCESS EXCLUSIVE, no scan)").sql(f"{text} NOT VALID")
    rec.file("check the existing rows while reads and writes continue")
    rec.sql(f"ALTER TABLE {rel} VALIDATE CONSTRAINT {names.q(name)}")
    return rec.text()


def _mg203(s, st, item, rec: Recipe, names: Names):
    cmd = _cmd_of(s, item, "AT_ValidateConstraint")
    if cmd is None:
        return None
    rec.say("Keep the NOT VALID add in this migration and remove this statement from it.")
    rec.files = 1
    rec.file("after the add has committed and released its lock")
    rec.sql(f"ALTER TABLE {names.rel(_table(s))} VALIDATE CONSTRAINT {names.q(cmd['name'])}")
    return rec.text()


def _mg204(s, st, item, rec: Recipe, names: Names):
    c, col = _constraint(s, item, "CONSTR_UNIQUE")
    if c is None:
        return None
    table = derived_table(_table(s))
    cols = strings(c.get("keys")) or ([col["colname"]] if col else [])
    name = c.get("conname") or index_name(table, cols, unique=True)
    rel = names.rel(_table(s))
    rec.file("build the unique index online", alone=True)
    rec.sql(f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {names.q(name)} ON {rel} ({names.cols(cols)})")
    rec.file("attach it as the constraint (instant)")
    rec.sql(f"ALTER TABLE {rel} ADD CONSTRAINT {names.q(name)} UNIQUE USING INDEX {names.q(name)}")
    return rec.text()


def _mg205(s, st, item, rec: Recipe, names: Names):
    c, col = _constraint(s, item, "CONSTR_PRIMARY")
    if c is None:
        return None
    table = derived_table(_table(s))
    cols = strings(c.get("keys")) or ([col["colname"]] if col else [])
    name = c.get("conname") or index_name(table, cols, primary=True)
    rel = names.rel(_table(s))
    rec.file("build the key's unique index online", alone=True)
    rec.sql(f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {names.q(name)} ON {rel} ({names.cols(cols)})")
    rec.file(f"make {', '.join(cols)} NOT NULL without a long lock (see set-not-null), then attach the index (instant)")
    rec.sql(f"ALTER TABLE {rel} ADD CONSTRAINT {names.q(name)} PRIMARY KEY USING INDEX {names.q(name)}")
    return rec.text()


def _mg206(s, st, item, rec: Recipe, names: Names):
    c, _ = _constraint(s, item, "CONSTR_PRIMARY")
    if c is None or not c.get("indexname"):
        return None
    rel = names.rel(_table(s))
    rec.say(f"Make the key's columns NOT NULL first (the set-not-null recipe, one migration per step), so "
            f"attaching index {c['indexname']} needs no scan; then:")
    rec.sql(f"ALTER TABLE {rel} ADD CONSTRAINT {names.q(c.get('conname') or derived_table(_table(s)) + '_pkey')} "
            f"PRIMARY KEY USING INDEX {names.q(c['indexname'])}")
    return rec.text()


def _mg208(s, st, item, rec: Recipe, names: Names):
    cmd = _cmd_of(s, item, "AT_SetNotNull")
    if cmd is None:
        return None
    table, col = derived_table(_table(s)), cmd["name"]
    rel, qc = names.rel(_table(s)), names.q(col)
    check = names.q(make_object_name(table, col, "not_null"))
    rec.file("a NOT VALID check: brief ACCESS EXCLUSIVE, no scan")
    rec.sql(f"ALTER TABLE {rel} ADD CONSTRAINT {check} CHECK ({qc} IS NOT NULL) NOT VALID")
    rec.file("validate while reads and writes continue, then SET NOT NULL needs no scan "
             "(PostgreSQL 12+)")
    rec.sql(f"ALTER TABLE {rel} VALIDATE CONSTRAINT {check}", f"ALTER TABLE {rel} ALTER COLUMN {qc} SET NOT NULL",
            f"ALTER TABLE {rel} DROP CONSTRAINT {check}")
    if st.ctx.pg_version >= 18:
        rec.say(f"PostgreSQL 18+: ALTER TABLE {rel} ADD CONSTRAINT {check} NOT NULL {qc} NOT VALID; then VALIDATE it.")
    return rec.text()


def _mg209(s, st, item, rec: Recipe, names: Names):
    cmd = _cmd_of(s, item, "AT_DropNotNull")
    if cmd is None:
        return None
    rel, qc = names.rel(_table(s)), names.q(cmd["name"])
    rec.say(f"Deploy every reader of {rel}.{qc} that copes with NULL first; this migration itself is instant.")
    return rec.text()


def _mg210(s, st, item, rec: Recipe, names: Names):
    cmd = _cmd_of(s, item, "AT_DropConstraint")
    if cmd is None:
        return None
    rel, name = names.rel(_table(s)), names.q(cmd["name"])
    rec.say(f"Confirm nothing relies on {cmd['name']} (back up the table's definition), and make the drop re-runnable:")
    rec.sql(f"ALTER TABLE {rel} DROP CONSTRAINT IF EXISTS {name}")
    return rec.text()


def _mg213(s, st, item, rec: Recipe, names: Names):
    c, _ = _constraint(s, item, "CONSTR_PRIMARY")
    if c is None:
        return None
    table = derived_table(_table(s))
    cols = strings(c.get("keys"))
    pkey = c.get("conname") or index_name(table, cols, primary=True)
    new = make_object_name(table, "_".join(cols), "key")
    rel = names.rel(_table(s))
    drop = _cmd_of(s, None, "AT_DropConstraint")
    old = names.q(drop["name"]) if drop else names.q(index_name(table, cols, primary=True))
    rec.file("build the new key's index online", alone=True)
    rec.sql(f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {names.q(new)} ON {rel} ({names.cols(cols)})")
    rec.file("swap the key in one short statement (no index build under the lock)")
    rec.sql(f"ALTER TABLE {rel} DROP CONSTRAINT {old}, ADD CONSTRAINT {names.q(pkey)} PRIMARY KEY USING INDEX "
            f"{names.q(new)}")
    rec.say("Foreign keys that reference the old key must be dropped first and re-added NOT VALID afterwards.")
    return rec.text()


def _mg214(s, st, item, rec: Recipe, names: Names):
    c, col = _constraint(s, item, "CONSTR_FOREIGN")
    if c is None:
        return None
    table = derived_table(_table(s))
    cols = strings(c.get("fk_attrs")) or [col["colname"]]
    name = index_name(table, cols)
    rel = names.rel(_table(s))
    new = st.is_new(rv_name(_table(s)))
    if new:
        rec.say("The table is new in this file: index the key columns here.")
        rec.sql(f"CREATE INDEX IF NOT EXISTS {names.q(name)} ON {rel} ({names.cols(cols)})")
    else:
        rec.file("index the key columns online", alone=True)
        rec.sql(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {names.q(name)} ON {rel} ({names.cols(cols)})")
    return rec.text()


# ------------------------------------------------------------------ columns

def _add_col(s: Stmt, item: dict | None) -> dict | None:
    cmd = _cmd_of(s, item, "AT_AddColumn")
    return (cmd or {}).get("def", {}).get("ColumnDef")


def _mg303(s, st, item, rec: Recipe, names: Names):
    col = _add_col(s, item)
    if col is None:
        return None
    rel, qc, typ = names.rel(_table(s)), names.q(col["colname"]), names.typ(col.get("typeName"))
    base = strings(col.get("typeName", {}).get("names"))[-1:] or ["?"]
    default = _DEFAULTS.get(base[0]) if not col.get("typeName", {}).get("arrayBounds") else "'{}'"
    if default:
        rec.say("Give it a constant default (metadata only on PostgreSQL 11+): pick the value existing rows should "
                "have.")
        rec.sql(f"ALTER TABLE {rel} ADD COLUMN {qc} {typ} NOT NULL DEFAULT {default}")
        return rec.text()
    table = derived_table(_table(s))
    check = names.q(make_object_name(table, col["colname"], "not_null"))
    rec.file("add it nullable, then backfill it in batches")
    rec.sql(f"ALTER TABLE {rel} ADD COLUMN {qc} {typ}")
    rec.file("once every row has a value: a NOT VALID check, validated without blocking")
    rec.sql(f"ALTER TABLE {rel} ADD CONSTRAINT {check} CHECK ({qc} IS NOT NULL) NOT VALID",
            f"ALTER TABLE {rel} VALIDATE CONSTRAINT {check}", f"ALTER TABLE {rel} ALTER COLUMN {qc} SET NOT NULL")
    return rec.text()


def _mg301(s, st, item, rec: Recipe, names: Names):
    col = _add_col(s, item)
    if col is None:
        return None
    rel, qc, typ = names.rel(_table(s)), names.q(col["colname"]), names.typ(col.get("typeName"))
    rec.file("add the column without a default (no rewrite); set the default for new rows")
    rec.sql(f"ALTER TABLE {rel} ADD COLUMN {qc} {typ}")
    rec.say(f"then ALTER TABLE {rel} ALTER COLUMN {qc} SET DEFAULT <the expression>; and backfill old rows in "
            "batches (`-- guardian: batch 1000` before the UPDATE).")
    return rec.text()


_mg302 = _mg301


def _mg305(s, st, item, rec: Recipe, names: Names):
    col = _add_col(s, item)
    if col is None:
        return None
    table = derived_table(_table(s))
    rel, qc = names.rel(_table(s)), names.q(col["colname"])
    seq = names.q(make_object_name(table, col["colname"], "seq"))
    rec.file("a plain column and its sequence: no rewrite")
    rec.sql(f"ALTER TABLE {rel} ADD COLUMN {qc} bigint", f"CREATE SEQUENCE IF NOT EXISTS {seq} OWNED BY {rel}.{qc}",
            f"ALTER TABLE {rel} ALTER COLUMN {qc} SET DEFAULT nextval('{seq}')")
    rec.say("Then backfill old rows in batches and make the column NOT NULL with the set-not-null recipe.")
    return rec.text()


def _mg306(s, st, item, rec: Recipe, names: Names):
    cmd = _cmd_of(s, item, "AT_AlterColumnType")
    if cmd is None:
        return None
    col = cmd["name"]
    table = derived_table(_table(s))
    rel, qc = names.rel(_table(s)), names.q(col)
    new = names.q(make_object_name(col, None, "new"))
    typ = names.typ(cmd["def"]["ColumnDef"].get("typeName"))
    rec.file("expand: a new column of the new type, kept in sync by the application or a trigger")
    rec.sql(f"ALTER TABLE {rel} ADD COLUMN {new} {typ}")
    rec.say(f"Backfill it in batches (`-- guardian: batch 1000`):\nUPDATE {rel} SET {new} = {qc}::{typ} WHERE {new} IS NULL;")
    rec.file("contract, once every reader uses the new column: swap the names in one short transaction")
    rec.sql(f"ALTER TABLE {rel} RENAME COLUMN {qc} TO {names.q(make_object_name(col, None, 'old'))}",
            f"ALTER TABLE {rel} RENAME COLUMN {new} TO {qc}")
    rec.say(f"Drop {make_object_name(col, None, 'old')} in a later release. Binary-coercible changes (varchar(n) to "
            f"text or a longer varchar) need none of this.")
    del table
    return rec.text()


def _mg307(s, st, item, rec: Recipe, names: Names):
    cmd = _cmd_of(s, item, "AT_AlterColumnType")
    if cmd is None:
        return None
    rel, qc = names.rel(_table(s)), names.q(cmd["name"])
    typ = names.typ(cmd["def"]["ColumnDef"].get("typeName"))
    rec.say("Change the type alone; make the column NOT NULL with the set-not-null recipe in later migrations:")
    rec.sql(f"ALTER TABLE {rel} ALTER COLUMN {qc} TYPE {typ}")
    return rec.text()


# ------------------------------------------------------------------ destructive

def _mg501(s, st, item, rec: Recipe, names: Names):
    objs = [strings(x["List"]["items"]) for x in s.node.get("objects") or () if "List" in x]
    if not objs:
        return None
    for o in objs:
        rel = names.qualified(o)
        rec.say(f"Stop all use of {rel} and deploy; back it up (pg_dump -t '{rel}'); check it is unused, then:")
    rec.sql("DROP TABLE IF EXISTS " + ", ".join(names.qualified(o) for o in objs))
    return rec.text()


def _mg502(s, st, item, rec: Recipe, names: Names):
    cmd = _cmd_of(s, item, "AT_DropColumn")
    if cmd is None:
        return None
    rel, qc = names.rel(_table(s)), names.q(cmd["name"])
    rec.say(f"First deploy code that no longer reads or writes {rel}.{qc} (Prisma: remove the field from "
            "schema.prisma and deploy the client); back up the column; then, re-runnable:")
    rec.sql(f"ALTER TABLE {rel} DROP COLUMN IF EXISTS {qc}")
    return rec.text()


def _mg505(s, st, item, rec: Recipe, names: Names):
    n = s.node
    if n.get("renameType") != "OBJECT_COLUMN":
        return None
    rel, old, new = names.rel(n.get("relation")), names.q(n["subname"]), names.q(n["newname"])
    rec.file("expand: add the new column; write both from the application and backfill")
    rec.say(f"ALTER TABLE {rel} ADD COLUMN {new} <type of {old}>;")
    rec.file("contract, once every reader uses the new name")
    rec.sql(f"ALTER TABLE {rel} DROP COLUMN IF EXISTS {old}")
    return rec.text()


def _mg506(s, st, item, rec: Recipe, names: Names):
    n = s.node
    if n.get("renameType") != "OBJECT_TABLE" or not n.get("relation"):
        return None
    old_rv = n["relation"]
    old = names.rel(old_rv)
    schema = old_rv.get("schemaname")
    new = (f"{names.q(schema)}." if schema else "") + names.q(n["newname"])
    rec.say("Rename and leave a view under the old name in the same migration, for clients not yet deployed:")
    rec.sql(body(s.raw.text) or f"ALTER TABLE {old} RENAME TO {names.q(n['newname'])}",
            f"CREATE VIEW {old} AS SELECT * FROM {new}")
    rec.say(f"Drop the view {old} once every client uses {new}.")
    return rec.text()


def _mg509(s, st, item, rec: Recipe, names: Names):
    n = s.node
    if not n.get("newVal") or n.get("skipIfNewValExists"):
        return None
    text = body(s.raw.text)
    import re
    m = re.search(r"\bADD\s+VALUE\s+", text, re.IGNORECASE)
    if not m:
        return None
    rec.say("Deploy readers that accept the new value first; make the add re-runnable:")
    rec.sql(text[:m.end()] + "IF NOT EXISTS " + text[m.end():])
    return rec.text()


# ------------------------------------------------------------------ transactions, data

def _mg601(s, st, item, rec: Recipe, names: Names):
    rec.say("At the top of the file, so a blocked lock fails fast instead of queueing every query behind it:")
    rec.sql("SET lock_timeout = '5s'")
    rec.say("(Guardian's runner sets it for you when it applies the file; other runners do not.)")
    return rec.text()


def _mg602(s, st, item, rec: Recipe, names: Names):
    rec.say("At the top of the file, sized for the work:")
    rec.sql("SET statement_timeout = '15min'")
    return rec.text()


def _mg701(s, st, item, rec: Recipe, names: Names):
    text = body(s.raw.text)
    if not text:
        return None
    rec.say("If every row really is meant, run it in short keyset batches instead of one long transaction:")
    rec.say("guardian: batch 1000")
    rec.sql(text)
    return rec.text()


def _mg702(s, st, item, rec: Recipe, names: Names):
    text = body(s.raw.text)
    if not text:
        return None
    rec.say("Run it in short keyset batches, each its own transaction (Guardian's apply does, given this comment):")
    rec.say("guardian: batch 1000")
    rec.sql(text)
    return rec.text()


def _column_as(make: Callable[[Names, dict], str], why: str) -> Callable[..., str | None]:
    def gen(s, st, item, rec: Recipe, names: Names):
        if not item or "colname" not in item:
            return None
        rec.say(f"{why} Declare it as:\n  {names.q(item['colname'])} {make(names, item)}")
        return rec.text()
    return gen


def _mods(names: Names, col: dict) -> str:
    t = names.typ(col.get("typeName"))
    return t[t.index("("):] if "(" in t else ""


_mg801 = _column_as(lambda n, c: "bigint", "An integer key runs out at 2^31 rows; changing it later rewrites the table.")
_mg802 = _column_as(lambda n, c: ("bigint" if "big" in n.typ(c.get("typeName")) else "integer")
                    + " GENERATED BY DEFAULT AS IDENTITY", "Identity columns own their sequence.")
_mg803 = _column_as(lambda n, c: "timestamptz" + _mods(n, c), "A timestamp without time zone depends on the "
                    "writer's TimeZone.")
_mg804 = _column_as(lambda n, c: "text", "char(n) pads with spaces.")
_mg309 = _column_as(lambda n, c: f"text CHECK (length({n.q(c['colname'])}) <= {_mods(n, c).strip('()') or 'n'})",
                    "A CHECK on length can be replaced NOT VALID later; a varchar limit needs ACCESS EXCLUSIVE.")
_mg310 = _column_as(lambda n, c: "jsonb", "jsonb can be compared, indexed and is parsed once.")


def _mg413(s, st, item, rec: Recipe, names: Names):
    rel = names.rel(_table(s))
    rec.say(f"Each ALTER TABLE {rel} takes the table lock again: put its actions in one statement, separated by "
            "commas (ALTER TABLE ... ADD COLUMN ..., ALTER COLUMN ...).")
    return rec.text()

def _target(s: Stmt, names: Names) -> str:
    """The statement's main relation, quoted as the file quotes it (or the first one it locks)."""
    n = s.node
    rv = n.get("relation") or (n.get("into") or {}).get("rel")
    if rv:
        return names.rel(rv)
    target = s.fx.target or next(iter(s.fx.locks), None)
    return names.qualified(target.split(".")) if target else ""


def _prose(text: Callable[[str, Stmt], str]) -> Callable[..., str | None]:
    """A recipe in words, naming the statement's own relation."""
    def gen(s, st, item, rec: Recipe, names: Names):
        rel = _target(s, names)
        if not rel:
            return None
        rec.say(text(rel, s))
        return rec.text()
    return gen


def _alone_statement(why: str) -> Callable[..., str | None]:
    def gen(s, st, item, rec: Recipe, names: Names):
        text = body(s.raw.text)
        if not text:
            return None
        rec.file(why, alone=True).sql(text)
        rec.say("Remove it from this file.")
        return rec.text()
    return gen


def _mg604(s, st, item, rec: Recipe, names: Names):
    n = s.node
    if s.type == "IndexStmt":
        sql, _ = online_index(s.raw.text, n, names)
    elif s.type == "DropStmt":
        objs = [strings(x["List"]["items"]) for x in n.get("objects") or () if "List" in x]
        if not objs:
            return None
        sql = f"DROP INDEX CONCURRENTLY IF EXISTS {names.qualified(objs[0])}"
    else:
        return None
    rec.say("Re-runnable after a failure part-way:").sql(sql)
    return rec.text()


def _mg405(s, st, item, rec: Recipe, names: Names):
    rel = _target(s, names)
    if not rel:
        return None
    rec.say(f"{rel} needs a unique index on plain columns once (CREATE UNIQUE INDEX CONCURRENTLY ... ON {rel} (...)); "
            "then refresh without blocking readers:")
    rec.sql(f"REFRESH MATERIALIZED VIEW CONCURRENTLY {rel}")
    return rec.text()


def _mg406(s, st, item, rec: Recipe, names: Names):
    cmd = _cmd_of(s, item, "AT_DetachPartition")
    if cmd is None:
        return None
    part = names.rel(cmd["def"]["PartitionCmd"]["name"])
    rec.file("detach without locking the parent (PostgreSQL 14+)", alone=True)
    rec.sql(f"ALTER TABLE {names.rel(_table(s))} DETACH PARTITION {part} CONCURRENTLY")
    return rec.text()


def _mg412(s, st, item, rec: Recipe, names: Names):
    rels = [names.rel(r) for r in s.node.get("relations") or ()]
    if not rels:
        return None
    rec.say("Back these up first; empty exactly the tables meant, without CASCADE (it fails if another table "
            "still references them):")
    rec.sql("TRUNCATE " + ", ".join(rels))
    return rec.text()


def _mg606(s, st, item, rec: Recipe, names: Names):
    rec.say("End the transaction at the end of the file:").sql("COMMIT")
    return rec.text()


def _mg608(s, st, item, rec: Recipe, names: Names):
    text = body(s.raw.text)
    if not text:
        return None
    rec.say("Keep the ADD VALUE in this migration and move this statement out of it.")
    rec.files = 1
    rec.file("after the ADD VALUE has committed")
    rec.sql(text)
    return rec.text()


def _mg807(s, st, item, rec: Recipe, names: Names):
    rec.say("Each column may appear once: remove the repeated assignment (the statement fails as written).")
    return rec.text()


_GENERATORS_MORE = {
    "MG604": _mg604, "MG405": _mg405, "MG406": _mg406, "MG412": _mg412, "MG606": _mg606, "MG608": _mg608,
    "MG807": _mg807,
    "MG607": _alone_statement("run it on its own, so a failure cannot leave the rest of this file half applied"),
    "MG402": _prose(lambda rel, s: f"SET ACCESS METHOD rewrites {rel}: create the new table with the access method, "
                    "copy in batches and swap names in one short transaction."),
    "MG401": _prose(lambda rel, s: f"SET LOGGED/UNLOGGED rewrites {rel}: create a new table with the wanted "
                    "persistence, copy in batches and swap names."),
    "MG403": _prose(lambda rel, s: f"SET TABLESPACE copies {rel} under ACCESS EXCLUSIVE: use pg_repack --tablespace, "
                    "or a new table in the tablespace plus a swap."),
    "MG404": _prose(lambda rel, s: f"Rebuild {rel} online with pg_repack (pg_repack --table {rel}) or pg_squeeze; "
                    "on PostgreSQL 19, REPACK (CONCURRENTLY)."),
    "MG407": _prose(lambda rel, s: f"Before attaching, add a CHECK on the partition matching its bounds (NOT VALID, "
                    "then VALIDATE in a later migration): ATTACH PARTITION then skips its scan; drop the CHECK after."),
    "MG408": _prose(lambda rel, s: f"Creating a trigger on {rel} takes SHARE ROW EXCLUSIVE: set a short lock_timeout "
                    "before it and keep its function fast."),
    "MG409": _prose(lambda rel, s: f"Disabling triggers on {rel} skips them for every session's writes: keep it "
                    "out of migrations (session_replication_role in a maintenance job)."),
    "MG410": _prose(lambda rel, s: f"Check the publications and CDC consumers of {rel} first; prefer REPLICA "
                    "IDENTITY USING INDEX on a unique index."),
    "MG411": _prose(lambda rel, s: f"Keep autovacuum on for {rel}; tune its thresholds instead."),
    "MG414": _prose(lambda rel, s: f"LOCK TABLE {rel} blocks every query on it until COMMIT: use the weakest mode "
                    "that serves the purpose (SHARE ROW EXCLUSIVE blocks writes only) and set lock_timeout first."),
    "MG503": _prose(lambda rel, s: "Never from a routine migration: back up, get a second approval and run it by hand."),
    "MG504": _prose(lambda rel, s: f"Check pg_depend for what uses {rel}, drop it without CASCADE (then PostgreSQL "
                    "refuses while something depends on it), and keep its definition to restore."),
    "MG507": _prose(lambda rel, s: f"Add the new name or value beside {rel}, move clients to it, then remove the old "
                    "one in a later release."),
    "MG508": _prose(lambda rel, s: f"Leave a view (or wrapper) for {rel} in its old schema while clients move."),
    "MG510": _prose(lambda rel, s: f"Test {rel} with the application's role first: with row-level security on, "
                    "roles without a policy see no rows; create the policies before enabling it."),
    "MG512": _prose(lambda rel, s: f"Back up {rel} first; delete only the rows meant to go, in batches "
                    "(`-- guardian: batch 1000` before a DELETE ... WHERE)."),
    "MG603": _prose(lambda rel, s: f"Give this statement on {rel} its own migration (or put the statement taking "
                    "ACCESS EXCLUSIVE last), so the earlier lock is released before it runs."),
    "MG605": _prose(lambda rel, s: "Keep one BEGIN ... COMMIT block per transaction, or none and let the runner "
                    "own the transaction."),
    "MG806": _prose(lambda rel, s: f"Name the schema: write {rel} as <schema>.{rel} (e.g. public.{rel})."),
    "MG921": _prose(lambda rel, s: f"Prefer lower-case snake_case names for {rel} and its columns (Prisma: @@map and "
                    "@map keep the model names)."),
    "MG911": _prose(lambda rel, s: f"Order the columns of {rel} by alignment: 8-byte types first, then 4, 2 and 1; "
                    "variable-length types (text, numeric, jsonb) last."),
    "MG805": _prose(lambda rel, s: "Use names of at most 63 bytes; PostgreSQL clips longer ones, so the schema file "
                    "and the database disagree."),
    "MG313": _prose(lambda rel, s: f"Name the columns in every INSERT into {rel} and avoid SELECT * before adding "
                    "columns."),
}


_GENERATORS: dict[str, Callable[..., str | None]] = {
    "MG101": _mg101, "MG102": _mg102, "MG103": _mg103, "MG104": _mg104, "MG105": _mg105, "MG107": _mg107,
    "MG108": _mg108, "MG109": _mg109, "MG201": _mg201, "MG202": _mg202, "MG203": _mg203, "MG204": _mg204,
    "MG205": _mg205, "MG206": _mg206, "MG208": _mg208, "MG209": _mg209, "MG210": _mg210, "MG213": _mg213,
    "MG214": _mg214, "MG301": _mg301, "MG302": _mg302, "MG303": _mg303, "MG305": _mg305, "MG306": _mg306,
    "MG307": _mg307, "MG501": _mg501, "MG502": _mg502, "MG505": _mg505, "MG506": _mg506, "MG509": _mg509,
    "MG601": _mg601, "MG801": _mg801, "MG802": _mg802, "MG803": _mg803,
    "MG804": _mg804, "MG309": _mg309, "MG310": _mg310, "MG413": _mg413, "MG602": _mg602, "MG701": _mg701, "MG702": _mg702,
}
_GENERATORS.update({k: v for k, v in _GENERATORS_MORE.items() if v is not None})
