"""ALTER TABLE: the lock each subcommand takes and whether it rewrites or scans the table."""
from __future__ import annotations

from .effect import AEL, SRE, SUE, Effect
from .nodes import column_constraints, const_null, rv_name, type_name, volatility

# ALTER TABLE subcommand -> lock taken on the table (PostgreSQL docs, "ALTER TABLE").
_AT_LOCKS = {
    "AT_SetStatistics": SUE, "AT_SetOptions": SUE, "AT_ResetOptions": SUE, "AT_ClusterOn": SUE,
    "AT_DropCluster": SUE, "AT_SetRelOptions": SUE, "AT_ResetRelOptions": SUE, "AT_ValidateConstraint": SUE,
    "AT_EnableTrig": SRE, "AT_EnableAlwaysTrig": SRE, "AT_EnableReplicaTrig": SRE, "AT_DisableTrig": SRE,
    "AT_EnableTrigAll": SRE, "AT_DisableTrigAll": SRE, "AT_EnableTrigUser": SRE, "AT_DisableTrigUser": SRE,
    "AT_AttachPartition": SUE,
}


def alter_table(n, v, f):
    objtype = n.get("objtype", "OBJECT_TABLE")
    table = rv_name(n.get("relation"))
    word = {"OBJECT_INDEX": "ALTER INDEX", "OBJECT_MATVIEW": "ALTER MATERIALIZED VIEW", "OBJECT_VIEW": "ALTER VIEW",
            "OBJECT_SEQUENCE": "ALTER SEQUENCE", "OBJECT_TYPE": "ALTER TYPE"}.get(objtype, "ALTER TABLE")
    e = Effect(kind=word, target=table)
    for item in n.get("cmds") or ():
        cmd = item["AlterTableCmd"]
        _alter_cmd(e, table, cmd, v, f)
    if not e.locks:
        e.lock(table, AEL)
    return e


def _alter_cmd(e: Effect, table: str, cmd: dict, v: int, f: dict) -> None:
    sub = cmd.get("subtype", "")
    mode = _AT_LOCKS.get(sub, AEL)
    if sub == "AT_AttachPartition":
        part = rv_name(cmd["def"]["PartitionCmd"]["name"])
        e.lock(table, SUE if v >= 12 else AEL)
        e.lock(part, AEL)
        e.scan = True
        return
    if sub == "AT_DetachPartition":
        pc = cmd["def"]["PartitionCmd"]
        part = rv_name(pc["name"])
        conc = bool(pc.get("concurrent"))
        e.lock(table, SUE if conc else AEL)
        e.lock(part, AEL)  # CONCURRENTLY too: its second transaction ends with ACCESS EXCLUSIVE on the partition
        e.transactional = e.transactional and not conc
        return
    if sub == "AT_AddConstraint" and (cmd.get("def") or {}).get("Constraint", {}).get("contype") == "CONSTR_FOREIGN":
        mode = SRE  # ADD FOREIGN KEY: SHARE ROW EXCLUSIVE on both tables
    e.lock(table, mode)
    if sub == "AT_AddColumn":
        col = cmd["def"]["ColumnDef"]
        e.rewrite |= column_rewrites(col, v, f)
        cons = column_constraints(col)
        for c in cons:
            if c.get("contype") == "CONSTR_FOREIGN" and c.get("pktable"):
                e.lock(rv_name(c["pktable"]), SRE)
                # validated only when every row gets a value (a default); a new NULL column has nothing to check
                e.scan |= any(d.get("contype") == "CONSTR_DEFAULT" and not const_null(d.get("raw_expr")) for d in cons)
            if c.get("contype") in ("CONSTR_UNIQUE", "CONSTR_PRIMARY", "CONSTR_CHECK"):
                e.scan = True
    elif sub == "AT_AddConstraint":
        c = cmd["def"].get("Constraint", {})
        ct = c.get("contype")
        if ct == "CONSTR_FOREIGN":
            if c.get("pktable"):
                e.lock(rv_name(c["pktable"]), SRE)
        if not c.get("skip_validation") and not c.get("indexname"):
            e.scan = True
        e.incompatible = True
    elif sub == "AT_AlterColumnType":
        pass  # the column rule decides whether it rewrites (binary-coercible changes do not)
    elif sub in ("AT_SetNotNull",):
        e.scan = True
        e.incompatible = True
    elif sub in ("AT_SetLogged", "AT_SetUnLogged", "AT_SetAccessMethod", "AT_SetExpression"):
        e.rewrite = True
    elif sub in ("AT_DropColumn", "AT_DropConstraint"):
        e.destructive = sub == "AT_DropColumn"
        e.incompatible = True


def column_rewrites(col: dict, v: int, functions: dict[str, str]) -> bool:
    """Does ADD COLUMN with this definition rewrite the table on server version v?"""
    tname = type_name(col.get("typeName")).lower()
    if tname in ("serial", "bigserial", "smallserial", "serial4", "serial8", "serial2"):
        return True
    for c in column_constraints(col):
        ct = c.get("contype")
        if ct == "CONSTR_IDENTITY" or (ct == "CONSTR_GENERATED" and c.get("generated_kind", "s") != "v"):
            return True
        if ct == "CONSTR_DEFAULT":
            expr = c.get("raw_expr")
            if const_null(expr):
                continue
            if v < 11:
                return True
            if volatility(expr, functions) == "volatile":
                return True
    return False

