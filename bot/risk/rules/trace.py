"""Trace rules: what running the migration on a rehearsal database showed, which reading its SQL cannot.

The engine never fires these (TYPES is empty): `guardian plan`, which rehearses the files in a transaction
that is always rolled back (bot/pg/rehearsal.py), attaches them to a file's report with `attach_rehearsal()`:
a rewrite, an index rebuilt or built, a full scan under a lock that blocks writes, or a failure that the
analysis did not predict raises the verdict; a rewrite or scan the analysis predicted but the rehearsal shows
did not happen lowers that finding to low, with the observation quoted.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from ..models import LOCK_RANK, Context, Finding, Report, Rule, Severity, StatementInfo
from ..sizing import sized
from ..state import State, Stmt
from . import Hit, rule
from .attached import acceptances, is_unmatched_note, with_findings

R = rule("trace")
RULES = (
    R(code="MG941", name="rewrite-observed-under-lock", severity="high",
      summary="The rehearsal saw a table rewritten while the statement held ACCESS EXCLUSIVE on it.",
      why="Reading the SQL cannot always tell whether a statement rewrites a table: a type change whose old type "
          "it does not know, a default calling a function of unknown volatility, a domain or a trigger doing more "
          "than it says. The rehearsal watched the table's storage (pg_class.relfilenode) change: every row was "
          "copied and the indexes rebuilt while reads and writes of the table waited, for as long as that takes "
          "on the real table.",
      fix="Avoid the rewrite: add a new column, backfill it in batches, then swap it in:\n"
          "ALTER TABLE items ADD COLUMN qty_text text;\n"
          "UPDATE items SET qty_text = qty::text WHERE id BETWEEN 1 AND 10000;  -- repeat per batch\n"
          "-- then, in a short transaction with lock_timeout set:\n"
          "ALTER TABLE items RENAME COLUMN qty TO qty_old;\n"
          "ALTER TABLE items RENAME COLUMN qty_text TO qty;\n"
          "If the rewrite is acceptable (a small table, a maintenance window), say so in the file:\n"
          "-- guardian: accept MG941 because <why>",
      bad="-- rehearsed: items (qty integer) is rewritten under ACCESS EXCLUSIVE\n"
          "ALTER TABLE items ALTER COLUMN qty TYPE text;",
      good="-- rehearsed: varchar(50) -> text changes no storage\n"
           "ALTER TABLE items ALTER COLUMN name TYPE text;", hazards=(62,), size=True),
    R(code="MG942", name="index-rebuild-observed-under-lock", severity="high",
      summary="The rehearsal saw an index of an existing table rebuilt while the statement held a lock that blocks writes.",
      why="A statement can rebuild an index without rewriting its table: a type change on a column that an "
          "expression index uses, timestamp -> timestamptz (every index on the column), a collation change. The "
          "rehearsal watched the index's storage (pg_class.relfilenode) change: the whole table was read and the "
          "index written again while the statement's lock (ACCESS EXCLUSIVE for ALTER TABLE: reads wait too) held "
          "everyone else off, for as long as that takes on the real table.",
      fix="Take the index out of the statement's way: drop it concurrently, make the change, build it again "
          "concurrently, each CONCURRENTLY statement in its own migration:\n"
          "DROP INDEX CONCURRENTLY members_lower_email_idx;\n"
          "ALTER TABLE members ALTER COLUMN email TYPE varchar(200);\n"
          "CREATE INDEX CONCURRENTLY members_lower_email_idx ON members (lower(email));\n"
          "(queries that need the index are slower in between). If the rebuild is acceptable, say so in the file:\n"
          "-- guardian: accept MG942 because <why>",
      bad="-- rehearsed: members_lower_email_idx ON members (lower(email)) is rebuilt under ACCESS EXCLUSIVE\n"
          "ALTER TABLE members ALTER COLUMN email TYPE varchar(200);",
      good="-- rehearsed: a plain index on email keeps its storage\n"
           "ALTER TABLE members ALTER COLUMN email TYPE varchar(200);", hazards=(62, 29), size=True),
    R(code="MG943", name="scan-observed-under-lock", severity="high",
      summary="The rehearsal saw a full scan of an existing table while the transaction held a lock on it that blocks writes.",
      why="The analysis did not expect this statement to read the whole table, but PostgreSQL's own counters for "
          "the rehearsal's transaction (pg_stat_xact_user_tables.seq_scan) show it did: a CHECK re-validated by a "
          "type change, a scan of a DEFAULT partition, a function or a query reading a table that an earlier "
          "statement of the transaction locked. While the table is read, the lock (SHARE or stronger) keeps every "
          "write waiting, and reads too under ACCESS EXCLUSIVE; on the real table that lasts as long as reading all "
          "of it.",
      fix="Keep the scan out of the lock: run the reading statement in its own migration, after the one that takes "
          "the lock has committed, or make the statement skip its scan (a validated CHECK that proves it, a NOT VALID "
          "constraint validated later). If the scan is acceptable, say so in the file:\n"
          "-- guardian: accept MG943 because <why>",
      bad="-- rehearsed: the CHECK on balance is re-validated, a full scan of accounts under ACCESS EXCLUSIVE\n"
          "ALTER TABLE accounts ALTER COLUMN balance TYPE numeric(14,2);",
      good="-- rehearsed: no scan of accounts\n"
           "ALTER TABLE accounts ALTER COLUMN note TYPE text;", hazards=(61, 27), size=True),
    R(code="MG944", name="index-build-observed-under-lock", severity="high",
      summary="The rehearsal saw an index built on an existing table, without CONCURRENTLY, by a statement that does not say so.",
      why="A function, a DO block or a constraint can create an index; inside the migration's transaction it is "
          "built the ordinary way, reading the whole table while writes to it (and reads too, under ACCESS "
          "EXCLUSIVE) wait, for as long as that takes on the real table. The rehearsal saw the new index's storage "
          "appear on a table that existed before.",
      fix="Build the index yourself, concurrently, in its own migration before this one, so the statement finds it:\n"
          "CREATE INDEX CONCURRENTLY orders_customer_id_idx ON orders (customer_id);\n"
          "If the build is acceptable, say so in the file:\n"
          "-- guardian: accept MG944 because <why>",
      bad="-- rehearsed: add_audit_index() runs CREATE INDEX ON orders (customer_id)\n"
          "SELECT add_audit_index();",
      good="-- rehearsed: the index was built concurrently before; the function finds it\n"
           "SELECT add_audit_index();", hazards=(1,), size=True),
    R(code="MG945", name="statement-failed-in-rehearsal", severity="critical",
      summary="The statement failed when rehearsed on the target's schema and data.",
      why="PostgreSQL rejected the statement in the rehearsal: a view or rule that depends on the column, rows "
          "that violate the new constraint, a NOT NULL column added without a default to a table with rows, an "
          "object that does not exist there. Run as it is, the migration fails and its transaction is rolled back "
          "(a file that cannot run in a transaction stays half-applied).",
      fix="Fix what PostgreSQL names in the message, then rehearse again (guardian plan). For example, a type "
          "change that a view blocks: drop the view, change the column and re-create the view in the same "
          "migration:\n"
          "DROP VIEW active_members;\n"
          "ALTER TABLE members ALTER COLUMN email TYPE varchar(200);\n"
          "CREATE VIEW active_members AS SELECT id, email FROM members WHERE active;",
      bad="-- rehearsed: ERROR: cannot alter type of a column used by a view or rule\n"
          "ALTER TABLE members ALTER COLUMN email TYPE varchar(200);",
      good="DROP VIEW active_members;\n"
           "ALTER TABLE members ALTER COLUMN email TYPE varchar(200);\n"
           "CREATE VIEW active_members AS SELECT id, email FROM members WHERE active;"),
)
_RULE = {r.code: r for r in RULES}

# The rules of this family come from a rehearsal's trace, never from the SQL: the catalogue test only checks
# that their SQL examples never fire; tests/pg/test_pg_rehearsal.py attaches them as `guardian plan` does.
TRACE = True

# check() reads nothing: the engine never calls it (no statement type is listed).
STATELESS = True
TYPES: frozenset[str] | None = frozenset()

_AEL = "ACCESS EXCLUSIVE"
_SHARE = LOCK_RANK["SHARE"]
# The findings whose whole hazard is a rewrite, an index build or a full scan of existing tables under the
# statement's lock: the rehearsal can see each of them happen, so one it shows did not happen is lowered.
# Nothing about data loss, compatibility, failures, lock queues or values is here: the rehearsal cannot
# see those not happen.
LOWERABLE = frozenset({
    "MG101", "MG104", "MG105", "MG419",  # index builds
    "MG201", "MG202", "MG203", "MG204", "MG205", "MG206", "MG207", "MG208",  # validation scans
    "MG301", "MG302", "MG304", "MG305", "MG306", "MG307", "MG308",  # column rewrites and scans
    "MG401", "MG402", "MG403", "MG404", "MG407", "MG415", "MG901",  # table rewrites and partition scans
})
# MG603 (an earlier ACCESS EXCLUSIVE held during this statement) is lowerable when it says the statement
# rewrites or scans; not when it changes rows or waits for a lock.
_HELD_WHILE = ("This statement rewrites ", "This statement scans ")
# Findings that already say the statement rebuilds indexes (REINDEX is known by its kind)
_SAYS_REBUILD = frozenset({"MG213", "MG308", "MG315"})
_SKIPPED_SQLSTATE = "55P03"  # lock_timeout: another session held the rehearsal database; says nothing of the SQL


def check(s: Stmt, st: State) -> Iterator[Hit]:
    return iter(())


def attach_rehearsal(report: Report, sql: str | bytes, observed: Iterable, context: Context, *,
                     faithful: bool = True) -> Report:
    """`report` corrected by what the rehearsal of its file saw, statement by statement.

    Raised (each a finding of this family, sized by the table like the engine's rules, unless the analysis
    already said the statement does it): MG941 a table rewritten under ACCESS EXCLUSIVE; MG942 an index of
    an existing table rebuilt, MG944 one built, MG943 a table read in full, each under a lock of SHARE or
    stronger; MG945 the statement failed (critical, PostgreSQL's message quoted) - not for a lock_timeout on
    the rehearsal database, nor after a statement the rehearsal had to skip (the database then differs).

    Lowered to low, the observation quoted: a finding in LOWERABLE (its hazard is only a rewrite, an index
    build or a scan) on a statement that rehearsed without rewriting, building or reading any existing
    table - only when `faithful` (the rehearsal ran on the analysed PostgreSQL version with scan counters
    on, so what it did not see did not happen) and no skipped statement came before it.

    `observed`: the rehearsal's statements of this file (bot.pg.rehearsal.StatementRehearsal), matched to
    the report's statements by statement index. `-- guardian: accept <code> because <reason>` on the
    statement accepts a raised finding (and the engine's "not a rule that fired on this statement" note
    about that comment is dropped).
    """
    by_index = {s.index: s for s in report.statements}
    created = _created(report)
    findings = list(report.findings)
    added: list[Finding] = []
    for seen in observed:
        statement = by_index.get(seen.index)
        own = [f for f in findings if statement is not None and f.statement == statement.index]
        for code, tables, head, tail in _raised(seen, statement, own, created):
            r = _RULE[code]
            if code in context.disabled or r.name in context.disabled:
                continue
            severity, note = (r.severity, "") if code == "MG945" else _sized(r, tables, context)
            added.append(Finding(
                code=code, name=r.name, severity=severity,
                line=statement.line if statement is not None else seen.line,
                column=statement.column if statement is not None else 1,
                statement=statement.index if statement is not None else None,
                message=head + note + tail, fix=r.fix))
        if faithful and statement is not None and _untouched(seen):
            quoted = _quiet(seen, statement, context)
            findings = [_lowered(f, quoted) if f in own and _lowerable(f) else f for f in findings]
    if not added and findings == list(report.findings):
        return report
    added, used = _accepted(added, sql, findings)
    findings = [f for f in findings if f.code != "MG004" or (f.line, f.statement) not in used]
    for f in added:
        findings.insert(_position(findings, f.statement), f)
    return with_findings(report, findings)


def _raised(seen, statement: StatementInfo | None, own: list[Finding], created: set[str]) -> Iterator[tuple]:
    """(code, tables, message up to the size note, rest of the message) for what the rehearsal saw this
    statement do that the analysis did not say."""
    ms = f"in {seen.duration_ms or 0:.0f} ms there"
    if seen.error:
        if seen.sqlstate != _SKIPPED_SQLSTATE and not seen.after_skip and not any(
                f.severity == Severity.CRITICAL and not f.accepted for f in own):
            yield "MG945", (), f"The statement failed in the rehearsal: {seen.error}.", " The migration fails the same way."
        return
    rewrite = statement is not None and statement.rewrite
    said = any(f.code in LOWERABLE for f in own)  # a finding of the analysis says it rewrites, builds or scans
    said_scan = rewrite or (statement is not None and statement.scan) or said
    held = {lk.relation for lk in seen.observed_locks if lk.mode == _AEL}
    rewritten = [t for t in seen.rewrites if t in held]
    if rewritten and not rewrite:
        yield "MG941", rewritten, (f"The rehearsal rewrote {', '.join(rewritten)} under ACCESS EXCLUSIVE ({ms}); on "
                                   "the real table every read and write waits while all of it is copied"), "."
    kind = (statement.kind if statement is not None else "") or ""
    rebuilt = [c for c in seen.rebuilt_indexes if c.table not in seen.rewrites and _blocks_writes(c.lock)
               and not rewrite and not kind.startswith("REINDEX") and not _named(c.index, own)
               and not any(f.code in _SAYS_REBUILD for f in own)]
    if rebuilt:
        yield "MG942", [c.table for c in rebuilt], (
            f"The rehearsal rebuilt {_changes(rebuilt)} ({ms}): the whole table is read and the index written "
            "again while " + _waits(rebuilt[0].lock, rebuilt[0].table) + ", for as long as that takes on the real "
            "table"), "."
    built = [c for c in seen.built_indexes if c.table not in seen.rewrites and _blocks_writes(c.lock)
             and not rewrite and not said  # a scan the analysis expected (ATTACH's) does not explain a build
             and c.table.rsplit(".", 1)[-1] not in created]
    if built:
        yield "MG944", [c.table for c in built], (
            f"The rehearsal built {_changes(built)} without CONCURRENTLY ({ms}): " + _waits(built[0].lock, built[0].table)
            + " while it builds"), "."
    explained = {c.table for c in (*seen.rebuilt_indexes, *seen.built_indexes)} | set(seen.rewrites)
    scanned = [s for s in seen.scans if s.seq_scans and s.relation not in explained and _blocks_writes(s.lock)]
    if scanned and not said_scan:
        first = scanned[0]
        yield "MG943", [s.relation for s in scanned], (
            "The rehearsal saw " + ", ".join(f"{s.relation} read in full ({s.seq_scans} sequential scan"
                                             f"{'s' if s.seq_scans > 1 else ''}, {s.rows_read:,} rows read there)"
                                             for s in scanned)
            + f" while the transaction held {first.lock} on {first.relation}: " + _waits(first.lock, first.relation)
            + " until the scan ends, as long as reading all of it takes on the real table"), "."


def _created(report: Report) -> set[str]:
    """Tables the file creates (a CREATE statement's first lock is its new relation), unqualified: the rehearsal
    sees them as existing from the next statement on, but no other session can use them yet."""
    return {s.locks[0].relation.rsplit(".", 1)[-1] for s in report.statements
            if s.kind in ("CREATE TABLE", "CREATE TABLE AS", "CREATE MATERIALIZED VIEW") and s.locks}


def _lowerable(f: Finding) -> bool:
    return f.severity != Severity.LOW and (
        f.code in LOWERABLE or (f.code == "MG603" and f.message.startswith(_HELD_WHILE)))


def _untouched(seen) -> bool:
    """Rehearsed without error on the same database the apply will see, and changed or read no existing table."""
    return (seen.rehearsed and not seen.error and not seen.after_skip and not seen.rewrites
            and not seen.rebuilt_indexes and not seen.built_indexes and not seen.scans)


def _quiet(seen, statement: StatementInfo, context: Context) -> str:
    """The observation a lowered finding quotes: which tables were not rewritten or read, with their sizes."""
    state = State(ctx=context)
    names: list[str] = []
    for lk in statement.locks:
        stats = state.stats(lk.relation)
        label = f"{lk.relation} (~{stats.rows:,} rows)" if stats is not None and stats.rows is not None else lk.relation
        if label not in names:
            names.append(label)
    what = ", ".join(names) or "any existing table"
    return f"rehearsal: no rewrite, no index build and no scan of {what} in {seen.duration_ms or 0:.0f} ms"


def _lowered(f: Finding, quoted: str) -> Finding:
    return Finding(code=f.code, name=f.name, severity=Severity.LOW, line=f.line, column=f.column,
                   statement=f.statement, message=f"{quoted}, so this is lowered from {f.severity.value} to low. "
                   f"{f.message}", fix=f.fix, accepted=f.accepted, accept_reason=f.accept_reason)


def _accepted(added: list[Finding], sql: str | bytes, findings: list[Finding]) -> tuple[list[Finding], set]:
    """The added findings with their `guardian: accept` comments applied, and the engine's MG004 notes
    ((line, statement)) about those comments, now wrong."""
    out, used = [], set()
    for f in added:
        r = _RULE[f.code]
        reasons = {d.line: d.reason for d in acceptances(sql, r)}
        notes = {n.statement: n.line for n in findings if is_unmatched_note(n, set(reasons), r)}
        where = notes.get(f.statement) if f.statement is not None else None
        if where is not None:
            used.add((where, f.statement))
            f = Finding(code=f.code, name=f.name, severity=f.severity, line=f.line, column=f.column,
                        statement=f.statement, message=f.message, fix=f.fix, accepted=True,
                        accept_reason=reasons.get(where))
        out.append(f)
    return out, used


def _blocks_writes(mode: str | None) -> bool:
    return mode is not None and LOCK_RANK.get(mode, -1) >= _SHARE


def _waits(mode: str | None, table: str) -> str:
    return (f"every read and write of {table} waits (ACCESS EXCLUSIVE)" if mode == _AEL
            else f"every write to {table} waits ({mode})")


def _changes(changes) -> str:
    return ", ".join(f"{c.index} on {c.table}" for c in changes)


def _named(index: str, own: list[Finding]) -> bool:
    """Whether a finding of the analysis on this statement already names the index (and so says it is rebuilt)."""
    named = re.compile(rf"(?<![\w$]){re.escape(index.rsplit('.', 1)[-1])}(?![\w$])")
    return any(named.search(f.message) for f in own)


def _sized(r: Rule, tables: list[str], context: Context) -> tuple[Severity, str]:
    """The rule's severity sized by the largest of these tables, as the engine sizes its findings."""
    state = State(ctx=context)
    stats = [s for s in (state.stats(t) for t in tables) if s is not None]
    biggest = max(stats, key=lambda s: (s.rows or 0, s.bytes or 0), default=None)
    return sized(r.severity, biggest)


def _position(findings: list[Finding], index: int | None) -> int:
    """Where a finding about statement `index` goes: after the file-level findings that lead the list and
    the findings of statements up to its own, before those of later statements and the trailing ones."""
    at, leading = 0, True
    for k, f in enumerate(findings):
        if f.statement is None:
            if leading:
                at = k + 1
        else:
            leading = False
            if index is not None and f.statement <= index:
                at = k + 1
    return at
