"""Column rules: rewriting defaults and types, required columns, generated/identity columns, types."""
from __future__ import annotations

import re
from typing import Iterator

from .. import catalog
from ..models import Severity
from ..nodes import column_constraints, const_null, rv_name, strings, type_name, volatility
from ..state import State, Stmt
from . import Hit, rule

R = rule("columns")
RULES = (
    R(code="MG301", name="volatile-default-rewrite", severity="high",
      summary="ADD COLUMN with a volatile DEFAULT rewrites the whole table under ACCESS EXCLUSIVE.",
      why="A volatile default (random(), gen_random_uuid(), clock_timestamp(), nextval()) must be computed per row, "
          "so PostgreSQL rewrites the table and all its indexes while reads and writes wait. Constant and stable "
          "defaults such as now() are stored once in the catalogue (PG 11+).",
      fix="ALTER TABLE t ADD COLUMN u uuid;\nALTER TABLE t ALTER COLUMN u SET DEFAULT gen_random_uuid();\n"
          "-- then backfill in batches: UPDATE t SET u = gen_random_uuid() WHERE id BETWEEN $1 AND $2 AND u IS NULL;",
      bad="ALTER TABLE t ADD COLUMN u uuid DEFAULT gen_random_uuid();",
      good="ALTER TABLE t ADD COLUMN created_at timestamptz DEFAULT now();", hazards=(21,), size=True),
    R(code="MG302", name="default-rewrite-before-pg11", severity="high",
      summary="Before PostgreSQL 11 any non-NULL DEFAULT on ADD COLUMN rewrites the table.",
      why="Fast defaults arrived in PostgreSQL 11; on 10 and older the value is written into every row under "
          "ACCESS EXCLUSIVE.",
      fix="ALTER TABLE t ADD COLUMN f int;\nALTER TABLE t ALTER COLUMN f SET DEFAULT 0;\n-- backfill existing rows in batches",
      bad="ALTER TABLE t ADD COLUMN f int DEFAULT 0;",
      good="ALTER TABLE t ADD COLUMN f int;\nALTER TABLE t ALTER COLUMN f SET DEFAULT 0;", hazards=(22,), size=True,
      pg=10),
    R(code="MG303", name="add-required-column", severity="high",
      summary="ADD COLUMN ... NOT NULL without a DEFAULT fails on a non-empty table and breaks old INSERTs.",
      why="Existing rows would be NULL, so PostgreSQL aborts the migration if the table has any row; even on an "
          "empty table, running code that does not set the column starts failing.",
      fix="Add it with a constant default (metadata only on PG 11+), or nullable and backfilled:\n"
          "ALTER TABLE t ADD COLUMN pub boolean NOT NULL DEFAULT false;",
      bad="ALTER TABLE t ADD COLUMN pub boolean NOT NULL;",
      good="ALTER TABLE t ADD COLUMN pub boolean NOT NULL DEFAULT false;", hazards=(23,), size=True),
    R(code="MG304", name="stored-generated-column", severity="high",
      summary="ADD COLUMN ... GENERATED ALWAYS AS (...) STORED rewrites the table.",
      why="Every row gets the computed value written under ACCESS EXCLUSIVE.",
      fix="Add a plain column, fill it with a trigger plus a batched backfill; on PostgreSQL 18 use a VIRTUAL "
          "generated column: ALTER TABLE t ADD COLUMN total int GENERATED ALWAYS AS (a + b) VIRTUAL;",
      bad="ALTER TABLE t ADD COLUMN total int GENERATED ALWAYS AS (a + b) STORED;",
      good="ALTER TABLE t ADD COLUMN total int;", hazards=(24,), size=True),
    R(code="MG305", name="add-auto-increment-column", severity="high",
      summary="ADD COLUMN serial/bigserial/IDENTITY on an existing table rewrites it.",
      why="Each row needs its own nextval(), so the table and its indexes are rewritten under ACCESS EXCLUSIVE.",
      fix="ALTER TABLE t ADD COLUMN id bigint;\nCREATE SEQUENCE t_id_seq OWNED BY t.id;\n"
          "ALTER TABLE t ALTER COLUMN id SET DEFAULT nextval('t_id_seq');  -- no rewrite\n"
          "-- backfill in batches, then make it NOT NULL safely",
      bad="ALTER TABLE t ADD COLUMN id bigserial;",
      good="ALTER TABLE t ADD COLUMN id bigint;", hazards=(25,), size=True),
    R(code="MG306", name="column-type-rewrite", severity="high",
      summary="ALTER COLUMN ... TYPE that is not binary-coercible rewrites the table and its indexes.",
      why="Changing e.g. int to bigint or text to varchar(n) rewrites every row under ACCESS EXCLUSIVE. "
          "Binary-coercible changes are metadata only: varchar(n) to varchar(m>n) or text, numeric(p,s) to "
          "numeric(p2>p,s), cidr to inet, raising timestamp/interval precision.",
      fix="Expand/contract: ALTER TABLE t ADD COLUMN id_new bigint; sync it with a trigger; backfill in batches; "
          "switch reads; drop the old column.",
      bad="ALTER TABLE t ALTER COLUMN id TYPE bigint;",
      good="ALTER TABLE t ALTER COLUMN name TYPE text;  -- name was varchar(50)", hazards=(26,), size=True),
    R(code="MG307", name="type-change-with-not-null", severity="high",
      summary="A type change combined with SET NOT NULL adds a full scan under the same lock.",
      why="Even a metadata-only type change then waits for the NOT NULL scan with ACCESS EXCLUSIVE held.",
      fix="Change the type alone; make the column NOT NULL with the CHECK ... NOT VALID / VALIDATE recipe.",
      bad="ALTER TABLE t ALTER COLUMN c TYPE text, ALTER COLUMN c SET NOT NULL;",
      good="ALTER TABLE t ALTER COLUMN c TYPE text;", hazards=(28,), size=True),
    R(code="MG308", name="collation-change", severity="high",
      summary="Changing a column's collation rebuilds its indexes (and may rewrite the table).",
      why="Index order depends on the collation, so every index on the column is rebuilt under ACCESS EXCLUSIVE.",
      fix="Expand/contract: add a column with the new collation, backfill, index it concurrently, swap.",
      bad="ALTER TABLE t ALTER COLUMN c TYPE text COLLATE \"C\";",
      good="ALTER TABLE t ADD COLUMN c_c text COLLATE \"C\";", hazards=(29,), size=True),
    R(code="MG309", name="prefer-text-over-varchar", severity="low",
      summary="varchar(n) limits cost a lock to change later; text with a CHECK is easier to evolve.",
      why="Raising the limit is metadata only but still takes ACCESS EXCLUSIVE; lowering it rewrites the table. "
          "A CHECK (length(c) <= n) can be replaced NOT VALID.",
      fix="name text CHECK (length(name) <= 100)",
      bad="CREATE TABLE t (name varchar(100));",
      good="CREATE TABLE t (name text CHECK (length(name) <= 100));", hazards=(30,)),
    R(code="MG310", name="json-column", severity="low",
      summary="A json column has no equality operator; jsonb is almost always what you want.",
      why="json breaks SELECT DISTINCT, UNION and GROUP BY, cannot be indexed with GIN and is re-parsed on every use.",
      fix="ALTER TABLE t ADD COLUMN props jsonb;",
      bad="ALTER TABLE t ADD COLUMN props json;",
      good="ALTER TABLE t ADD COLUMN props jsonb;", hazards=(31,)),
    R(code="MG311", name="set-default-on-existing-column", severity="low",
      summary="SET DEFAULT on an existing column silently changes what older clients write.",
      why="Clients that omit the column (ORMs with partial inserts) start writing the new value; the change takes "
          "a brief ACCESS EXCLUSIVE.",
      fix="Coordinate it with the application deploy and keep it in its own migration.",
      bad="ALTER TABLE t ALTER COLUMN c SET DEFAULT 5;",
      good="ALTER TABLE t ADD COLUMN c int DEFAULT 5;", hazards=(32,), default=False),
    R(code="MG312", name="alter-generated-or-identity", severity="medium",
      summary="Changing a generated expression or an identity changes values and may rewrite the table.",
      why="SET EXPRESSION (PG 17+) rewrites the table under ACCESS EXCLUSIVE; DROP EXPRESSION and identity changes "
          "alter what clients can write.",
      fix="Expand/contract: add a new column with the new expression, backfill, switch readers, drop the old one.",
      bad="ALTER TABLE t ALTER COLUMN g SET EXPRESSION AS (a * 2);",
      good="ALTER TABLE t ADD COLUMN g2 int;", hazards=(33,), size=True),
    R(code="MG313", name="add-column-breaks-positional-insert", severity="low",
      summary="A new column breaks INSERT ... VALUES without a column list and SELECT * consumers.",
      why="Positional inserts now get the wrong column count; code mapping SELECT * by position shifts.",
      fix="Name the columns in every INSERT and SELECT before adding columns.",
      bad="ALTER TABLE t ADD COLUMN q bigint;",
      good="CREATE TABLE t (q bigint);", hazards=(55,), default=False),
    R(code="MG314", name="type-change-blocked-by-view", severity="critical",
      summary="ALTER COLUMN ... TYPE on a column a view or materialized view selects fails.",
      why="PostgreSQL refuses to change the type of a column a view or rule depends on (\"cannot alter type of a "
          "column used by a view or rule\"): the migration stops there, whatever the new type.",
      fix="Drop the view, change the type and create the view again, in one transaction:\n"
          "DROP VIEW v;\nALTER TABLE t ALTER COLUMN email TYPE varchar(200);\n"
          "CREATE VIEW v AS SELECT id, email FROM t;",
      bad="CREATE VIEW v AS SELECT id, name FROM t;\nALTER TABLE t ALTER COLUMN name TYPE varchar(100);",
      good="DROP VIEW v;\nALTER TABLE t ALTER COLUMN name TYPE varchar(100);\nCREATE VIEW v AS SELECT id, name FROM t;",
      hazards=(26,)),
    R(code="MG315", name="type-change-rebuilds-index", severity="high",
      summary="A type change that keeps the table's storage still rebuilds expression and partial indexes on the column.",
      why="Even a binary-coercible change (varchar(n) to a wider varchar or text, numeric precision) rebuilds every "
          "expression or partial index that reads the column, and timestamp to timestamptz (TimeZone UTC) every "
          "index on it, under ACCESS EXCLUSIVE: reads and writes wait for the builds.",
      fix="Drop the index first and build it again concurrently after the type change:\n"
          "DROP INDEX CONCURRENTLY t_lower_name_idx;\nALTER TABLE t ALTER COLUMN name TYPE varchar(100);\n"
          "CREATE INDEX CONCURRENTLY t_lower_name_idx ON t (lower(name));",
      bad="CREATE INDEX CONCURRENTLY t_lower_name_idx ON t (lower(name));\n"
          "ALTER TABLE t ALTER COLUMN name TYPE varchar(100);",
      good="ALTER TABLE t ALTER COLUMN name TYPE varchar(100);", hazards=(26,), size=True),
    R(code="MG316", name="add-column-constrained-domain", severity="high",
      summary="ADD COLUMN of a domain with a CHECK or NOT NULL rewrites the table.",
      why="PostgreSQL cannot store the new column's value in the catalogue when its domain has constraints: each "
          "row's value is checked against them, so the table and its indexes are rewritten under ACCESS EXCLUSIVE.",
      fix="Add the column with the domain's base type and put the CHECK on it, NOT VALID, validated later:\n"
          "ALTER TABLE t ADD COLUMN quantity int;\n"
          "ALTER TABLE t ADD CONSTRAINT t_quantity_pos CHECK (quantity > 0) NOT VALID;",
      bad="CREATE DOMAIN positive_int AS int CHECK (VALUE > 0);\nALTER TABLE big_events ADD COLUMN quantity positive_int;",
      good="ALTER TABLE big_events ADD COLUMN quantity int;\n"
           "ALTER TABLE big_events ADD CONSTRAINT big_events_quantity_pos CHECK (quantity > 0) NOT VALID;",
      hazards=(20,), size=True),
)

_TYPE = re.compile(r"^([a-z ]+?)(?:\(([\d, ]+)\))?(\[\])?$")
_TEXTY = {"varchar", "text"}
_PRECISION = {"timestamp", "timestamptz", "interval", "time", "timetz"}


_SPELLINGS = (  # format_type() spellings (what the catalogue reports) -> the short names the parser gives
    (re.compile(r"^timestamp(\(\d+\))? with time zone"), r"timestamptz\1"),
    (re.compile(r"^timestamp(\(\d+\))? without time zone"), r"timestamp\1"),
    (re.compile(r"^time(\(\d+\))? with time zone"), r"timetz\1"),
    (re.compile(r"^time(\(\d+\))? without time zone"), r"time\1"),
    (re.compile(r"^character varying"), "varchar"),
    (re.compile(r"^character(?=\(|$|\[)"), "char"),
    (re.compile(r"^bit varying"), "varbit"),
)


def _split_type(t: str) -> tuple[str, tuple[int, ...], bool]:
    t = t.lower().strip()
    for pattern, repl in _SPELLINGS:
        t = pattern.sub(repl, t)
    m = _TYPE.match(t)
    if not m:
        return t.lower(), (), False
    mods = tuple(int(x) for x in (m.group(2) or "").replace(" ", "").split(",") if x)
    return m.group(1).strip().replace("character varying", "varchar"), mods, bool(m.group(3))


def binary_coercible(old: str, new: str, pg: int) -> bool | None:
    """True: metadata only; False: rewrite; None: depends on the session (timestamp <-> timestamptz)."""
    ob, om, oa = _split_type(old)
    nb, nm, na = _split_type(new)
    if oa != na:
        return False
    if ob == nb and om == nm:
        return True
    if ob in _TEXTY and nb in _TEXTY:
        if nb == "text" or not nm:
            return True
        return ob == "varchar" and bool(om) and nm[0] >= om[0]
    if ob == nb == "numeric":
        return not nm or (bool(om) and len(nm) == 2 and len(om) == 2 and nm[1] == om[1] and nm[0] >= om[0])
    if ob == nb and ob in _PRECISION | {"varbit", "bit varying"}:
        return not nm or (bool(om) and nm[0] >= om[0])
    if (ob, nb) == ("cidr", "inet"):
        return True
    if {ob, nb} == {"timestamp", "timestamptz"} and pg >= 12:
        return None
    return False


_MAYBE_COERCIBLE = _TEXTY | {"numeric", "inet", "timestamptz", "timestamp", "varbit", "interval"}


# Statement types this family looks at (None: all).
TYPES: frozenset[str] | None = frozenset({"CreateStmt", "AlterTableStmt"})

def check(s: Stmt, st: State) -> Iterator[Hit]:
    t, n = s.type, s.node
    if t == "CreateStmt":
        for elt in n.get("tableElts") or ():
            if "ColumnDef" in elt:
                yield from _column_type(elt["ColumnDef"], rv_name(n.get("relation")))
        return
    if t != "AlterTableStmt" or n.get("objtype", "OBJECT_TABLE") != "OBJECT_TABLE":
        return
    table = rv_name(n.get("relation"))
    new = st.is_new(table)
    cmds = [c["AlterTableCmd"] for c in n.get("cmds") or ()]
    subs = {c.get("subtype") for c in cmds}
    for cmd in cmds:
        sub = cmd.get("subtype")
        if sub == "AT_AddColumn":
            col = cmd["def"]["ColumnDef"]
            yield from _column_type(col, table)
            if not new and table not in st.emptied:  # emptied earlier in the file: no row to rewrite or fail
                yield from (h._replace(item=cmd) for h in _add_column(col, table, st, s))
        elif new:
            continue
        elif sub == "AT_AlterColumnType":
            yield from (h._replace(item=cmd) for h in _alter_type(cmd, table, st, "AT_SetNotNull" in subs, s))
        elif sub == "AT_ColumnDefault" and cmd.get("def"):
            yield Hit("MG311", f"New default for {table}.{cmd.get('name')} changes what clients that omit it write.")
        elif sub == "AT_SetExpression":
            yield Hit("MG312", f"SET EXPRESSION on {table}.{cmd.get('name')} rewrites the table.", table)
        elif sub in ("AT_DropExpression", "AT_AddIdentity", "AT_SetIdentity", "AT_DropIdentity"):
            yield Hit("MG312", f"{sub[3:]} on {table}.{cmd.get('name')} changes the values clients get or may write.",
                      table, Severity.LOW)


def _column_type(col: dict, table: str) -> Iterator[Hit]:
    tn = type_name(col.get("typeName")).lower()
    if tn.startswith("varchar("):
        yield Hit("MG309", f"{table}.{col.get('colname')} is {tn}; prefer text with a CHECK on length.", item=col)
    elif tn == "json":
        yield Hit("MG310", f"{table}.{col.get('colname')} is json; use jsonb.", item=col)


def _add_column(col: dict, table: str, st: State, s: Stmt) -> Iterator[Hit]:
    name = col.get("colname")
    v = st.ctx.pg_version
    cons = column_constraints(col)
    kinds = {c.get("contype") for c in cons}
    tn = type_name(col.get("typeName")).lower()
    yield Hit("MG313", f"New column {table}.{name} shifts positional INSERTs and SELECT * readers.")
    domain = _constrained_domain(col, st)
    if domain:
        s.fx.rewrite = True
        yield Hit("MG316", f"{table}.{name} is of domain {domain}: the table is rewritten to check every row "
                  "against it.", table)
    if tn in ("serial", "bigserial", "smallserial", "serial4", "serial8", "serial2") or "CONSTR_IDENTITY" in kinds:
        yield Hit("MG305", f"{table}.{name} ({tn}) needs a value per row: the table is rewritten.", table)
    for c in cons:
        if c.get("contype") == "CONSTR_GENERATED" and c.get("generated_kind", "s") != "v":
            yield Hit("MG304", f"Stored generated column {table}.{name} rewrites the table.", table)
    default = next((c.get("raw_expr") for c in cons if c.get("contype") == "CONSTR_DEFAULT"), None)
    if not const_null(default):
        vol = volatility(default, st.ctx.functions)
        if v < 11:
            yield Hit("MG302", f"On PostgreSQL {v} the DEFAULT of {table}.{name} is written into every row.", table)
        elif vol == "volatile":
            yield Hit("MG301", f"Volatile DEFAULT on {table}.{name} rewrites the table and its indexes.", table)
        elif vol == "unknown":
            yield Hit("MG301", f"DEFAULT on {table}.{name} calls a function of unknown volatility; if it is volatile "
                      "the table is rewritten (give its volatility in the context).", table, Severity.MEDIUM)
    elif "CONSTR_NOTNULL" in kinds and "CONSTR_IDENTITY" not in kinds and "CONSTR_GENERATED" not in kinds \
            and not tn.endswith("serial"):
        yield Hit("MG303", f"{table}.{name} is NOT NULL without a DEFAULT: fails if {table} has rows.", table)


def _alter_type(cmd: dict, table: str, st: State, with_not_null: bool, s: Stmt) -> Iterator[Hit]:
    col = cmd.get("name", "")
    cdef = cmd["def"]["ColumnDef"]
    new = type_name(cdef.get("typeName")).lower()
    enum = (strings((cdef.get("typeName") or {}).get("names")) or ["?"])[-1]
    if enum in st.enum_types:  # Prisma's enum swap: one finding, on the statement that rewrites the table
        s.fx.rewrite = True
        kept = ", ".join(st.enum_types[enum])
        yield Hit("MG306", f"Enum change: rewrites {table} to move {col} to {enum} ({kept}); any other value of the "
                  f"old type disappears: rows holding one make this fail, and app code still writing one fails "
                  f"after it.", table)
        return
    facts = st.facts(table)
    collate = bool(cdef.get("collClause"))
    if collate and facts is None:
        yield Hit("MG308", f"Collation change on {table}.{col} rebuilds the indexes on it (with none, it is "
                  f"catalog-only); to name them, {catalog.HOW}.", table)
    elif collate:  # measured on PG 15: every index on the column gets a new filenode, the heap keeps its own
        names = _indexes_on(table, col, facts, st, every=True)
        if names:
            yield Hit("MG308", f"Collation change on {table}.{col}: {_are_rebuilt(names)}.", table)
    if with_not_null:
        yield Hit("MG307", f"{table}.{col}: type change and SET NOT NULL in one statement.", table)
    known = st.coltypes.get((table, col))
    stats = st.stats(table)
    if known is None and stats and col in stats.columns:
        known = stats.columns[col]
    views = _views(table, col, facts, st)
    if views:
        yield Hit("MG314", f"{' and '.join(views)} select{'s' * (len(views) == 1)} {table}.{col}: ALTER COLUMN TYPE "
                  "fails (\"cannot alter type of a column used by a view or rule\").", table)
        return
    using = cdef.get("raw_default") is not None
    if known is not None:
        verdict = binary_coercible(known, new, st.ctx.pg_version)
        zone = st.ctx.timezone if facts is not None else None
        if verdict is None and zone is not None and not using:
            if zero_offset(zone):  # PostgreSQL keeps the heap; every index on the column is rebuilt
                yield from () if collate else _rebuilt(table, col, facts, st, f"with TimeZone {zone} {known} -> "
                                                       f"{new} keeps the heap, but", every=True)
                return
            s.fx.rewrite = True
            yield Hit("MG306", f"{table}.{col} {known} -> {new} rewrites the table and its indexes: the runner's "
                      f"TimeZone is {zone}, not UTC, so every value is converted.", table)
            return
        if verdict is True and not using:
            yield from () if collate else _rebuilt(table, col, facts, st, f"{known} -> {new} keeps the heap, but")
            return
        if verdict is None and not using:
            yield Hit("MG306", f"{table}.{col} {known} -> {new} is metadata only when the session TimeZone is UTC, "
                      "otherwise the table is rewritten; even then indexes on it are rebuilt. To decide it from the "
                      f"runner's TimeZone and the indexes, {catalog.HOW}.", table, Severity.MEDIUM)
            return
        s.fx.rewrite = True
        yield Hit("MG306", f"{table}.{col} {known} -> {new} rewrites the table and its indexes.", table)
        return
    base = _split_type(new)[0]
    if base in _MAYBE_COERCIBLE and not using:
        yield Hit("MG306", f"{table}.{col} -> {new}: metadata only if the old type is binary-coercible "
                  "(e.g. varchar(n) -> text), otherwise a full rewrite; old type unknown. Even a metadata-only "
                  "change rebuilds the expression indexes on the column, re-checks its CHECKs and fails if a view "
                  f"selects it; to decide it, {catalog.HOW}.", table, Severity.MEDIUM)
    else:
        s.fx.rewrite = True
        yield Hit("MG306", f"{table}.{col} -> {new} rewrites the table and its indexes.", table)


# TimeZone settings with a UTC offset of zero at all times: PostgreSQL then keeps the heap of timestamp <->
# timestamptz (TimestampTimestampTzRequiresRewrite).
_ZERO = re.compile(r"(etc/)?(utc|uct|gmt|zulu|universal|greenwich|gmt[+-]?0)", re.IGNORECASE)


def zero_offset(zone: str) -> bool:
    """Whether a TimeZone setting is UTC all year.

    >>> zero_offset("Etc/UTC"), zero_offset("Europe/London")
    (True, False)
    """
    return bool(_ZERO.fullmatch(zone.strip()))


def _views(table: str, col: str, facts, st: State) -> list[str]:
    """Views selecting the column: the target's (not dropped earlier in this file) and this file's."""
    found = [v for v in (facts.column_facts[col].views if facts is not None and col in facts.column_facts else ())
             if v not in st.dropped_views and v.rsplit(".", 1)[-1] not in st.dropped_views]
    for key in ((table, col), (table, "*")):
        view = st.view_columns.get(key)
        if view is not None and view not in st.dropped_views and view not in found:
            found.append(view)
    return found


def _rebuilt(table: str, col: str, facts, st: State, lead: str, every: bool = False) -> Iterator[Hit]:
    """MG315 for the indexes on the column a storage-keeping type change rebuilds (expression and partial
    ones; with `every`, all of them)."""
    names = _indexes_on(table, col, facts, st, every)
    if names:
        yield Hit("MG315", f"{table}.{col}: {lead} {_are_rebuilt(names)}.", table)


def _indexes_on(table: str, col: str, facts, st: State, every: bool) -> list[str]:
    """The indexes on the column (expression, partial and invalid ones; with `every`, all), from the target's
    catalog and this file's CREATE INDEX, each with its kind."""
    names = [f"{i.name} ({'expression' if i.expression else 'partial' if i.partial else 'index'})"
             for i in (facts.index_facts if facts is not None else ())
             if col in i.uses and (every or i.expression or i.partial or not i.valid)
             and i.name not in st.dropped_indexes]
    return names + [f"{name} ({'expression or partial' if rebuilt else 'index'})"
                    for name, (on, uses, rebuilt) in st.index_defs.items()
                    if on == table and col in uses and (every or rebuilt) and name not in st.dropped_indexes]


def _are_rebuilt(names: list[str]) -> str:
    return f"{', '.join(names)} on it {'is' if len(names) == 1 else 'are'} rebuilt under ACCESS EXCLUSIVE"


def _constrained_domain(col: dict, st: State) -> str | None:
    """The domain with constraints (CHECK or NOT NULL) a new column uses: created in this file or the target's."""
    names = strings((col.get("typeName") or {}).get("names"))
    if not names or names[0] == "pg_catalog":
        return None
    name = names[-1]
    if name in st.domains:
        return name if st.domains[name] else None
    found = st.domain(".".join(names))
    return name if found is not None and found.kind == "domain" and (found.checks or found.not_null) else None
