"""What each statement does: kind, lock mode per relation, rewrite/scan, transactionality."""
from __future__ import annotations

from . import catalog
from .alter import alter_table
from .effect import ACCESS_SHARE, AEL, EXCL, ROW_EXCL, ROW_SHARE, SHARE, SRE, SUE, Effect
from .models import Context
from .nodes import column_constraints, def_names, qualified, rv_name, strings, walk

_LOCKSTMT_MODES = {1: ACCESS_SHARE, 2: ROW_SHARE, 3: ROW_EXCL, 4: SUE, 5: SHARE, 6: SRE, 7: EXCL, 8: AEL}
_DROP_KINDS = {
    "OBJECT_TABLE": "TABLE", "OBJECT_INDEX": "INDEX", "OBJECT_VIEW": "VIEW", "OBJECT_MATVIEW": "MATERIALIZED VIEW",
    "OBJECT_SEQUENCE": "SEQUENCE", "OBJECT_TYPE": "TYPE", "OBJECT_DOMAIN": "DOMAIN", "OBJECT_FUNCTION": "FUNCTION",
    "OBJECT_PROCEDURE": "PROCEDURE", "OBJECT_SCHEMA": "SCHEMA", "OBJECT_EXTENSION": "EXTENSION",
    "OBJECT_POLICY": "POLICY", "OBJECT_TRIGGER": "TRIGGER", "OBJECT_RULE": "RULE", "OBJECT_FOREIGN_TABLE": "FOREIGN TABLE",
}
_ON_TABLE_DROPS = {"OBJECT_POLICY", "OBJECT_TRIGGER", "OBJECT_RULE"}


def describe(node_type: str, n: dict, pg_version: int, functions: dict[str, str],
             other_tables: bool = True) -> Effect:
    """Classify one statement (node type and body from the JSON parse tree). other_tables=False: the
    statement names no table but its target (parse.RawStatement.other_tables), so an INSERT, UPDATE or
    DELETE need not be searched for the tables it reads."""
    if not other_tables and node_type in _DML:
        return _DML[node_type](n, pg_version, functions, reads=False)
    fn = _DESCRIBERS.get(node_type)
    if fn is None:
        return Effect(kind=_default_kind(node_type))
    return fn(n, pg_version, functions)


def transactional(node_type: str, n: dict, pg_version: int) -> bool:
    """Whether the statement may run inside a transaction block: the one classifier, the same as the
    engine's StatementInfo.transactional (version-aware: ALTER TYPE ... ADD VALUE before PG 12)."""
    return describe(node_type, n, pg_version, {}).transactional


def transaction_refusal(node_type: str, n: dict, pg_version: int) -> str | None:
    """transactional() as the reason PostgreSQL refuses the statement in a transaction block, None when it may
    run there.

    >>> transaction_refusal("VacuumStmt", {"is_vacuumcmd": True}, 16)
    'VACUUM cannot run inside a transaction block'
    """
    fx = describe(node_type, n, pg_version, {})
    return None if fx.transactional else f"{fx.kind} cannot run inside a transaction block"


def catalog_locks(fx: Effect, node_type: str, n: dict, ctx: Context) -> None:
    """The locks only the target's catalog names, each observed in pg_locks on PostgreSQL 15: the DEFAULT
    partition (ACCESS EXCLUSIVE under PARTITION OF, ATTACH and DETACH), the table of a dropped index
    (ACCESS EXCLUSIVE; CONCURRENTLY: SHARE UPDATE EXCLUSIVE), the tables whose columns DROP TYPE/DOMAIN ...
    CASCADE drops (ACCESS EXCLUSIVE), a materialized view's tables (ACCESS SHARE while it refreshes), the
    partitions an index on a partitioned table is built on (SHARE; CONCURRENTLY, which then fails: SHARE
    UPDATE EXCLUSIVE) and the table of a reindexed index (SHARE; CONCURRENTLY: SHARE UPDATE EXCLUSIVE)."""
    if node_type == "CreateStmt" and n.get("partbound") and not n["partbound"].get("is_default"):
        for parent in n.get("inhRelations") or ():
            _lock_default(fx, ctx, rv_name(parent))
    elif node_type == "AlterTableStmt":
        for item in n.get("cmds") or ():
            cmd = item["AlterTableCmd"]
            pc = (cmd.get("def") or {}).get("PartitionCmd") or {}
            if cmd.get("subtype") == "AT_AttachPartition" and not (pc.get("bound") or {}).get("is_default") or \
                    cmd.get("subtype") == "AT_DetachPartition" and not pc.get("concurrent"):
                _lock_default(fx, ctx, rv_name(n.get("relation")), rv_name(pc.get("name")))
    elif node_type == "DropStmt" and n.get("removeType") == "OBJECT_INDEX":
        for name in list(fx.locks):
            owner = catalog.index_table(ctx, name)
            if owner:
                fx.lock(owner, fx.locks[name])
    elif node_type == "DropStmt" and n.get("removeType") in ("OBJECT_TYPE", "OBJECT_DOMAIN") \
            and n.get("behavior") == "DROP_CASCADE":
        for obj in n.get("objects") or ():
            for column in catalog.type_columns(ctx, qualified((obj.get("TypeName") or {}).get("names"))) or ():
                fx.lock(column.rsplit(".", 1)[0], AEL)
    elif node_type == "RefreshMatViewStmt":
        for name in catalog.matview_tables(ctx, fx.target):
            fx.lock(name, ACCESS_SHARE)
    elif node_type == "IndexStmt" and (n.get("relation") or {}).get("inh"):
        for name in catalog.partitions(ctx, fx.target):  # CONCURRENTLY locks them all before it fails
            fx.lock(name, SUE if n.get("concurrent") else SHARE)
    elif node_type == "ReindexStmt" and fx.target and n.get("kind") == "REINDEX_OBJECT_INDEX":
        owner = catalog.index_table(ctx, fx.target)
        if owner:
            fx.lock(owner, SUE if "concurrently" in def_names(n.get("params")) else SHARE)


def _lock_default(fx: Effect, ctx: Context, parent: str, partition: str | None = None) -> None:
    default = catalog.default_partition(ctx, parent)
    if default and default != partition:
        fx.lock(default, AEL)


def _default_kind(node_type: str) -> str:
    name = node_type.removesuffix("Stmt")
    out = "".join(" " + c if c.isupper() else c for c in name).strip().upper()
    return out or node_type


def _create_table(n, v, f):
    name = rv_name(n.get("relation"))
    e = Effect(kind="CREATE TABLE", creates=[name], target=name)
    e.lock(name, AEL)
    for elt in n.get("tableElts") or ():
        cons = column_constraints(elt["ColumnDef"]) if "ColumnDef" in elt else [elt.get("Constraint", {})]
        for c in cons:
            if c.get("contype") == "CONSTR_FOREIGN" and c.get("pktable"):
                e.lock(rv_name(c["pktable"]), SRE)
    for parent in n.get("inhRelations") or ():
        e.lock(rv_name(parent), AEL if n.get("partbound") else SUE)
    return e


def _create_table_as(n, v, f):
    into = n.get("into", {})
    name = rv_name(into.get("rel"))
    kind = "CREATE MATERIALIZED VIEW" if n.get("objtype") == "OBJECT_MATVIEW" else "CREATE TABLE AS"
    e = Effect(kind=kind, creates=[name], target=name)
    e.lock(name, AEL)
    if n.get("query"):
        _reads(e, n["query"])
    return e


def _index(n, v, f):
    table = rv_name(n.get("relation"))
    conc = bool(n.get("concurrent"))
    kind = "CREATE UNIQUE INDEX" if n.get("unique") else "CREATE INDEX"
    e = Effect(kind=kind + (" CONCURRENTLY" if conc else ""), target=table, transactional=not conc, scan=True)
    e.lock(table, SUE if conc else SHARE)
    if n.get("idxname"):
        e.creates.append(_qualify(n["idxname"], n.get("relation")))
    return e


def _qualify(name: str, rv: dict | None) -> str:
    schema = (rv or {}).get("schemaname")
    return f"{schema}.{name}" if schema else name


def _drop(n, v, f):
    rt = n.get("removeType", "")
    word = _DROP_KINDS.get(rt, rt.removeprefix("OBJECT_").replace("_", " "))
    conc = bool(n.get("concurrent"))
    e = Effect(kind=f"DROP {word}" + (" CONCURRENTLY" if conc else ""), transactional=not conc,
               destructive=rt not in ("OBJECT_INDEX",), incompatible=True)
    for obj in n.get("objects") or ():
        if "List" in obj:
            names = strings(obj["List"].get("items"))
        elif "String" in obj:
            names = [obj["String"]["sval"]]
        else:
            continue
        if rt in _ON_TABLE_DROPS and len(names) > 1:
            e.lock(".".join(names[:-1]), AEL)
        elif rt in ("OBJECT_TABLE", "OBJECT_MATVIEW", "OBJECT_VIEW", "OBJECT_SEQUENCE", "OBJECT_FOREIGN_TABLE"):
            e.lock(".".join(names), AEL)
        elif rt == "OBJECT_INDEX":
            e.lock(".".join(names), SUE if conc else AEL)
    e.target = next(iter(e.locks), None)
    return e


def _truncate(n, v, f):
    e = Effect(kind="TRUNCATE", destructive=True, data_changing=True)
    for rv in n.get("relations") or ():
        e.lock(rv_name(rv), AEL)
    e.target = next(iter(e.locks), None)
    return e


_READ_NODES = frozenset({"RangeVar", "CommonTableExpr"})


def _reads(e: Effect, n: dict, skip: dict | None = None) -> None:
    """ACCESS SHARE on every table a query reads (FROM, USING, sub-selects), CTE names excluded."""
    ctes, read = set(), []
    for kind, body in walk(n, _READ_NODES):
        if kind == "RangeVar":
            read.append(body)
        elif kind == "CommonTableExpr":
            ctes.add(body.get("ctename"))
    for body in read:
        if body is skip or (not body.get("schemaname") and body.get("relname") in ctes):
            continue
        e.lock(rv_name(body), ACCESS_SHARE)


def _dml(kind):
    def fn(n, v, f, reads=True):
        rel = rv_name(n.get("relation"))
        e = Effect(kind=kind, data_changing=True, target=rel, scan=kind != "INSERT",
                   destructive=kind == "DELETE")
        e.lock(rel, ROW_EXCL)
        if reads:
            _reads(e, n, skip=n.get("relation"))
        return e
    return fn


def _merge(n, v, f):
    rel = rv_name(n.get("relation"))
    e = Effect(kind="MERGE", data_changing=True, target=rel, scan=True)
    e.lock(rel, ROW_EXCL)
    _reads(e, n, skip=n.get("relation"))
    return e


def _select(n, v, f):
    e = Effect(kind="SELECT")
    if n.get("fromClause"):
        _reads(e, n)
    e.target = next(iter(e.locks), None)
    return e


def _rename(n, v, f):
    rt = n.get("renameType", "")
    rel = n.get("relation")
    kind = "RENAME " + rt.removeprefix("OBJECT_").replace("_", " ")
    e = Effect(kind=kind, incompatible=True)
    if rel:
        name = rv_name(rel)
        e.target = name
        e.lock(name, SUE if rt == "OBJECT_INDEX" and v >= 12 else AEL)
    return e


def _refresh(n, v, f):
    name = rv_name(n.get("relation"))
    conc = bool(n.get("concurrent"))
    e = Effect(kind="REFRESH MATERIALIZED VIEW" + (" CONCURRENTLY" if conc else ""), target=name, scan=True)
    e.lock(name, EXCL if conc else AEL)
    return e


def _reindex(n, v, f):
    opts = def_names(n.get("params"))
    conc = "concurrently" in opts
    what = n.get("kind", "").removeprefix("REINDEX_OBJECT_")
    e = Effect(kind="REINDEX" + (" CONCURRENTLY" if conc else ""), scan=True,
               transactional=not conc and what in ("TABLE", "INDEX"))
    if n.get("relation"):
        name = rv_name(n["relation"])
        e.target = name
        e.lock(name, SUE if conc else (AEL if what == "INDEX" else SHARE))
    return e


def _vacuum(n, v, f):
    opts = def_names(n.get("options"))
    full = "full" in opts
    is_vac = bool(n.get("is_vacuumcmd"))
    e = Effect(kind=("VACUUM FULL" if full else "VACUUM") if is_vac else "ANALYZE", transactional=not is_vac,
               rewrite=full, scan=True)
    for r in n.get("rels") or ():
        e.lock(rv_name(r.get("VacuumRelation", {}).get("relation")), AEL if full else SUE)
    e.target = next(iter(e.locks), None)
    return e


def _cluster(n, v, f):
    e = Effect(kind="CLUSTER", rewrite=True, transactional=bool(n.get("relation")))
    if n.get("relation"):
        e.target = rv_name(n["relation"])
        e.lock(e.target, AEL)
    return e


def _trigger(n, v, f):
    name = rv_name(n.get("relation"))
    e = Effect(kind="CREATE TRIGGER", target=name)
    e.lock(name, SRE)
    return e


def _policy(kind):
    def fn(n, v, f):
        name = rv_name(n.get("table"))
        e = Effect(kind=kind, target=name, incompatible=True)
        e.lock(name, AEL)
        return e
    return fn


def _lock(n, v, f):
    e = Effect(kind="LOCK TABLE")
    for rv in n.get("relations") or ():
        e.lock(rv_name(rv), _LOCKSTMT_MODES.get(n.get("mode", 8), AEL))
    e.target = next(iter(e.locks), None)
    return e


def _simple(kind, transactional=True, **flags):
    def fn(n, v, f):
        return Effect(kind=kind, transactional=transactional, **flags)
    return fn


def _comment(n, v, f):
    e = Effect(kind="COMMENT")
    obj = n.get("object", {})
    if n.get("objtype") in ("OBJECT_TABLE", "OBJECT_COLUMN") and "List" in obj:
        names = strings(obj["List"].get("items"))
        rel = ".".join(names if n["objtype"] == "OBJECT_TABLE" else names[:-1])
        if rel:
            e.lock(rel, SUE)
    return e


def _alter_enum(n, v, f):
    adding = bool(n.get("newVal")) and not n.get("oldVal")
    return Effect(kind="ALTER TYPE ADD VALUE" if adding else "ALTER TYPE RENAME VALUE",
                  transactional=not (adding and v < 12), incompatible=not adding)


def _flag(options, name: str, default: bool = True) -> bool:
    """A boolean WITH option as PostgreSQL reads it (on/off, true/false, 1/0; named alone: true)."""
    for o in options or ():
        d = o.get("DefElem") or {}
        if d.get("defname") != name:
            continue
        arg = d.get("arg") or {}
        if not arg:
            return True
        value = (arg.get("Boolean", {}).get("boolval", False) if "Boolean" in arg else arg.get("Integer", {}).get("ival")
                 if "Integer" in arg else (strings(arg.get("TypeName", {}).get("names")) or [""])[-1]
                 if "TypeName" in arg else arg.get("String", {}).get("sval"))
        return str(value).lower() not in ("false", "off", "0", "no", "none")
    return default


def _create_subscription(n, v, f):
    # create_slot (default true; connect = false turns it off) makes PostgreSQL refuse a transaction block
    slot = _flag(n.get("options"), "connect") and _flag(n.get("options"), "create_slot")
    return Effect(kind="CREATE SUBSCRIPTION", transactional=not slot)


def _alter_subscription(n, v, f):
    # REFRESH PUBLICATION, and SET/ADD/DROP PUBLICATION with refresh (the default), refuse a transaction block
    kind = n.get("kind", "").removeprefix("ALTER_SUBSCRIPTION_")
    refresh = kind == "REFRESH" or (kind.endswith("_PUBLICATION") and _flag(n.get("options"), "refresh"))
    return Effect(kind="ALTER SUBSCRIPTION", transactional=not refresh)


def _alter_database(n, v, f):
    moves = "tablespace" in def_names(n.get("options"))
    return Effect(kind="ALTER DATABASE SET TABLESPACE" if moves else "ALTER DATABASE", transactional=not moves)


def _transaction(n, v, f):
    return Effect(kind=n.get("kind", "TRANS_STMT").removeprefix("TRANS_STMT_").replace("_", " "))


def _set(n, v, f):
    return Effect(kind="SET" if n.get("kind") != "VAR_RESET" else "RESET")


def _object_schema(n, v, f):
    e = Effect(kind="SET SCHEMA", incompatible=True)
    if n.get("relation"):
        e.target = rv_name(n["relation"])
        e.lock(e.target, AEL)
    return e


def _view(n, v, f):
    name = rv_name(n.get("view"))
    e = Effect(kind="CREATE OR REPLACE VIEW" if n.get("replace") else "CREATE VIEW", target=name, creates=[name])
    e.lock(name, AEL)
    return e


def _create_domain(n, v, f):
    return Effect(kind="CREATE DOMAIN", creates=[qualified(n.get("domainname"))])


_DESCRIBERS = {
    "CreateStmt": _create_table, "CreateTableAsStmt": _create_table_as, "IndexStmt": _index,
    "AlterTableStmt": alter_table, "DropStmt": _drop, "TruncateStmt": _truncate,
    "UpdateStmt": _dml("UPDATE"), "DeleteStmt": _dml("DELETE"), "InsertStmt": _dml("INSERT"), "MergeStmt": _merge,
    "RenameStmt": _rename, "RefreshMatViewStmt": _refresh, "ReindexStmt": _reindex, "VacuumStmt": _vacuum,
    "ClusterStmt": _cluster, "CreateTrigStmt": _trigger, "CreatePolicyStmt": _policy("CREATE POLICY"),
    "AlterPolicyStmt": _policy("ALTER POLICY"), "LockStmt": _lock, "CommentStmt": _comment,
    "AlterEnumStmt": _alter_enum, "TransactionStmt": _transaction, "VariableSetStmt": _set,
    "AlterObjectSchemaStmt": _object_schema, "ViewStmt": _view, "CreateDomainStmt": _create_domain,
    "DoStmt": _simple("DO"), "SelectStmt": _select, "CreateEnumStmt": _simple("CREATE TYPE"),
    "CompositeTypeStmt": _simple("CREATE TYPE"), "CreateFunctionStmt": _simple("CREATE FUNCTION"),
    "CreateExtensionStmt": _simple("CREATE EXTENSION"), "CreateSchemaStmt": _simple("CREATE SCHEMA"),
    "CreateSeqStmt": _simple("CREATE SEQUENCE"), "GrantStmt": _simple("GRANT"),
    "CreatedbStmt": _simple("CREATE DATABASE", transactional=False),
    "DropdbStmt": _simple("DROP DATABASE", transactional=False, destructive=True, incompatible=True),
    "CreateTableSpaceStmt": _simple("CREATE TABLESPACE", transactional=False),
    "DropTableSpaceStmt": _simple("DROP TABLESPACE", transactional=False),
    "AlterSystemStmt": _simple("ALTER SYSTEM", transactional=False),
    # a subscription with a replication slot (the usual case) refuses a transaction block when dropped
    "CreateSubscriptionStmt": _create_subscription, "AlterSubscriptionStmt": _alter_subscription,
    "DropSubscriptionStmt": _simple("DROP SUBSCRIPTION", transactional=False),
    "AlterDatabaseStmt": _alter_database,
    "AlterDomainStmt": _simple("ALTER DOMAIN"), "AlterFunctionStmt": _simple("ALTER FUNCTION"),
    "AlterExtensionStmt": _simple("ALTER EXTENSION"), "AlterSeqStmt": _simple("ALTER SEQUENCE"),
    "CallStmt": _simple("CALL"), "ExecuteStmt": _simple("EXECUTE"),
}
_DML = {t: _DESCRIBERS[t] for t in ("InsertStmt", "UpdateStmt", "DeleteStmt")}
