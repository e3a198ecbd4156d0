"""Constraint rules: validated adds, UNIQUE/PK/EXCLUDE builds, NOT NULL, drops, domains, FK indexes."""
from __future__ import annotations

from typing import Iterator

from .. import catalog
from ..models import Severity
from ..nodes import column_constraints, const_null, rv_name, strings, type_name
from ..state import State, Stmt
from . import Hit, rule

R = rule("constraints")
RULES = (
    R(code="MG201", name="foreign-key-validated", severity="high",
      summary="Adding a FOREIGN KEY validates every existing row while both tables are write-locked.",
      why="ADD FOREIGN KEY takes SHARE ROW EXCLUSIVE on the table and the referenced table, then scans the table: "
          "writes to both wait for the whole scan.",
      fix="ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;\n"
          "-- in a separate transaction (SHARE UPDATE EXCLUSIVE only, writes continue):\n"
          "ALTER TABLE orders VALIDATE CONSTRAINT orders_user_fk;",
      bad="ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);",
      good="ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;",
      hazards=(9,), size=True),
    R(code="MG202", name="check-constraint-validated", severity="high",
      summary="Adding a CHECK constraint scans the whole table under ACCESS EXCLUSIVE.",
      why="Without NOT VALID every row is checked while reads and writes on the table wait.",
      fix="ALTER TABLE acct ADD CONSTRAINT acct_bal_pos CHECK (bal >= 0) NOT VALID;\n"
          "-- separate transaction:\nALTER TABLE acct VALIDATE CONSTRAINT acct_bal_pos;",
      bad="ALTER TABLE acct ADD CONSTRAINT acct_bal_pos CHECK (bal >= 0);",
      good="ALTER TABLE acct ADD CONSTRAINT acct_bal_pos CHECK (bal >= 0) NOT VALID;", hazards=(10,), size=True),
    R(code="MG203", name="validate-in-same-transaction", severity="high",
      summary="VALIDATE CONSTRAINT in the same transaction as its NOT VALID add keeps the strong lock during the scan.",
      why="The ADD took ACCESS EXCLUSIVE (CHECK) or SHARE ROW EXCLUSIVE (FK); locks last until COMMIT, so the "
          "validation scan runs with that lock held and NOT VALID bought nothing.",
      fix="Commit between the two steps (or put VALIDATE in the next migration):\n"
          "ALTER TABLE t ADD CONSTRAINT c CHECK (x > 0) NOT VALID;\nCOMMIT;\nALTER TABLE t VALIDATE CONSTRAINT c;",
      bad="BEGIN;\nALTER TABLE t ADD CONSTRAINT t_x_pos CHECK (x > 0) NOT VALID;\n"
          "ALTER TABLE t VALIDATE CONSTRAINT t_x_pos;\nCOMMIT;",
      good="BEGIN;\nALTER TABLE t ADD CONSTRAINT t_x_pos CHECK (x > 0) NOT VALID;\nCOMMIT;\n"
           "BEGIN;\nALTER TABLE t VALIDATE CONSTRAINT t_x_pos;\nCOMMIT;", hazards=(11,), size=True),
    R(code="MG204", name="unique-constraint-direct", severity="high",
      summary="ADD UNIQUE builds its index under ACCESS EXCLUSIVE (and UNIQUE cannot be NOT VALID).",
      why="The unique index is built while the table is locked against reads and writes; NOT VALID does not apply "
          "to UNIQUE, so the only online path is a concurrent index attached afterwards.",
      fix="CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_key ON users (email);\n"
          "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_key;",
      bad="ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);",
      good="ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_key;", hazards=(12,),
      size=True),
    R(code="MG205", name="primary-key-direct", severity="high",
      summary="ADD PRIMARY KEY builds an index (and checks NOT NULL) under ACCESS EXCLUSIVE.",
      why="Reads and writes wait while the unique index is built and the columns are scanned for NULLs.",
      fix="CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS account_pk_idx ON account (id);\n"
          "-- make id NOT NULL safely (see set-not-null), then:\n"
          "ALTER TABLE account ADD CONSTRAINT account_pkey PRIMARY KEY USING INDEX account_pk_idx;",
      bad="ALTER TABLE account ADD PRIMARY KEY (id);",
      good="ALTER TABLE account ALTER COLUMN id SET NOT NULL;\n"
           "ALTER TABLE account ADD CONSTRAINT account_pkey PRIMARY KEY USING INDEX account_pk_idx;", hazards=(13,),
      size=True),
    R(code="MG206", name="primary-key-on-nullable-columns", severity="medium",
      summary="PRIMARY KEY USING INDEX on columns not yet NOT NULL implies a full SET NOT NULL scan.",
      why="If the key columns are nullable PostgreSQL adds NOT NULL first, scanning the table under ACCESS EXCLUSIVE.",
      fix="ALTER TABLE t ADD CONSTRAINT t_id_nn CHECK (id IS NOT NULL) NOT VALID;\n"
          "ALTER TABLE t VALIDATE CONSTRAINT t_id_nn;\nALTER TABLE t ALTER COLUMN id SET NOT NULL;\n"
          "ALTER TABLE t ADD CONSTRAINT t_pkey PRIMARY KEY USING INDEX t_pk_idx;",
      bad="ALTER TABLE t ADD CONSTRAINT t_pkey PRIMARY KEY USING INDEX t_pk_idx;",
      good="ALTER TABLE t ALTER COLUMN id SET NOT NULL;\nALTER TABLE t ADD CONSTRAINT t_pkey PRIMARY KEY USING INDEX t_pk_idx;",
      hazards=(14,), size=True),
    R(code="MG207", name="exclusion-constraint", severity="high",
      summary="ADD EXCLUDE builds a GiST index and checks all rows under ACCESS EXCLUSIVE; there is no online path.",
      why="Exclusion constraints support neither NOT VALID nor USING INDEX.",
      fix="Add it when the table is created or empty, in a maintenance window, or build a new table and swap.",
      bad="ALTER TABLE booking ADD CONSTRAINT no_overlap EXCLUDE USING gist (room WITH =, during WITH &&);",
      good="CREATE TABLE booking (room int, during tstzrange, EXCLUDE USING gist (room WITH =, during WITH &&));",
      hazards=(15,), size=True),
    R(code="MG208", name="set-not-null", severity="high",
      summary="SET NOT NULL scans the whole table under ACCESS EXCLUSIVE.",
      why="Every row is checked while reads and writes wait. PostgreSQL 12+ skips the scan when a validated "
          "CHECK (c IS NOT NULL) already proves it; PostgreSQL 18 can add NOT NULL as NOT VALID.",
      fix="ALTER TABLE t ADD CONSTRAINT t_c_nn CHECK (c IS NOT NULL) NOT VALID;\n"
          "ALTER TABLE t VALIDATE CONSTRAINT t_c_nn;  -- separate transaction\n"
          "ALTER TABLE t ALTER COLUMN c SET NOT NULL;  -- no scan on PG 12+\nALTER TABLE t DROP CONSTRAINT t_c_nn;\n"
          "-- PG 18+: ALTER TABLE t ADD CONSTRAINT t_c_nn NOT NULL c NOT VALID; then VALIDATE CONSTRAINT t_c_nn;",
      bad="ALTER TABLE t ALTER COLUMN c SET NOT NULL;",
      good="ALTER TABLE t ADD CONSTRAINT t_c_nn CHECK (c IS NOT NULL) NOT VALID;\nCOMMIT;\n"
           "ALTER TABLE t VALIDATE CONSTRAINT t_c_nn;\nALTER TABLE t ALTER COLUMN c SET NOT NULL;", hazards=(16,),
      size=True),
    R(code="MG209", name="drop-not-null", severity="low",
      summary="DROP NOT NULL lets NULLs in that running clients may not expect.",
      why="Code that assumes the column is always set (and other services reading the table) can break on NULLs.",
      fix="Keep the column NOT NULL with a sentinel default, or expand/contract: add a nullable column, migrate "
          "readers, then drop the old one.",
      bad="ALTER TABLE users ALTER COLUMN name DROP NOT NULL;",
      good="ALTER TABLE users ALTER COLUMN name SET DEFAULT '';", hazards=(17,)),
    R(code="MG210", name="drop-constraint", severity="low",
      summary="DROP CONSTRAINT removes a guarantee the data and the application rely on.",
      why="Once dropped, invalid rows can be written and are hard to clean up; the drop takes ACCESS EXCLUSIVE "
          "(for a FK on both tables).",
      fix="Confirm nothing relies on it, back up, and drop it in its own migration:\n"
          "ALTER TABLE pets DROP CONSTRAINT IF EXISTS pets_owner_fk;",
      bad="ALTER TABLE pets DROP CONSTRAINT pets_owner_fk;",
      good="ALTER TABLE pets ADD CONSTRAINT pets_owner_fk FOREIGN KEY (owner_id) REFERENCES owners (id) NOT VALID;",
      hazards=(18,)),
    R(code="MG211", name="new-write-restriction", severity="low",
      summary="A new CHECK or FOREIGN KEY (even NOT VALID) rejects writes from application code not yet updated.",
      why="NOT VALID only skips checking old rows; new INSERTs and UPDATEs are checked at once.",
      fix="Deploy the application that writes valid data first, then add the constraint.",
      bad="ALTER TABLE t ADD CONSTRAINT t_a_pos CHECK (a > 0) NOT VALID;",
      good="CREATE TABLE t (a int CHECK (a > 0));", hazards=(19,), default=False),
    R(code="MG212", name="domain-check-constraint", severity="medium",
      summary="CHECK constraints on a domain are re-checked on every column using it.",
      why="ALTER DOMAIN ADD CONSTRAINT scans every table with a column of that domain, and adding a column of a "
          "constrained domain rewrites the table.",
      fix="Put the CHECK on the columns instead: ALTER TABLE t ADD CONSTRAINT t_v_pos CHECK (v > 0) NOT VALID;",
      bad="CREATE DOMAIN positive_int AS int CHECK (VALUE > 0);",
      good="CREATE DOMAIN positive_int AS int;", hazards=(20,)),
    R(code="MG213", name="redefine-primary-key", severity="critical",
      summary="Dropping and re-adding the primary key rebuilds it under ACCESS EXCLUSIVE.",
      why="Between the drop and the add the table has no key (and FKs pointing to it must be dropped); the new "
          "index is built with the table locked.",
      fix="CREATE UNIQUE INDEX CONCURRENTLY t_new_pk ON t (a, b);\n"
          "ALTER TABLE t DROP CONSTRAINT t_pkey, ADD CONSTRAINT t_pkey PRIMARY KEY USING INDEX t_new_pk;",
      bad="ALTER TABLE t DROP CONSTRAINT t_pkey, ADD PRIMARY KEY (a, b);",
      good="ALTER TABLE t DROP CONSTRAINT t_pkey, ADD CONSTRAINT t_pkey PRIMARY KEY USING INDEX t_new_pk;",
      hazards=(45,)),
    R(code="MG214", name="foreign-key-without-index", severity="low",
      summary="A FOREIGN KEY whose columns have no index makes deletes and key updates on the parent scan the child.",
      why="Each DELETE on the referenced table looks up referencing rows; without an index that is a sequential "
          "scan of the child table, under row locks.",
      fix="CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_user_id_idx ON orders (user_id);",
      bad="ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;",
      good="CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_user_id_idx ON orders (user_id);\n"
           "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;",
      hazards=(71,)),
)


# Statement types this family looks at (None: all).
TYPES: frozenset[str] | None = frozenset({"CreateDomainStmt", "AlterDomainStmt", "AlterTableStmt"})

def check(s: Stmt, st: State) -> Iterator[Hit]:
    t, n = s.type, s.node
    if t == "CreateDomainStmt":
        if any(c.get("Constraint", {}).get("contype") == "CONSTR_CHECK" for c in n.get("constraints") or ()):
            yield Hit("MG212", "Domain with a CHECK constraint: every column using it is re-checked on changes.")
        return
    if t == "AlterDomainStmt" and n.get("subtype") == "C":
        yield Hit("MG212", "ALTER DOMAIN ADD CONSTRAINT scans every column that uses the domain.")
        return
    if t != "AlterTableStmt":
        return
    table = rv_name(n.get("relation"))
    new = st.is_new(table)
    cmds = [c["AlterTableCmd"] for c in n.get("cmds") or ()]
    for cmd in cmds:
        sub = cmd.get("subtype")
        if sub == "AT_AddConstraint":
            yield from (h._replace(item=cmd) for h in
                        _add_constraint(cmd["def"].get("Constraint", {}), table, new, st, s, cmds))
        elif sub == "AT_AddColumn" and not new:
            for c in column_constraints(cmd["def"]["ColumnDef"]):
                yield from (h._replace(item=cmd) for h in
                            _add_constraint(c, table, new, st, s, cmds, column=cmd["def"]["ColumnDef"]))
        elif sub == "AT_ValidateConstraint":
            name = cmd.get("name", "")
            added = st.not_valid.get(name)
            if added and added[1] == st.tx_id and s.in_tx and added[0] == table:
                yield Hit("MG203", f"{name} was added NOT VALID earlier in this transaction; its lock is still held "
                          "while VALIDATE scans {table}.".replace("{table}", table), table, item=cmd)
        elif sub == "AT_SetNotNull" and not new:
            col = cmd.get("name", "")
            known = st.not_null(table, col)
            proven = known or (_validated_not_null(st, col) and st.ctx.pg_version >= 12)
            if not proven:
                tip = " (PG 18: use ADD CONSTRAINT ... NOT NULL ... NOT VALID)" if st.ctx.pg_version >= 18 else ""
                yield Hit("MG208", f"SET NOT NULL on {table}.{col} scans the table under ACCESS EXCLUSIVE{tip}"
                          f"{_no_proof(st, table, col, known)}.", table, item=cmd)
        elif sub == "AT_DropNotNull" and not new:
            yield Hit("MG209", f"{table}.{cmd.get('name')} may now be NULL; check every reader.", item=cmd)
        elif sub == "AT_DropConstraint" and not new:
            name = cmd.get("name") or ""
            if name in st.validated and table in st.not_null_done:
                continue  # the NOT NULL recipe's helper check, redundant once SET NOT NULL ran
            if name.endswith("_fkey") or "fk" in name.lower():
                what = (f"Dropping foreign key {name} on {table} loosens the schema (rows may then point nowhere); "
                        f"the drop itself takes a brief ACCESS EXCLUSIVE on {table} and the table it references.")
            else:
                what = (f"Dropping constraint {name} on {table}: rows it rejected can be written from now on; the "
                        f"drop takes a brief ACCESS EXCLUSIVE on {table}.")
            yield Hit("MG210", what, table, item=cmd)


def _add_constraint(c: dict, table: str, new: bool, st: State, s: Stmt, cmds: list[dict],
                    column: dict | None = None) -> Iterator[Hit]:
    ct = c.get("contype")
    name = c.get("conname") or (column or {}).get("colname", "")
    if ct == "CONSTR_PRIMARY" and (table in st.dropped_pkeys or _drops_pkey(cmds)) and not c.get("indexname"):
        yield Hit("MG213", f"Primary key of {table} is redefined; the new index is built under ACCESS EXCLUSIVE.", table)
        return
    if new:
        if ct == "CONSTR_FOREIGN":
            yield from _fk_index(c, table, st, column)
        return
    if ct == "CONSTR_FOREIGN":
        ref = rv_name(c.get("pktable"))
        if column is not None and not _has_default(column):
            # a new column without a default is NULL in every row: PostgreSQL has nothing to validate
            yield Hit("MG211", f"New FOREIGN KEY on {table}.{column.get('colname')} rejects writes that old code may "
                      "still make (no validation scan: the new column is NULL in every row).")
        elif not c.get("skip_validation"):
            yield Hit("MG201", f"FOREIGN KEY {name} validates all of {table} while {table} and {ref} are write-locked.",
                      table)
        else:
            yield Hit("MG211", f"New FOREIGN KEY {name} on {table} rejects writes that old code may still make.")
        yield from _fk_index(c, table, st, column)
    elif ct == "CONSTR_CHECK":
        if not c.get("skip_validation"):
            yield Hit("MG202", f"CHECK {name} scans all of {table} under ACCESS EXCLUSIVE.", table)
        else:
            yield Hit("MG211", f"New CHECK {name} on {table} rejects writes that old code may still make.")
    elif ct == "CONSTR_UNIQUE" and not c.get("indexname"):
        yield Hit("MG204", f"UNIQUE {name} on {table} builds its index under ACCESS EXCLUSIVE; "
                  "UNIQUE cannot be NOT VALID.", table)
    elif ct == "CONSTR_PRIMARY":
        if c.get("indexname"):
            yield from _pk_using_index(c["indexname"], table, st)
        else:
            yield Hit("MG205", f"PRIMARY KEY on {table} builds its index under ACCESS EXCLUSIVE.", table)
    elif ct == "CONSTR_EXCLUSION":
        yield Hit("MG207", f"EXCLUDE constraint on {table} builds a GiST index and checks every row under "
                  "ACCESS EXCLUSIVE.", table)


def _no_proof(st: State, table: str, col: str, known: bool | None) -> str:
    """Why SET NOT NULL scans, from the catalog facts; without them, what would spare the scan."""
    if known is None:
        return (f"; no scan if a validated CHECK ({col} IS NOT NULL) exists (PG 12+): to know, {catalog.HOW}")
    facts = st.facts(table)
    unvalidated = [c.name for c in (facts.constraints if facts else ()) if c.not_null_column == col]
    if unvalidated:
        return f": {', '.join(unvalidated)} is NOT VALID, so it proves nothing; VALIDATE it first (no blocking)"
    return f": no validated CHECK ({col} IS NOT NULL) on {table} proves it"


def _pk_using_index(index: str, table: str, st: State) -> Iterator[Hit]:
    """ADD PRIMARY KEY USING INDEX: free when the key columns are NOT NULL, else a SET NOT NULL scan."""
    cols = _index_columns(index, table, st)
    known = {col: st.not_null(table, col) for col in cols or ()}
    nullable = [col for col, not_null in known.items() if not_null is False]
    if not nullable and (cols is None or None in known.values()):
        if table not in st.not_null_done:
            yield Hit("MG206", f"PRIMARY KEY USING INDEX {index} scans {table} for NULLs unless its columns are "
                      f"already NOT NULL: to know, {catalog.HOW}.", table,
                      None if st.stats(table) else Severity.LOW)
        return
    if nullable:
        yield Hit("MG206", f"PRIMARY KEY USING INDEX {index}: {', '.join(nullable)} "
                  f"{'is' if len(nullable) == 1 else 'are'} nullable, so PostgreSQL adds NOT NULL with a full scan "
                  f"of {table} under ACCESS EXCLUSIVE.", table)


def _index_columns(index: str, table: str, st: State) -> tuple[str, ...] | None:
    """The key columns of an index created in this file or in the target's catalog; None when unknown."""
    if index in st.index_defs:
        return st.index_defs[index][1]
    facts = st.facts(table)
    found = next((i for i in facts.index_facts if i.name == index), None) if facts is not None else None
    return tuple(c for c in found.columns if c) if found is not None and not found.expression else None


def _has_default(column: dict) -> bool:
    """A new column with a DEFAULT other than NULL (or an identity or generated value) in every row."""
    for c in column_constraints(column):
        if c.get("contype") in ("CONSTR_IDENTITY", "CONSTR_GENERATED"):
            return True
        if c.get("contype") == "CONSTR_DEFAULT":
            return not const_null(c.get("raw_expr"))
    return type_name(column.get("typeName")).lower().endswith("serial")


def _validated_not_null(st: State, col: str) -> bool:
    """A constraint validated earlier in this file whose name says it is this column's NOT NULL check (the
    recipe's last migration: VALIDATE, SET NOT NULL, DROP the check; its CHECK was added in an earlier file)."""
    col = col.lower()
    return any(col in name.lower() and ("null" in name.lower() or name.lower().endswith("_nn"))
               for name in st.validated)


def _drops_pkey(cmds: list[dict]) -> bool:
    """The same ALTER TABLE drops a primary key (a `..._pkey` constraint)."""
    return any(c.get("subtype") == "AT_DropConstraint" and (c.get("name") or "").endswith("pkey") for c in cmds)


def _fk_index(c: dict, table: str, st: State, column: dict | None) -> Iterator[Hit]:
    cols = tuple(strings(c.get("fk_attrs"))) or ((column or {}).get("colname"),)
    if cols and cols[0] and not st.has_index(table, cols):
        yield Hit("MG214", f"No index on {table} ({', '.join(cols)}) for its foreign key; deletes on the parent "
                  "will scan it.")
