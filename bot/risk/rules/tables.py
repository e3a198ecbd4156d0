"""Table-level rules: rewrites (LOGGED, access method, tablespace, VACUUM FULL), matviews, partitions, triggers."""
from __future__ import annotations

from typing import Iterator

from .. import catalog
from ..bounds import excludes_bound, key_column, proves_bound
from ..models import Severity
from ..nodes import def_names, rv_name
from ..state import State, Stmt
from . import Hit, rule

R = rule("tables")
RULES = (
    R(code="MG401", name="set-logged-or-unlogged", severity="high",
      summary="SET LOGGED / SET UNLOGGED rewrites the table under ACCESS EXCLUSIVE.",
      why="The whole table is copied (and for SET LOGGED written to WAL) while reads and writes wait; replicas "
          "receive the full table.",
      fix="Avoid on live tables; create a new table with the wanted persistence, copy in batches and swap names.",
      bad="ALTER TABLE t SET LOGGED;",
      good="CREATE UNLOGGED TABLE t_staging (id bigint);", hazards=(34,), size=True),
    R(code="MG402", name="set-access-method", severity="high",
      summary="SET ACCESS METHOD rewrites the table under ACCESS EXCLUSIVE.",
      why="Every row is rewritten in the new format while the table is locked (PG 15+).",
      fix="Create the new table with USING am, copy in batches and swap.",
      bad="ALTER TABLE t SET ACCESS METHOD heap2;",
      good="CREATE TABLE t2 (id bigint) USING heap2;", hazards=(35,), size=True),
    R(code="MG403", name="set-tablespace", severity="high",
      summary="SET TABLESPACE copies the table files under ACCESS EXCLUSIVE.",
      why="Reads and writes wait until every block has been copied to the new tablespace.",
      fix="Use pg_repack --tablespace, or a new table in the tablespace plus a swap.",
      bad="ALTER TABLE t SET TABLESPACE fast;",
      good="CREATE TABLE t2 (id bigint) TABLESPACE fast;", hazards=(36,), size=True),
    R(code="MG404", name="vacuum-full-or-cluster", severity="critical",
      summary="VACUUM FULL and CLUSTER rewrite the table under ACCESS EXCLUSIVE.",
      why="The table is unavailable for reads and writes for the whole rewrite, which needs room for a full copy.",
      fix="Use pg_repack or pg_squeeze online; on PostgreSQL 19 REPACK (CONCURRENTLY) t;",
      bad="VACUUM FULL t;",
      good="VACUUM (ANALYZE) t;", hazards=(37,), size=True),
    R(code="MG405", name="refresh-matview-non-concurrent", severity="high",
      summary="REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks every read of the view.",
      why="The refresh holds ACCESS EXCLUSIVE on the materialized view for the whole query, so readers wait however "
          "small the view is: the time is its query's, not its size's.",
      fix="CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS mv_key ON mv (id);  -- once\n"
          "REFRESH MATERIALIZED VIEW CONCURRENTLY mv;  -- EXCLUSIVE: reads continue",
      bad="REFRESH MATERIALIZED VIEW mv;",
      good="REFRESH MATERIALIZED VIEW CONCURRENTLY mv;", hazards=(38,)),
    R(code="MG406", name="detach-partition-non-concurrent", severity="high",
      summary="DETACH PARTITION without CONCURRENTLY takes ACCESS EXCLUSIVE on the parent.",
      why="Every query on the partitioned table waits (and queues behind the detach).",
      fix="ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY;  -- PG 14+, outside a transaction",
      bad="ALTER TABLE p DETACH PARTITION p1;",
      good="ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY;", hazards=(39,), size=True),
    R(code="MG407", name="attach-partition-without-check", severity="high",
      summary="ATTACH PARTITION without a pre-validated matching CHECK scans the partition under ACCESS EXCLUSIVE.",
      why="PostgreSQL must prove every row fits the bounds; unless a valid CHECK already implies them it scans the "
          "partition (and the default partition) with writes and reads blocked. Before PG 12 the parent is locked too.",
      fix="ALTER TABLE p2 ADD CONSTRAINT p2_bounds CHECK (id >= 1 AND id < 10) NOT VALID;\n"
          "ALTER TABLE p2 VALIDATE CONSTRAINT p2_bounds;\n"
          "ALTER TABLE p ATTACH PARTITION p2 FOR VALUES FROM (1) TO (10);  -- no scan\n"
          "ALTER TABLE p2 DROP CONSTRAINT p2_bounds;",
      bad="ALTER TABLE p ATTACH PARTITION p2 FOR VALUES FROM (1) TO (10);",
      good="ALTER TABLE p2 ADD CONSTRAINT p2_bounds CHECK (id >= 1 AND id < 10) NOT VALID;\nCOMMIT;\n"
           "ALTER TABLE p2 VALIDATE CONSTRAINT p2_bounds;\nALTER TABLE p ATTACH PARTITION p2 FOR VALUES FROM (1) TO (10);",
      hazards=(40,), size=True),
    R(code="MG408", name="create-trigger-on-existing-table", severity="low",
      summary="CREATE TRIGGER takes SHARE ROW EXCLUSIVE and changes what every write does.",
      why="Writes wait while the trigger is created (usually brief, but it queues behind long transactions); "
          "afterwards every write runs the trigger function.",
      fix="SET lock_timeout = '2s'; then CREATE TRIGGER ...; keep the function fast and reviewed.",
      bad="CREATE TRIGGER audit AFTER UPDATE ON users FOR EACH ROW EXECUTE FUNCTION audit_row();",
      good="CREATE TABLE users (id bigint);\n"
           "CREATE TRIGGER audit AFTER UPDATE ON users FOR EACH ROW EXECUTE FUNCTION audit_row();", hazards=(41,),
      size=True),
    R(code="MG409", name="disable-trigger-or-rule", severity="medium",
      summary="DISABLE TRIGGER / RULE silently turns off behaviour (audit, FK enforcement, sync).",
      why="Writes made while it is disabled skip the trigger, and DISABLE TRIGGER ALL also disables FK checks.",
      fix="Review what the trigger does; prefer session_replication_role in a controlled maintenance job.",
      bad="ALTER TABLE t DISABLE TRIGGER audit;",
      good="ALTER TABLE t ENABLE TRIGGER audit;", hazards=(42,)),
    R(code="MG410", name="replica-identity-change", severity="medium",
      summary="REPLICA IDENTITY changes affect logical replication and CDC consumers.",
      why="FULL makes every UPDATE/DELETE log the whole old row (WAL growth); NOTHING breaks replication of "
          "UPDATE/DELETE.",
      fix="Check the publication and CDC setup first; prefer REPLICA IDENTITY USING INDEX on a unique index.",
      bad="ALTER TABLE t REPLICA IDENTITY FULL;",
      good="ALTER TABLE t REPLICA IDENTITY DEFAULT;", hazards=(43,)),
    R(code="MG411", name="autovacuum-disabled", severity="medium",
      summary="Turning autovacuum off for a table leads to bloat and transaction-id wraparound.",
      why="Dead rows are never reclaimed and the table eventually forces an emergency anti-wraparound vacuum.",
      fix="Keep it on and tune it: ALTER TABLE t SET (autovacuum_vacuum_scale_factor = 0.02);",
      bad="ALTER TABLE t SET (autovacuum_enabled = false);",
      good="ALTER TABLE t SET (autovacuum_vacuum_scale_factor = 0.02);", hazards=(44,)),
    R(code="MG412", name="truncate-cascade", severity="critical",
      summary="TRUNCATE ... CASCADE silently empties every table that references this one.",
      why="CASCADE follows foreign keys recursively; tables nobody listed lose all their rows under ACCESS EXCLUSIVE.",
      fix="List the tables to empty explicitly, back them up first, and never CASCADE in a migration.",
      bad="TRUNCATE accounts CASCADE;",
      good="TRUNCATE staging_import;", hazards=(46,)),
    R(code="MG413", name="multiple-alters-same-table", severity="low",
      summary="Several ALTER TABLE statements on one table take the lock (and scans) more times than needed.",
      why="Each statement queues for ACCESS EXCLUSIVE again and may scan again; one statement with several actions "
          "does the work in one pass.",
      fix="ALTER TABLE t ADD COLUMN a int, ADD COLUMN b int;",
      bad="ALTER TABLE t ADD COLUMN a int;\nALTER TABLE t ADD COLUMN b int;",
      good="ALTER TABLE t ADD COLUMN a int, ADD COLUMN b int;", hazards=(63,)),
    R(code="MG414", name="explicit-lock-table", severity="medium",
      summary="LOCK TABLE takes a lock for the rest of the transaction.",
      why="The default mode is ACCESS EXCLUSIVE: every query on the table waits until COMMIT.",
      fix="Use the weakest mode that serves the purpose (e.g. SHARE ROW EXCLUSIVE to block writes only) and keep "
          "the transaction short with lock_timeout set.",
      bad="LOCK TABLE accounts;",
      good="LOCK TABLE accounts IN ACCESS SHARE MODE;", hazards=(), size=True),
    R(code="MG415", name="partition-scans-default-partition", severity="high",
      summary="A new partition (PARTITION OF or ATTACH) scans the DEFAULT partition under ACCESS EXCLUSIVE.",
      why="PostgreSQL must prove no row of the DEFAULT partition belongs in the new one: it reads all of it while "
          "reads and writes on it wait (and PARTITION OF holds ACCESS EXCLUSIVE on the parent meanwhile).",
      fix="Empty the DEFAULT partition of that range first, or detach it, add the partitions, move its rows in "
          "batches and attach it back:\n"
          "ALTER TABLE events DETACH PARTITION events_default;\n"
          "CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');",
      bad="-- events has a big DEFAULT partition\n"
          "CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');",
      good="-- no DEFAULT partition\nCREATE TABLE logs_2025 PARTITION OF logs FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');",
      hazards=(40,), size=True),
    R(code="MG416", name="detach-concurrently-with-default-partition", severity="critical",
      summary="DETACH PARTITION ... CONCURRENTLY fails when the table has a DEFAULT partition.",
      why="PostgreSQL refuses it (\"cannot detach partitions concurrently when a default partition exists\"), so the "
          "migration aborts.",
      fix="Detach the DEFAULT partition first (briefly, with lock_timeout), or detach without CONCURRENTLY in a quiet "
          "moment: ALTER TABLE events DETACH PARTITION events_2019;",
      bad="-- events has a DEFAULT partition\nALTER TABLE events DETACH PARTITION events_2019 CONCURRENTLY;",
      good="-- no DEFAULT partition\nALTER TABLE logs DETACH PARTITION logs_2019 CONCURRENTLY;", hazards=(39,)),
    R(code="MG417", name="refresh-concurrently-without-unique-index", severity="critical",
      summary="REFRESH MATERIALIZED VIEW CONCURRENTLY fails unless the view has a unique index on plain columns.",
      why="PostgreSQL needs a valid unique index without a WHERE clause or expressions to match old and new rows; "
          "without one the refresh errors and the migration aborts.",
      fix="CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS mv_key ON mv (id);  -- once, before\n"
          "REFRESH MATERIALIZED VIEW CONCURRENTLY mv;",
      bad="-- daily_totals has no unique index\nREFRESH MATERIALIZED VIEW CONCURRENTLY daily_totals;",
      good="-- daily_totals_keyed has a unique index on (day)\nREFRESH MATERIALIZED VIEW CONCURRENTLY daily_totals_keyed;",
      hazards=(38,)),
    R(code="MG418", name="not-valid-fk-on-partitioned-table", severity="critical",
      summary="ADD FOREIGN KEY ... NOT VALID on a partitioned table fails before PostgreSQL 18.",
      why="PostgreSQL 17 and older refuse NOT VALID foreign keys on partitioned tables (\"not yet supported\"), so "
          "the migration aborts.",
      fix="Add it NOT VALID on each partition and VALIDATE each, then add it on the parent (which finds them valid):\n"
          "ALTER TABLE events_2025 ADD CONSTRAINT events_2025_user_fk FOREIGN KEY (user_id) REFERENCES users (id) "
          "NOT VALID;\nALTER TABLE events_2025 VALIDATE CONSTRAINT events_2025_user_fk;",
      bad="-- events is partitioned\n"
          "ALTER TABLE events ADD CONSTRAINT events_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;",
      good="ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;",
      hazards=(9,), pg=15),
    R(code="MG419", name="attach-partition-builds-index", severity="high",
      summary="ATTACH PARTITION builds each of the parent's indexes the new partition has no matching index for.",
      why="A partition must have every index of its partitioned parent: ATTACH attaches a matching index of the "
          "table (same columns or expressions, predicate and uniqueness), else builds one on it the ordinary way, "
          "reading all of it while it holds ACCESS EXCLUSIVE on the table: its reads and writes wait (observed on "
          "PostgreSQL 15: a new index on the attached table, ACCESS EXCLUSIVE held).",
      fix="Build the matching index on the table concurrently first, in its own migration; ATTACH then attaches it "
          "and builds nothing:\n"
          "CREATE INDEX CONCURRENTLY sales_2025_customer_id_idx ON sales_2025 (customer_id);",
      bad="-- sales has the index sales_customer_id_idx; sales_2025 has no index on customer_id\n"
          "ALTER TABLE sales ATTACH PARTITION sales_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');",
      good="CREATE INDEX CONCURRENTLY sales_2025_customer_id_idx ON sales_2025 (customer_id);\n"
           "ALTER TABLE sales ATTACH PARTITION sales_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');",
      hazards=(1,), size=True),
)


# Statement types this family looks at (None: all).
TYPES: frozenset[str] | None = frozenset({"VacuumStmt", "ClusterStmt", "RefreshMatViewStmt", "CreateTrigStmt",
                                          "TruncateStmt", "LockStmt", "AlterTableStmt", "CreateStmt"})

def check(s: Stmt, st: State) -> Iterator[Hit]:
    t, n = s.type, s.node
    if t == "VacuumStmt" and "full" in def_names(n.get("options")) or t == "ClusterStmt":
        for rel in s.fx.locks or {None: None}:
            if not st.is_new(rel):
                yield Hit("MG404", f"{s.fx.kind} {rel or ''} rewrites under ACCESS EXCLUSIVE.".replace(" ACC", " ACC"), rel)
    elif t == "RefreshMatViewStmt":
        yield from _refresh(s, st, n)
    elif t == "CreateStmt" and n.get("partbound") and not n["partbound"].get("is_default"):
        for parent in n.get("inhRelations") or ():
            yield from _default_scan(st, rv_name(parent), f"PARTITION OF {rv_name(parent)}", n["partbound"])
    elif t == "CreateTrigStmt" and not st.is_new(s.fx.target):
        yield Hit("MG408", f"CREATE TRIGGER on {s.fx.target} blocks writes while it is created.", s.fx.target)
    elif t == "TruncateStmt" and n.get("behavior") == "DROP_CASCADE":
        yield Hit("MG412", "TRUNCATE ... CASCADE also empties every referencing table.", s.fx.target)
    elif t == "LockStmt" and any(m in ("ACCESS EXCLUSIVE", "EXCLUSIVE") for m in s.fx.locks.values()):
        yield Hit("MG414", f"LOCK TABLE {', '.join(s.fx.locks)} in {next(iter(s.fx.locks.values()))} mode.", s.fx.target)
    elif t == "AlterTableStmt":
        yield from _alter(s, st, n)


def _alter(s: Stmt, st: State, n: dict) -> Iterator[Hit]:
    table = rv_name(n.get("relation"))
    if st.is_new(table):
        return
    if n.get("objtype", "OBJECT_TABLE") == "OBJECT_TABLE" and st.alters.get(table, 0) == 1:
        yield Hit("MG413", f"Another ALTER TABLE {table} in this file; combine the actions into one statement.")
    for item in n.get("cmds") or ():
        cmd = item["AlterTableCmd"]
        sub = cmd.get("subtype", "")
        if sub in ("AT_SetLogged", "AT_SetUnLogged"):
            yield Hit("MG401", f"{sub[6:].upper()} rewrites {table}.", table)
        elif sub == "AT_SetAccessMethod":
            yield Hit("MG402", f"SET ACCESS METHOD rewrites {table}.", table)
        elif sub == "AT_SetTableSpace":
            yield Hit("MG403", f"SET TABLESPACE copies {table} under ACCESS EXCLUSIVE.", table)
        elif sub == "AT_DetachPartition" and not cmd["def"]["PartitionCmd"].get("concurrent"):
            yield Hit("MG406", f"DETACH PARTITION locks all of {table} (ACCESS EXCLUSIVE).", table)
        elif sub == "AT_DetachPartition":
            yield from _detach_concurrently(st, table)
        elif sub == "AT_AttachPartition":
            yield from _attach(st, table, cmd["def"]["PartitionCmd"])
        elif sub == "AT_AddConstraint" and st.ctx.pg_version < 18 and st.is_partitioned(table):
            c = cmd["def"].get("Constraint", {})
            if c.get("contype") == "CONSTR_FOREIGN" and c.get("skip_validation"):
                yield Hit("MG418", f"{table} is partitioned: PostgreSQL {st.ctx.pg_version} refuses ADD FOREIGN KEY "
                          f"{c.get('conname') or ''} NOT VALID on it (\"not yet supported\"); the statement fails."
                          .replace("  ", " "))
        elif sub.startswith("AT_Disable") and ("Trig" in sub or "Rule" in sub):
            yield Hit("MG409", f"{sub[3:]} {cmd.get('name') or ''} on {table} turns off behaviour for every write.")
        elif sub == "AT_ReplicaIdentity":
            ident = cmd["def"].get("ReplicaIdentityStmt", {}).get("identity_type", "")
            if ident in ("f", "n"):
                yield Hit("MG410", f"REPLICA IDENTITY {'FULL' if ident == 'f' else 'NOTHING'} on {table}.")
        elif sub == "AT_SetRelOptions":
            opts = def_names(cmd["def"].get("List", {}).get("items") if "List" in cmd["def"] else cmd["def"])
            for key in ("autovacuum_enabled", "toast.autovacuum_enabled"):
                if key in opts and str(opts[key]).lower() in ("false", "off", "0", "no"):
                    yield Hit("MG411", f"autovacuum turned off for {table}.")


def _refresh(s: Stmt, st: State, n: dict) -> Iterator[Hit]:
    view = s.fx.target
    if not n.get("concurrent"):
        reads = [r for r, m in s.fx.locks.items() if r != view]
        yield Hit("MG405", f"REFRESH MATERIALIZED VIEW {view} blocks every read of it until done, however small it "
                  f"is: the time is its query's{' (it reads ' + ', '.join(reads) + ')' if reads else ''}.", view)
        return
    found = catalog.table(st.ctx, view)
    if found is None:
        if not st.is_new(view):
            yield Hit("MG417", f"REFRESH ... CONCURRENTLY fails unless {view} has a unique index on plain columns; that "
                      f"depends on the target: {catalog.HOW}.", None, Severity.LOW)
        return
    if not any(i.unique and i.valid and not i.partial and not i.expression for i in found[1].index_facts) \
            and not st.indexes.get(view):
        yield Hit("MG417", f"{view} has no unique index on plain columns: REFRESH ... CONCURRENTLY fails "
                  "(\"cannot refresh materialized view concurrently\").")


def _default_scan(st: State, parent: str, what: str, bound: dict) -> Iterator[Hit]:
    """MG415 for a new partition of an existing parent: the DEFAULT partition is scanned, if there is one, unless
    its validated CHECKs keep every row out of the new bound."""
    if st.is_new(parent):
        return
    found = catalog.table(st.ctx, parent)
    if found is None:
        yield Hit("MG415", f"{what}: if {parent} has a DEFAULT partition, it is scanned under ACCESS EXCLUSIVE "
                  f"(unless a validated CHECK on it excludes the new range); that depends on the target: "
                  f"{catalog.HOW}.", None, Severity.LOW)
        return
    default = catalog.default_partition(st.ctx, parent)
    if not default:
        return
    facts = catalog.table(st.ctx, default)
    checks = [c.definition for c in facts[1].constraints if c.kind == "check" and c.validated] if facts else []
    if not excludes_bound(bound, found[1].partition_key, checks):
        have = f" (its validated CHECKs do not exclude the new range: {'; '.join(checks)})" if checks else ""
        yield Hit("MG415", f"{what} scans {parent}'s DEFAULT partition {default} under ACCESS EXCLUSIVE{have}.",
                  default)


def _attach(st: State, table: str, pc: dict) -> Iterator[Hit]:
    """MG407 unless a validated CHECK of the partition implies its bounds; MG415 for the DEFAULT partition."""
    part = rv_name(pc["name"])
    bound = pc.get("bound") or {}
    yield from _default_scan(st, table, f"ATTACH PARTITION {part}", bound) if not bound.get("is_default") else ()
    if st.is_new(part):
        return
    found, parent = catalog.table(st.ctx, part), catalog.table(st.ctx, table)
    yield from _attach_indexes(st, table, part, found, parent)
    if part in st.checked_tables:
        return
    old_pg = " and locks the parent" if st.ctx.pg_version < 12 else ""
    if found is None or parent is None:
        yield Hit("MG407", f"ATTACH PARTITION {part} scans it under ACCESS EXCLUSIVE{old_pg} unless it already has a "
                  f"validated CHECK that implies the bounds; that depends on the target: {catalog.HOW}.", part)
        return
    facts = found[1]
    key = parent[1].partition_key
    checks = [c.definition for c in facts.constraints if c.kind == "check" and c.validated]
    key_col = key_column(key)
    not_null = bool(key_col and facts.column_facts.get(key_col) and facts.column_facts[key_col].not_null)
    if not proves_bound(bound, key, checks, not_null):
        have = f" (its validated CHECKs: {'; '.join(checks)})" if checks else ""
        yield Hit("MG407", f"ATTACH PARTITION {part} scans it under ACCESS EXCLUSIVE{old_pg}: no validated CHECK on "
                  f"{part} implies the bounds{' and NOT NULL ' + key_col if key_col and not not_null else ''}{have}.",
                  part)


def _attach_indexes(st: State, table: str, part: str, found, parent) -> Iterator[Hit]:
    """MG419 for the parent's indexes the partition has no matching index for (its own, or made in this file)."""
    if found is None or parent is None:
        yield Hit("MG419", f"ATTACH PARTITION {part} builds on it every index of {table} it has no matching index "
                  f"for, under ACCESS EXCLUSIVE; that depends on the target: {catalog.HOW}.", None, Severity.LOW)
        return
    own = [i for i in found[1].index_facts if i.name not in st.dropped_indexes]
    made = st.indexes.get(part, set())
    missing = [p for p in parent[1].index_facts if p.name not in st.dropped_indexes and p.columns not in made
               and not any(_matches(i, p) for i in own)]
    if missing:
        names = ", ".join(f"{p.name} ({', '.join(c or 'expression' for c in p.columns)})" for p in missing)
        yield Hit("MG419", f"ATTACH PARTITION {part} builds {names} of {table} on {part}, which has no matching "
                  f"index: all of {part} is read under ACCESS EXCLUSIVE.", part)


def _matches(index, parent_index) -> bool:
    """Whether PostgreSQL can attach the table's index to the parent's, as far as the catalog facts tell."""
    return (index.columns, index.expression, index.partial, index.unique, index.primary, set(index.uses)) == (
        parent_index.columns, parent_index.expression, parent_index.partial, parent_index.unique,
        parent_index.primary, set(parent_index.uses))


def _detach_concurrently(st: State, table: str) -> Iterator[Hit]:
    if st.is_new(table):
        return
    if catalog.table(st.ctx, table) is None:
        yield Hit("MG416", f"DETACH ... CONCURRENTLY fails if {table} has a DEFAULT partition; that depends on the "
                  f"target: {catalog.HOW}.", None, Severity.LOW)
        return
    default = catalog.default_partition(st.ctx, table)
    if default:
        yield Hit("MG416", f"{table} has the DEFAULT partition {default}: DETACH ... CONCURRENTLY fails (\"cannot "
                  "detach partitions concurrently when a default partition exists\").")
