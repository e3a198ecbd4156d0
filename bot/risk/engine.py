"""analyze(): walk the statements of one file, apply every rule, and sum up the risk."""
from __future__ import annotations

import gc

from .catalogue import BY_CODE, checks_for, lookup
from .effect import AEL
from .locks import describe
from .models import Context, Finding, Lock, Report, Severity, StatementInfo, TableStats, build
from .nodes import const_value, func_names, rv_name, strings, type_name
from .parse import RawStatement, SyntaxProblem, parse
from .rules import Hit
from .state import State, Stmt

SMALL_ROWS, LARGE_ROWS, HUGE_ROWS = 100_000, 10_000_000, 100_000_000
SMALL_BYTES, LARGE_BYTES = 100 * 2**20, 10 * 2**30


def analyze(sql: str | bytes, context: Context | None = None) -> Report:
    """Analyse one migration file.

    >>> analyze("CREATE INDEX i ON users (email);").risk
    <Severity.HIGH: 'high'>
    """
    ctx = context or Context()
    findings: list[Finding] = []
    text, bad_encoding = _decode(sql)
    if bad_encoding:
        findings.append(_finding("MG002", bad_encoding[0], bad_encoding[1], None,
                                 "The file is not valid UTF-8; invalid bytes were replaced.", ctx))
    statements: list[StatementInfo] = []
    st = State(ctx=ctx, tx_open=ctx.assume_in_transaction, lock_timeout=ctx.runner_lock_timeout,
               statement_timeout=ctx.runner_statement_timeout)
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of small parse-tree dicts: the cyclic GC would triple the decode time
    try:
        for item in parse(text):
            if isinstance(item, SyntaxProblem):
                findings.append(_finding("MG001", item.line, item.column, None,
                                         f"Syntax error: {item.message}.", ctx))
                continue
            statements.append(_statement(item, st, ctx, findings))
        if st.tx_open and st.explicit:
            findings.append(_finding("MG606", st.begin_line, 1, None,
                                     "BEGIN at this line is never committed; the work is rolled back.", ctx))
    finally:
        if gc_was_enabled:
            gc.enable()
    findings = [f for f in findings if f is not None]
    risk, reasons = _overall(findings, statements)
    return Report(risk=risk, reasons=reasons, statements=tuple(statements), findings=tuple(findings),
                  pg_version=ctx.pg_version)


def _decode(sql: str | bytes) -> tuple[str, tuple[int, int] | None]:
    if isinstance(sql, str):
        try:
            sql.encode("utf-8")
        except UnicodeEncodeError:
            sql = sql.encode("utf-8", "surrogateescape")
        else:
            return sql.replace("\x00", " ") if "\x00" in sql else sql, None
    try:
        return sql.decode("utf-8").replace("\x00", " "), None
    except UnicodeDecodeError as exc:
        line = sql.count(b"\n", 0, exc.start) + 1
        col = len(sql[sql.rfind(b"\n", 0, exc.start) + 1:exc.start].decode("utf-8", "replace")) + 1
        return sql.decode("utf-8", "replace").replace("\x00", " "), (line, col)


def _statement(raw: RawStatement, st: State, ctx: Context, findings: list[Finding]) -> StatementInfo:
    fx = describe(raw.node_type, raw.node, ctx.pg_version, ctx.functions)
    explicit = st.tx_open and st.explicit
    in_tx = st.tx_open and (fx.transactional or explicit) and raw.node_type != "TransactionStmt"
    s = Stmt(raw, fx, in_tx, explicit)
    hits = [h for check in checks_for(raw.node_type) for h in check(s, st)]
    used: set[str] = set()
    for h in hits:
        f = _from_hit(h, raw, st, ctx, used)
        if f is not None:
            findings.append(f)
    for d in raw.directives:
        if d.reason is None:
            findings.append(_finding("MG003", d.line, 1, raw.index,
                                     f"`guardian: accept {' '.join(d.codes)}` has no `because <reason>`; "
                                     "nothing was accepted.", ctx))
        for code in d.codes:
            rule = lookup(code)
            if rule is None or rule.code not in used:
                findings.append(_finding("MG004", d.line, 1, raw.index,
                                         f"`{code}` is not a rule that fired on this statement.", ctx))
    _update(s, st)
    return build(StatementInfo, 
        index=raw.index, line=raw.line, column=raw.column, kind=fx.kind, transactional=fx.transactional,
        in_transaction=in_tx, locks=tuple(_lock(r, m) for r, m in fx.locks.items()),
        rewrite=fx.rewrite, scan=fx.scan, destructive=fx.destructive, incompatible=fx.incompatible,
        data_changing=fx.data_changing, excerpt=raw.text[:EXCERPT])


EXCERPT = 240  # characters of each statement kept in the report
_LOCKS: dict[tuple[str, str], Lock] = {}


def _lock(relation: str, mode: str) -> Lock:
    """Lock values are immutable, so equal ones are shared (a 50,000-statement file repeats them)."""
    key = (relation, mode)
    found = _LOCKS.get(key)
    if found is None:
        if len(_LOCKS) > 100_000:
            _LOCKS.clear()
        found = _LOCKS[key] = build(Lock, relation=relation, mode=mode)
    return found


def _enabled(code: str, ctx: Context) -> bool:
    rule = BY_CODE[code]
    if code in ctx.disabled or rule.name in ctx.disabled:
        return False
    return rule.default_enabled or code in ctx.enabled or rule.name in ctx.enabled


def _from_hit(h: Hit, raw: RawStatement, st: State, ctx: Context, used: set[str]) -> Finding | None:
    if not _enabled(h.code, ctx):
        return None
    rule = BY_CODE[h.code]
    severity = h.severity or rule.severity
    message = h.message
    if rule.size_sensitive and h.relation:
        severity, note = _sized(severity, st.stats(h.relation))
        message += note
    accepted, reason = False, None
    for d in raw.directives:
        if d.reason and any(lookup(c) is rule for c in d.codes):
            accepted, reason = True, d.reason
    used.add(rule.code)
    return build(Finding, code=rule.code, name=rule.name, severity=severity, line=raw.line,
                                   column=raw.column, statement=raw.index, message=message, fix=rule.fix,
                                   accepted=accepted, accept_reason=reason)


def _sized(severity: Severity, stats: TableStats | None) -> tuple[Severity, str]:
    if stats is None or (stats.rows is None and stats.bytes is None):
        return severity, ""
    rows, size = stats.rows, stats.bytes
    label = f" (~{rows:,} rows)" if rows is not None else f" (~{size // 2**20:,} MB)"
    if (rows is None or rows < SMALL_ROWS) and (size is None or size < SMALL_BYTES):
        return Severity.LOW, label + "; small table, low risk"
    if (rows or 0) >= HUGE_ROWS:
        return severity.raised(), label
    if (rows or 0) >= LARGE_ROWS or (size or 0) >= LARGE_BYTES:
        return max(severity, Severity.HIGH, key=lambda s: s.rank), label
    return severity, label


def _finding(code: str, line: int, column: int, statement: int | None, message: str, ctx: Context) -> Finding | None:
    if not _enabled(code, ctx):
        return None
    rule = BY_CODE[code]
    return build(Finding, code=code, name=rule.name, severity=rule.severity, line=line, column=column,
                                   statement=statement, message=message, fix=rule.fix, accepted=False,
                                   accept_reason=None)


def _overall(findings: list[Finding], statements: list[StatementInfo]) -> tuple[Severity, tuple[str, ...]]:
    live = [f for f in findings if not f.accepted]
    if not statements and not findings:
        return Severity.LOW, ("no SQL statements (empty or comments only)",)
    if not live:
        accepted = len(findings)
        return Severity.LOW, (f"no findings{f' ({accepted} accepted)' if accepted else ''}",)
    risk = max((f.severity for f in live), key=lambda s: s.rank)
    top = sorted(live, key=lambda f: (-f.severity.rank, f.line))
    reasons = [f"{f.severity.value}: {f.name} at line {f.line}" for f in top[:5]]
    if len(top) > 5:
        reasons.append(f"... and {len(top) - 5} more findings")
    if any(f.code == "MG005" for f in live):
        reasons.append("contains code the linter cannot see into: risk unknown, needs a human review")
    return risk, tuple(reasons)


def _update(s: Stmt, st: State) -> None:
    """Remember what this statement changed, for the rules on later statements."""
    t, n, fx = s.type, s.node, s.fx
    if t == "TransactionStmt":
        kind = n.get("kind", "")
        if kind in ("TRANS_STMT_BEGIN", "TRANS_STMT_START"):
            st.tx_open, st.explicit, st.begin_line = True, True, s.raw.line
            st.tx_id += 1
            st.held.clear()
            st.held_reported = False
        elif kind in ("TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK", "TRANS_STMT_COMMIT_PREPARED",
                      "TRANS_STMT_PREPARE"):
            st.tx_open = st.explicit = False
            st.tx_id += 1
            st.held.clear()
            st.held_reported = False
        return
    if t == "VariableSetStmt":
        _setting(n.get("name", ""), [const_value(a) for a in n.get("args") or ()], st)
        return
    if t == "SelectStmt" and "set_config" in func_names(n.get("targetList")):
        for fc in _set_configs(n.get("targetList")):
            _setting(fc[0], fc[1:2], st)
    if not fx.transactional:
        st.nontx_seen = True
        if st.tx_open and not st.explicit:  # the runner runs it alone; a new transaction follows
            st.tx_id += 1
            st.held.clear()
            st.held_reported = False
    elif fx.locks and t not in ("SelectStmt",):
        st.tx_ddl_seen = True
    if s.in_tx:
        for rel, mode in fx.locks.items():
            if mode == AEL and not st.is_new(rel) and rel not in fx.creates:
                st.held.setdefault(rel, (mode, s.raw.line))
    if t == "CreateStmt":
        _created_table(n, st)
    elif t == "IndexStmt":
        cols = tuple(p["IndexElem"].get("name") or "" for p in n.get("indexParams") or () if "IndexElem" in p)
        st.indexes.setdefault(rv_name(n.get("relation")), set()).add(cols)
    elif t == "AlterTableStmt":
        _altered_table(n, st)
    st.created.update(fx.creates)


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
            added = st.not_valid.get(cmd.get("name", ""))
            if added and added[2]:
                st.not_null_checks.add((table, added[2]))
        elif sub == "AT_SetNotNull":
            st.not_null_done.add(table)
        elif sub == "AT_DropConstraint" and (cmd.get("name") or "").endswith("pkey"):
            st.dropped_pkeys.add(table)
        elif sub in ("AT_AlterColumnType", "AT_AddColumn") and "ColumnDef" in d:
            col = d["ColumnDef"].get("colname") or cmd.get("name")
            st.coltypes[(table, col)] = type_name(d["ColumnDef"].get("typeName")).lower()
            if sub == "AT_AddColumn" and not d["ColumnDef"].get("constraints"):
                st.null_columns.add((table, col))


def _not_null_col(c: dict) -> str | None:
    e = (c.get("raw_expr") or {}).get("NullTest")
    if e and e.get("nulltesttype") == "IS_NOT_NULL" and "ColumnRef" in e.get("arg", {}):
        cols = strings(e["arg"]["ColumnRef"].get("fields"))
        return cols[-1] if cols else None
    return None
