"""analyze(): walk the statements of one file, apply every rule, and sum up the risk."""
from __future__ import annotations

import gc
import re
from contextlib import contextmanager

from .catalogue import BY_CODE, lookup, plan_for, rule_on
from .locks import catalog_locks, describe
from .models import Context, Finding, Lock, Report, Severity, StatementInfo, build, build_from
from .parse import (Attach, Positions, RawStatement, SyntaxProblem, directives_of, items, parse, source,
                    split_pieces, too_complex, SHARE)
from .fixes import advice
from .recipes import tailored
from .rules import Hit
from .rules.transactions import literal_values
from .sizing import sized as _sized
from .state import State, Stmt
from .update import update


def analyze(sql: str | bytes, context: Context | None = None) -> Report:
    """Analyse one migration file.

    >>> analyze("CREATE INDEX i ON users (email);").risk
    <Severity.HIGH: 'high'>
    """
    ctx = context or Context()
    findings: list[Finding] = []
    text, bad_encoding, data = source(sql)
    if bad_encoding:
        findings.append(_finding("MG002", bad_encoding[0], bad_encoding[1], None,
                                 "The file is not valid UTF-8; invalid bytes were replaced.", ctx))
    statements: list[StatementInfo] = []
    st = State(ctx=ctx, tx_open=ctx.assume_in_transaction, lock_timeout=ctx.runner_lock_timeout,
               statement_timeout=ctx.runner_statement_timeout, batch_lines=batch_lines(data))
    with _gc_paused():
        for item in parse(text, data):
            if isinstance(item, SyntaxProblem):
                findings.append(_syntax(item, ctx))
                continue
            _analysed(item, st, ctx, findings, statements)
        return _report(findings, statements, st, ctx)


def _analysed(raw: RawStatement, st: State, ctx: Context, findings: list, statements: list) -> None:
    """One statement, in order; a tree too deep for the rules' walks is a finding, not a crash."""
    try:
        statements.append(_finish(raw, _ahead(raw, ctx), st, ctx, findings))
    except RecursionError:
        findings.append(_syntax(too_complex(raw, _DEEP_WALK), ctx))


_DEEP_WALK = "its parse tree is nested too deeply for the rules to follow"


def too_complex_report(why: str, context: Context | None = None) -> Report:
    """The report of a file whose analysis did not finish (its request's time or memory budget ran out):
    MG006 on line 1, critical. Unlike a finding on one statement it is reported even where MG006 is
    switched off: nothing else is known about the file.

    >>> too_complex_report("the analysis ran out of its 30 s budget").risk
    <Severity.CRITICAL: 'critical'>
    """
    ctx = context or Context()
    rule = BY_CODE["MG006"]
    finding = build(Finding, code=rule.code, name=rule.name, severity=rule.severity, line=1, column=1,
                    statement=None, message=f"Too complex to analyse: {why}; risk unknown, needs a human review.",
                    fix=advice(rule.fix), accepted=False, accept_reason=None)
    risk, reasons = _overall([finding], [])
    return Report(risk=risk, reasons=reasons, statements=(), findings=(finding,), pg_version=ctx.pg_version)


def _report(findings: list, statements: list[StatementInfo], st: State, ctx: Context, left_out: int = 0) -> Report:
    """The Report; `left_out`: statements of the file whose records are not in `statements` (Split.head)."""
    if st.tx_open and st.explicit and not (ctx.assume_in_transaction and st.runner_closed):
        f = _finding("MG606", st.begin_line, 1, None, "BEGIN at this line is never committed; the work is rolled back.",
                     ctx)
        if f is not None:
            f = build_from(Finding, dict(f.__dict__, fix=f"-- End the transaction BEGIN opened at line {st.begin_line}, "
                                                        "at the end of the file:\nCOMMIT;"))
        findings.append(f)
    if ctx.runner == "prisma" and (len(statements) if isinstance(statements, list) else 0) + left_out > 1:
        for index, line, column, text in st.nontx:
            if not any(f is not None and f.code == "MG103" and f.statement == index for f in findings):
                findings.append(_prisma_alone(index, line, column, text, ctx))
    findings = [f for f in findings if f is not None]
    if st.rename_candidates:  # Prisma's enum swap: the type renamed to x_old is dropped later in the file
        moot = {i for i, name in st.rename_candidates if name in st.dropped_types}
        # a view dropped and created again later in the file (to change its columns): readers lose nothing
        moot |= {i for i, name in st.rename_candidates if name.startswith("view:")
                 and all(v in st.created for v in name[5:].split(","))}
        findings = [f for f in findings if not (f.code in ("MG507", "MG504") and f.statement in moot)]
    risk, reasons = _overall(findings, statements or left_out)
    return Report(risk=risk, reasons=reasons, statements=tuple(statements), findings=tuple(findings),
                  pg_version=ctx.pg_version)


class Split:
    """One big file analysed in two parts that can run on two cores (the caller forks; this stays pure).

    head() analyses the leading pieces completely, in order, and returns a picklable summary;
    ahead() parses the remaining pieces and works out what does not depend on earlier statements
    (effects, stateless rule families); finish(head_summary) then continues from the head's state
    in order. Same statements, same order, same state as analyze(): the same Report. head() and
    ahead() raise NeedsWhole when a piece whose failure analyze() would handle differently does not
    parse (e.g. a cut inside a function body): use analyze() then.
    """

    def __init__(self, sql: str | bytes | tuple, context: Context | None = None, share: float = SHARE,
                 parsed: dict | None = None) -> None:
        """`sql`: the file, or what parse.source() made of it; `parsed`: (start, end) of a piece -> a
        future of its parse_sql_json (parse.Preparse)."""
        self.ctx = context or Context()
        self.text, self.bad_encoding, self.data = sql if isinstance(sql, tuple) else source(sql)
        self.head_cuts, self.tail_cuts = split_pieces(self.text, share)
        self.parsed = parsed
        # after finish(): head statements in the Report, findings before the head's, head findings
        self.head_span = (0, 0, 0)
        self.head_done: tuple = ([], [])  # after head(): its statement records and findings
        self.directives = directives_of(self.data)
        self._ahead: list = []

    @property
    def ok(self) -> bool:
        """There is a head and a tail to share out."""
        return bool(self.head_cuts) and bool(self.tail_cuts)

    def _state(self) -> State:
        ctx = self.ctx
        return State(ctx=ctx, tx_open=ctx.assume_in_transaction, lock_timeout=ctx.runner_lock_timeout,
                     statement_timeout=ctx.runner_statement_timeout, batch_lines=batch_lines(self.data))

    def head(self, records: bool = True) -> tuple:
        """The leading pieces, analysed completely: (state, findings, statement records, directive index,
        statement count), picklable. With records=False the statement records are left out (None): the
        caller renders them itself (head_done) and finish() then leaves them out of the Report."""
        ctx, st = self.ctx, self._state()
        findings: list = []
        statements = []
        attach = Attach(self.data, self.directives)
        with _gc_paused():
            for item in items(self.text, self.data, Positions(self.data), self.head_cuts,
                              strict=len(self.head_cuts), parsed=self.parsed):
                attach(item)
                if isinstance(item, SyntaxProblem):
                    findings.append(_syntax(item, ctx))
                    continue
                _analysed(item, st, ctx, findings, statements)
        findings = [f for f in findings if f is not None]
        self.head_done = statements, findings
        infos = None
        if records:
            infos = []
            lock_pairs: dict[tuple, tuple] = {}
            for s in statements:
                locks = s.locks
                pairs = lock_pairs.get(locks)
                if pairs is None:
                    pairs = lock_pairs[locks] = tuple((lk.relation, lk.mode) for lk in locks)
                infos.append(dict(s.__dict__, locks=pairs))  # field order kept; pickled once per value
        state = {name: getattr(st, name) for name in _STATE_FIELDS}
        return state, [f.__dict__ for f in findings], infos, attach.i, len(statements)

    def ahead(self) -> None:
        ctx = self.ctx
        with _gc_paused():
            self._ahead = kept = []
            for item in items(self.text, self.data, Positions(self.data), self.tail_cuts, strict=1,
                              parsed=self.parsed):
                if isinstance(item, SyntaxProblem):
                    kept.append((item, None))
                    continue
                try:
                    kept.append((item, _ahead(item, ctx)))
                except RecursionError:
                    kept.append((too_complex(item, _DEEP_WALK), None))
                    continue
                text = item.text
                item.literals = set(literal_values(text)) if "'" in text else set()
                item.text = ""  # only the stateless rules, the excerpt and MG608 read it: memory, until finish()

    def finish(self, head: tuple) -> Report:
        """The Report, from head()'s summary. If that left the head's statement records out, so does the
        Report: it then holds the tail's statements only (head_span[0] == 0)."""
        ctx, st = self.ctx, self._state()
        state, _, _, directive_i, count = head
        findings: list = []
        if self.bad_encoding:
            findings.append(_finding("MG002", self.bad_encoding[0], self.bad_encoding[1], None,
                                     "The file is not valid UTF-8; invalid bytes were replaced.", ctx))
        with _gc_paused():
            for name, value in state.items():
                setattr(st, name, value)
            head_statements, head_found = head_records(head)  # no statements when head() left them out
            # where the head's records sit in the Report (lint may have them rendered already)
            self.head_span = (len(head_statements), sum(f is not None for f in findings), len(head_found))
            findings.extend(head_found)
            statements = list(head_statements)
            attach = Attach(self.data, self.directives, directive_i)
            for item, early in self._ahead:
                attach(item)
                if early is None:
                    findings.append(_syntax(item, ctx))
                    continue
                item.index += count
                try:
                    statements.append(_finish(item, early, st, ctx, findings))
                except RecursionError:
                    findings.append(_syntax(too_complex(item, _DEEP_WALK), ctx))
            return _report(findings, statements, st, ctx, count)


def head_records(head: tuple) -> tuple[list[StatementInfo], list[Finding]]:
    """The statement records and findings of a Split.head() summary (which it then owns)."""
    _, head_findings, infos, _, _ = head
    locks: dict[tuple, tuple] = {}
    statements = []
    for values in infos or ():
        pairs = values["locks"]
        found = locks.get(pairs)
        if found is None:
            found = locks[pairs] = tuple(_lock(r, m) for r, m in pairs)
        values["locks"] = found
        statements.append(build_from(StatementInfo, values))
    return statements, [build_from(Finding, f) for f in head_findings]


_STATE_FIELDS = tuple(f for f in State.__slots__ if f != "ctx")


_BATCH = re.compile(rb"^[ \t]*--[ \t]*guardian:[ \t]*batch[ \t]+\d+", re.IGNORECASE | re.MULTILINE)


def batch_lines(data: bytes) -> tuple[int, ...]:
    """The 1-based lines of the file's `-- guardian: batch N` comments (none in nearly every file)."""
    if b"batch" not in data:
        return ()
    return tuple(data.count(b"\n", 0, m.start()) + 1 for m in _BATCH.finditer(data))


@contextmanager
def _gc_paused():
    was = gc.isenabled()
    gc.disable()  # millions of small parse-tree dicts: the cyclic GC would triple the decode time
    try:
        yield
    finally:
        if was:
            gc.enable()


def _syntax(item: SyntaxProblem, ctx: Context) -> Finding | None:
    if item.too_complex:
        return _finding("MG006", item.line, item.column, None,
                        f"Too complex to analyse: {item.message}; risk unknown, needs a human review.", ctx)
    return _finding("MG001", item.line, item.column, None, f"Syntax error: {item.message}.", ctx)


def _ahead(raw: RawStatement, ctx: Context) -> tuple:
    """What does not depend on earlier statements: the effect and the stateless families' hits."""
    fx = describe(raw.node_type, raw.node, ctx.pg_version, ctx.functions, raw.other_tables)
    if ctx.tables:
        catalog_locks(fx, raw.node_type, raw.node, ctx)
    plan = plan_for(raw.node_type, ctx.disabled, ctx.enabled)
    early = None
    for check, stateless in plan:
        if stateless:
            if early is None:
                s = Stmt(raw, fx, None, None)
                early = []
            early.append(list(check(s, None)))
    # The statement record is built here (for a Split's tail, on the core that is otherwise idle);
    # _finish fills in what depends on earlier statements before anyone sees the record.
    info = build_from(StatementInfo, {
        "index": raw.index, "line": raw.line, "column": raw.column, "kind": fx.kind,
        "transactional": fx.transactional, "in_transaction": None,
        "locks": _locks(fx.locks), "rewrite": None, "scan": fx.scan,
        "destructive": fx.destructive, "incompatible": fx.incompatible, "data_changing": fx.data_changing,
        "excerpt": raw.text[:EXCERPT]})
    return fx, plan, early, info


def _finish(raw: RawStatement, ahead: tuple, st: State, ctx: Context, findings: list[Finding]) -> StatementInfo:
    """The in-order part: transaction flags, the stateful rules, directives and the state update."""
    fx, plan, early, info = ahead
    explicit = st.tx_open and st.explicit
    in_tx = st.tx_open and (fx.transactional or explicit) and raw.node_type != "TransactionStmt"
    s = Stmt(raw, fx, in_tx, explicit)
    hits: list[Hit] = []
    j = 0
    for check, stateless in plan:
        if stateless:
            hits += early[j]
            j += 1
        else:
            hits += check(s, st)
    used: set[str] = set()
    for h in hits:
        f = _from_hit(h, s, st, ctx, used)
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
    update(s, st, hits)
    st.prev_line = raw.line
    values = info.__dict__
    values["index"] = raw.index  # a statement of a Split's tail is renumbered after the head
    values["in_transaction"] = in_tx
    values["rewrite"] = fx.rewrite  # a column rule may have found a rewrite
    return info


EXCERPT = 240  # characters of each statement kept in the report
_LOCKS: dict[tuple[str, str], Lock] = {}


_LOCK_SETS: dict[tuple, tuple[Lock, ...]] = {}


def _locks(locks: dict[str, str]) -> tuple[Lock, ...]:
    """A statement's locks as shared Lock tuples (a big file repeats the same few sets)."""
    key = tuple(locks.items())
    found = _LOCK_SETS.get(key)
    if found is None:
        if len(_LOCK_SETS) > 100_000:
            _LOCK_SETS.clear()
        found = _LOCK_SETS[key] = tuple(_lock(r, m) for r, m in key)
    return found


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
    return rule_on(BY_CODE[code], ctx.disabled, ctx.enabled)


def _from_hit(h: Hit, s: Stmt, st: State, ctx: Context, used: set[str]) -> Finding | None:
    raw = s.raw
    rule = BY_CODE[h.code]
    if not rule_on(rule, ctx.disabled, ctx.enabled):
        return None
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
                                   column=raw.column, statement=raw.index, message=message,
                                   fix=tailored(rule.code, s, st, h.item), accepted=accepted, accept_reason=reason)


def _finding(code: str, line: int, column: int, statement: int | None, message: str, ctx: Context) -> Finding | None:
    if not _enabled(code, ctx):
        return None
    rule = BY_CODE[code]
    return build(Finding, code=code, name=rule.name, severity=rule.severity, line=line, column=column,
                                   statement=statement, message=message, fix=advice(rule.fix), accepted=False,
                                   accept_reason=None)


def _prisma_alone(index: int, line: int, column: int, text: str, ctx: Context) -> Finding | None:
    """MG103 for a statement that cannot run in a transaction, in a Prisma file with other statements."""
    f = _finding("MG103", line, column, index, "Prisma sends this multi-statement file as one query, which runs as "
                 "one implicit transaction: this statement fails with 'cannot run inside a transaction block' "
                 "(25001) and the migration is marked failed.", ctx)
    if f is None:
        return None
    from .fixes import body
    fix = ("-- Migration 1, a new migration folder holding only this statement, because Prisma runs a multi-statement "
           "file as one transaction, where it fails:\n" + body(text) + ";\n-- Remove it from this file.")
    return build_from(Finding, dict(f.__dict__, fix=fix))


def _overall(findings: list[Finding], statements: list[StatementInfo] | int) -> tuple[Severity, tuple[str, ...]]:
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
