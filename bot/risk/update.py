"""The engine's state-update step: what each statement changes in the script State, for the rules on later
statements. The only writer of that state (engine._finish calls update() once per statement, after its
rules ran); rules read it and return Hits."""
from __future__ import annotations

from .effect import AEL
from .nodes import column_constraints, column_refs, const_value, func_names, rv_name, strings, type_name, walk
from .rules import Hit
from .rules.rechecks import checks_after
from .state import State, Stmt


def update(s: Stmt, st: State, hits: list[Hit]) -> None:
    """Remember what this statement changed and which rules it made fire, for the rules on later
    statements (the only writer of the engine's state: rules read it)."""
    t, n, fx = s.type, s.node, s.fx
    if hits:
        codes = {h.code for h in hits}
        st.fired |= codes
        st.fired_in_tx |= codes
    if t == "TransactionStmt":
        kind = n.get("kind", "")
        if kind in ("TRANS_STMT_BEGIN", "TRANS_STMT_START"):
            st.tx_open, st.explicit, st.begin_line = True, True, s.raw.line
            st.tx_id += 1
            st.held.clear()
            st.fired_in_tx.clear()
        elif kind in ("TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK", "TRANS_STMT_COMMIT_PREPARED",
                      "TRANS_STMT_PREPARE"):
            if st.tx_open and not st.explicit:
                st.runner_closed = True
            st.tx_open = st.explicit = False
            st.tx_id += 1
            st.held.clear()
            st.fired_in_tx.clear()
        return
    if t == "VariableSetStmt":
        _setting(n.get("name", ""), [const_value(a) for a in n.get("args") or ()], st)
        return
    if t == "SelectStmt" and "set_config" in func_names(n.get("targetList")):
        for fc in _set_configs(n.get("targetList")):
            _setting(fc[0], fc[1:2], st)
    if st.existing_locks(fx)[1]:
        st.strong_lock_seen = True
    if not fx.transactional:
        st.nontx_seen = True
        if ctx_runner_prisma(st):
            st.nontx.append((s.raw.index, s.raw.line, s.raw.column, s.raw.text))
        if st.tx_open and not st.explicit:  # the runner runs it alone; a new transaction follows
            st.tx_id += 1
            st.held.clear()
            st.fired_in_tx.clear()
    elif fx.locks and t not in ("SelectStmt",):
        st.tx_ddl_seen = True
    if t == "AlterEnumStmt" and n.get("newVal") and fx.transactional and st.tx_open:
        st.new_values[n["newVal"]] = (".".join(strings(n.get("typeName"))), s.raw.line, st.tx_id)
    if s.in_tx and not (t == "DropStmt" and n.get("removeType") == "OBJECT_INDEX"):  # an index is not a table
        for rel, mode in fx.locks.items():
            if mode == AEL and not st.is_new(rel) and rel not in fx.creates:
                st.held.setdefault(rel, (mode, s.raw.line))
    if t == "CreateEnumStmt":
        st.enum_types[(strings(n.get("typeName")) or ["?"])[-1]] = tuple(strings(n.get("vals")))
    elif t == "RenameStmt" and n.get("renameType") == "OBJECT_TYPE":
        old = strings((n.get("object") or {}).get("List", {}).get("items"))
        if (old[-1] if old else "?") not in st.enum_types and not (
                n.get("relation") and st.is_new(rv_name(n["relation"]))):
            # renamed out of the way: if the file drops it later (Prisma's enum swap), its MG507 is moot (_report)
            st.rename_candidates.append((s.raw.index, n.get("newname", "")))
        if old:
            st.type_renames[n.get("newname", "")] = old[-1]
    elif t == "DropStmt" and n.get("removeType") == "OBJECT_TYPE":
        for obj in n.get("objects") or ():
            st.dropped_types.update(strings((obj.get("TypeName") or {}).get("names"))[-1:])
    elif t == "DropStmt" and n.get("removeType") in ("OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_INDEX"):
        if n["removeType"] != "OBJECT_INDEX" and not (fx.locks and all(st.is_new(r) for r in fx.locks)):
            # if the file creates the view(s) again, readers lose nothing: its MG504 is moot (_report)
            st.rename_candidates.append((s.raw.index, "view:" + ",".join(fx.locks)))
        for obj in n.get("objects") or ():
            names = strings((obj.get("List") or {}).get("items"))
            if names:
                if n["removeType"] == "OBJECT_INDEX":
                    st.dropped_indexes.add(names[-1])
                else:
                    st.dropped_views.update((".".join(names), names[-1]))
    elif t == "DeleteStmt":
        st.deleted_from.add(rv_name(n.get("relation")))
        if not n.get("whereClause"):
            st.emptied.add(rv_name(n.get("relation")))
    elif t == "TruncateStmt":
        st.emptied.update(rv_name(r) for r in n.get("relations") or ())
    if t == "CreateStmt":
        _created_table(n, st)
    elif t == "IndexStmt":
        cols = tuple(p["IndexElem"].get("name") or "" for p in n.get("indexParams") or () if "IndexElem" in p)
        table = rv_name(n.get("relation"))
        st.indexes.setdefault(table, set()).add(cols)
        if n.get("idxname"):
            st.index_defs[n["idxname"]] = (table, tuple(dict.fromkeys(
                [c for c in cols if c] + column_refs(n.get("indexParams")) + column_refs(n.get("whereClause")))),
                "" in cols or bool(n.get("whereClause")))
    elif t == "CreateDomainStmt":
        st.domains[(strings(n.get("domainname")) or ["?"])[-1]] = bool(n.get("constraints"))
    elif t == "ViewStmt" and n.get("query"):
        _view(rv_name(n.get("view")), n["query"], st)
    elif t == "CreateTableAsStmt" and n.get("objtype") == "OBJECT_MATVIEW" and n.get("query"):
        _view(rv_name((n.get("into") or {}).get("rel")), n["query"], st)
    elif t == "AlterTableStmt":
        _altered_table(n, st)
        checks = checks_after(s, st)
        if checks is not None:
            st.checks[checks[0]] = checks[1]
    st.created.update(fx.creates)


def ctx_runner_prisma(st: State) -> bool:
    return st.ctx.runner == "prisma"


def _setting(name: str, values: list, st: State) -> None:
    on = not values or str(values[0]).strip() not in ("0", "", "None")
    if name == "lock_timeout":
        st.lock_timeout = on
    elif name == "statement_timeout":
        st.statement_timeout = on


def _set_configs(target_list) -> list[list]:
    out = []
    for r in target_list or ():
        fc = r.get("ResTarget", {}).get("val", {}).get("FuncCall")
        if fc and strings(fc.get("funcname"))[-1:] == ["set_config"]:
            out.append([const_value(a) for a in fc.get("args") or ()])
    return out


def _created_table(n: dict, st: State) -> None:
    table = rv_name(n.get("relation"))
    if n.get("partspec"):
        st.partitioned.add(table)
    for elt in n.get("tableElts") or ():
        if "ColumnDef" in elt:
            col = elt["ColumnDef"]
            st.coltypes[(table, col.get("colname"))] = type_name(col.get("typeName")).lower()
            for c in col.get("constraints") or ():
                if c.get("Constraint", {}).get("contype") in ("CONSTR_PRIMARY", "CONSTR_UNIQUE"):
                    st.indexes.setdefault(table, set()).add((col.get("colname"),))
        elif elt.get("Constraint", {}).get("contype") in ("CONSTR_PRIMARY", "CONSTR_UNIQUE"):
            st.indexes.setdefault(table, set()).add(tuple(strings(elt["Constraint"].get("keys"))))


def _altered_table(n: dict, st: State) -> None:
    table = rv_name(n.get("relation"))
    if not st.is_new(table) and n.get("objtype", "OBJECT_TABLE") == "OBJECT_TABLE":
        st.alters[table] = st.alters.get(table, 0) + 1
    for item in n.get("cmds") or ():
        cmd = item["AlterTableCmd"]
        sub = cmd.get("subtype")
        d = cmd.get("def") or {}
        if sub == "AT_AddConstraint" and "Constraint" in d:
            c = d["Constraint"]
            col = _not_null_col(c)
            if c.get("contype") == "CONSTR_CHECK" and not c.get("skip_validation"):
                st.checked_tables.add(table)
                if col:
                    st.not_null_checks.add((table, col))
            elif c.get("skip_validation"):
                st.not_valid[c.get("conname", "")] = (table, st.tx_id, col)
            if c.get("contype") in ("CONSTR_PRIMARY", "CONSTR_UNIQUE") and c.get("keys"):
                st.indexes.setdefault(table, set()).add(tuple(strings(c.get("keys"))))
        elif sub == "AT_ValidateConstraint":
            st.checked_tables.add(table)
            st.validated.add(cmd.get("name", ""))
            added = st.not_valid.get(cmd.get("name", ""))
            if added and added[2]:
                st.not_null_checks.add((table, added[2]))
        elif sub == "AT_SetNotNull":
            st.not_null_done.add(table)
            st.not_null_cols.add((table, cmd.get("name", "")))
        elif sub == "AT_DropConstraint" and (cmd.get("name") or "").endswith("pkey"):
            st.dropped_pkeys.add(table)
        elif sub in ("AT_AlterColumnType", "AT_AddColumn") and "ColumnDef" in d:
            col = d["ColumnDef"].get("colname") or cmd.get("name")
            st.coltypes[(table, col)] = type_name(d["ColumnDef"].get("typeName")).lower()
            if sub == "AT_AddColumn" and not d["ColumnDef"].get("constraints"):
                st.null_columns.add((table, col))
            elif sub == "AT_AddColumn" and any(c.get("contype") in ("CONSTR_NOTNULL", "CONSTR_PRIMARY")
                                               for c in column_constraints(d["ColumnDef"])):
                st.not_null_cols.add((table, col))


def _view(name: str, query: dict, st: State) -> None:
    """Remember the (table, column) pairs a view created in this file selects (* selects every column)."""
    tables = [rv_name(body) for kind, body in walk(query) if kind == "RangeVar"]
    cols = column_refs(query)
    for table in tables:
        for col in cols:
            st.view_columns.setdefault((table, col), name)


def _not_null_col(c: dict) -> str | None:
    e = (c.get("raw_expr") or {}).get("NullTest")
    if e and e.get("nulltesttype") == "IS_NOT_NULL" and "ColumnRef" in e.get("arg", {}):
        cols = strings(e["arg"]["ColumnRef"].get("fields"))
        return cols[-1] if cols else None
    return None
