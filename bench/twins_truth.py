"""The truth of a twin case, observed on real PostgreSQL (bench/twins.py measures Guardian's verdicts on it).

The cases are data: bench/twins/cases.toml (a dangerous and a safe variant of each mechanism, with setup SQL
whose ``{rows}`` grows each big table to that many rows, the migration, the declared truth and PostgreSQL's
reason). Each setup is populated once into a template database; each case gets a copy (``twins_*``, dropped
after use; cases with the same setup and schema share one when their migration runs in a transaction, which
is rolled back).

Truth is observed in one transaction (rolled back): the locks our backend holds on pre-existing relations
(pg_locks), relation filenodes before/after (rewrites, index rebuilds), seq scans per table
(pg_stat_xact_user_tables), errors, and the case's probe (SQL that must still work afterwards; ``readers``: a
relation readers must not be locked out of). A statement PostgreSQL refuses inside a transaction
(CONCURRENTLY, VACUUM) runs on its own copy in autocommit, its locks sampled from a second session and
recorded by an event trigger when each DDL command ends. A case is **dangerous** when a pre-existing big table
(>= rows/10) is rewritten, an index on one is built or rebuilt outside CONCURRENTLY, one is fully scanned while
a lock blocking writes (SHARE or stronger) is held, a statement fails, or a probe fails; else safe.

Usage::

    setups, cases = load_cases()
    dbs = Databases(setups, 150_000, admin_url, cases)
    url = dbs.for_case(cases[0]); truth, why = judge(observe(url, cases[0], 150_000)); dbs.done(cases[0], url)
    dbs.close()
"""
from __future__ import annotations

import collections
import itertools
import os
import queue
import re
import threading
import time
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bot.local_services import with_database
from bot.pg.locks import held_locks, mode_name, relations
from bot.pg.rehearsal import non_transactional_reason
from bot.risk.parse import split_statements

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "bench" / "twins" / "cases.toml"
ADMIN_URL = os.environ.get("TWINS_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MODES = ("ACCESS SHARE", "ROW SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE", "SHARE", "SHARE ROW EXCLUSIVE",
         "EXCLUSIVE", "ACCESS EXCLUSIVE")
RANK = {m: i for i, m in enumerate(MODES)}
BLOCKS_WRITES = RANK["SHARE"]
_SEQ_SCANS = "SELECT relid, seq_scan FROM pg_stat_xact_user_tables"
_BIG = "SELECT c.oid::regclass::text FROM pg_class c WHERE c.relkind IN ('r', 'm') AND c.reltuples >= %s"
_INDEXES = "SELECT indexrelid, indrelid FROM pg_index"
# Outside a transaction the sampler may miss a brief lock; an event trigger also records the locks held when each
# DDL command ends (DETACH … CONCURRENTLY's ACCESS EXCLUSIVE on the partition, DROP INDEX CONCURRENTLY's on the index)
_RECORDER = """
CREATE SCHEMA twins_obs;
CREATE TABLE twins_obs.seen (relation oid, mode text);
CREATE FUNCTION twins_obs.record() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO twins_obs.seen SELECT relation, mode FROM pg_locks
  WHERE pid = pg_backend_pid() AND locktype = 'relation' AND granted;
END $$;
CREATE EVENT TRIGGER twins_obs_record ON ddl_command_end EXECUTE FUNCTION twins_obs.record();
"""


@dataclass(frozen=True)
class Case:
    id: str
    mechanism: str
    setup: str
    migration: str
    truth: str  # "dangerous" | "safe"
    reason: str
    schema: str = ""  # SQL run after the setup, before ANALYZE (may use {rows})
    probe: str = ""  # SQL that must still succeed after the migration
    readers: str = ""  # a relation readers must not be locked out of (no ACCESS EXCLUSIVE on it)

    @property
    def transactional(self) -> bool:
        return not any(map(_outside_transaction, split_statements(self.migration)))


def _outside_transaction(piece) -> bool:
    """PostgreSQL refuses it inside a transaction block (the rehearsal's reasons: the risk engine's classifier,
    DETACH … CONCURRENTLY included; it differs between versions only before PostgreSQL 12)."""
    return non_transactional_reason(piece, 16) is not None


def load_cases(path: Path = CASES) -> tuple[dict[str, str], list[Case]]:
    """(setup name -> SQL, cases) from the TOML file; a case naming an unknown setup is an error."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    setups = {name: body["sql"] for name, body in data["setups"].items()}
    cases = [Case(**raw) for raw in data["cases"]]
    for c in cases:
        if c.setup not in setups or c.truth not in ("dangerous", "safe"):
            raise ValueError(f"{path}: case {c.id}: unknown setup {c.setup!r} or truth {c.truth!r}")
    if len({c.id for c in cases}) != len(cases):
        raise ValueError(f"{path}: duplicate case ids")
    return setups, cases


@dataclass
class Observation:
    """What PostgreSQL did, on pre-existing relations (named as the migration names them)."""

    big: set[str] = field(default_factory=set)
    locks: dict[str, set[str]] = field(default_factory=dict)  # table -> modes held
    rewritten: set[str] = field(default_factory=set)
    built: dict[str, str] = field(default_factory=dict)  # index built or rebuilt outside CONCURRENTLY -> table
    scanned: dict[str, int] = field(default_factory=dict)  # table -> seq scans (transactional runs only)
    error: str | None = None
    probe_error: str | None = None
    readers_blocked: str | None = None

    def strongest(self, table: str) -> str | None:
        return max(self.locks.get(table, ()), key=RANK.__getitem__, default=None)


def judge(obs: Observation) -> tuple[str, str]:
    """(truth, the observation that decided it)."""
    if obs.error:
        return "dangerous", f"fails: {obs.error}"
    for table in sorted(obs.rewritten & obs.big):
        return "dangerous", f"rewrites {table} (filenode changed)"
    for index, table in sorted(obs.built.items()):
        if table in obs.big:
            return "dangerous", f"builds index {index} on {table} outside CONCURRENTLY"
    for table, scans in sorted(obs.scanned.items()):
        mode = obs.strongest(table)
        if scans and table in obs.big and mode and RANK[mode] >= BLOCKS_WRITES:
            return "dangerous", f"scans {table} while holding {mode}"
    if obs.readers_blocked:
        return "dangerous", f"readers of {obs.readers_blocked} blocked (ACCESS EXCLUSIVE until commit)"
    if obs.probe_error:
        return "dangerous", f"probe fails afterwards: {obs.probe_error}"
    held = ", ".join(f"{t} {obs.strongest(t)}" for t in sorted(obs.locks)) or "no table locks"
    return "safe", f"no rewrite, build, blocking scan or failure ({held})"


def _error(exc: psycopg.Error) -> str:
    return f"{(exc.diag.message_primary or str(exc)).strip()} ({exc.diag.sqlstate})"


class _Sampler(threading.Thread):
    """Samples another backend's granted relation locks until stopped (for statements run outside a transaction)."""

    def __init__(self, url: str, pid: int):
        super().__init__(daemon=True)
        self.conn = psycopg.connect(url, autocommit=True)
        self.pid, self.seen, self.halt = pid, set(), threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            rows = self.conn.execute("SELECT relation, mode FROM pg_locks WHERE pid = %s AND granted "
                                     "AND locktype = 'relation'", (self.pid,)).fetchall()
            self.seen.update(rows)
            time.sleep(0.0005)

    def stop(self) -> set[tuple[int, str]]:
        self.halt.set()
        self.join()
        self.conn.close()
        return self.seen


def observe(url: str, case: Case, rows: int) -> Observation:
    """Run the case's migration on the database at ``url`` and record what PostgreSQL did (rolled back when it
    runs in a transaction; else the copy is changed and must not be reused)."""
    with psycopg.connect(url, autocommit=True) as conn:
        if case.transactional:
            conn.execute("BEGIN")
            try:
                return _observe(conn, url, case, rows, in_transaction=True)
            finally:
                conn.execute("ROLLBACK")
        return _observe(conn, url, case, rows, in_transaction=False)


def _observe(conn: psycopg.Connection, url: str, case: Case, rows: int, *, in_transaction: bool) -> Observation:
    if not in_transaction:
        conn.execute(_RECORDER)
    before = relations(conn)
    big = {name for (name,) in conn.execute(_BIG, (max(rows // 10, 1),)).fetchall()}
    scans_before = dict(conn.execute(_SEQ_SCANS).fetchall()) if in_transaction else {}
    locks: set[tuple[int, str]] = set()
    obs = Observation(big={name for name, _, _, _ in before.values() if name in big})
    pid = conn.info.backend_pid
    for piece in split_statements(case.migration):
        concurrent = "CONCURRENTLY" in piece.text.upper()
        start = relations(conn)
        sampler = None if in_transaction else _Sampler(url, pid)
        if sampler:
            sampler.start()
        try:
            conn.execute(piece.text)
        except psycopg.Error as exc:
            obs.error = _error(exc)
        finally:
            if sampler:
                locks |= sampler.stop()
        if obs.error:
            break
        after = relations(conn)
        indexes = dict(conn.execute(_INDEXES).fetchall())
        kept = {node for _, node, kind, _ in start.values() if kind == "i"}  # ALTER TYPE may keep an index's storage
        for oid, (name, node, kind, _) in after.items():
            if kind == "i" and not concurrent and node not in kept and indexes.get(oid) in before:
                obs.built[name] = before[indexes[oid]][0]
        obs.rewritten |= {start[o][0] for o in start if o in before and start[o][2] in ("r", "m")
                          and o in after and after[o][1] != start[o][1]}
    if not in_transaction:
        locks |= set(conn.execute("SELECT relation, mode FROM twins_obs.seen").fetchall())
    if in_transaction and not obs.error:  # after an error the transaction accepts no more queries
        locks |= held_locks(conn)
        scans = dict(conn.execute(_SEQ_SCANS).fetchall())
        obs.scanned = {before[o][0]: n - scans_before.get(o, 0) for o, n in scans.items()
                       if o in before and n > scans_before.get(o, 0)}
    for oid, mode in locks:
        if oid in before and before[oid][2] in ("r", "p", "m") and not before[oid][3].startswith("twins_obs."):
            obs.locks.setdefault(before[oid][0], set()).add(mode_name(mode))
    if case.readers and "ACCESS EXCLUSIVE" in obs.locks.get(case.readers, ()):
        obs.readers_blocked = case.readers
    if case.probe and not obs.error:
        obs.probe_error = _probe(conn, case.probe, in_transaction)
    return obs


def _probe(conn: psycopg.Connection, sql: str, in_transaction: bool) -> str | None:
    try:
        with conn.transaction(force_rollback=True) if in_transaction else contextlib.nullcontext():
            conn.execute(sql)
    except psycopg.Error as exc:
        return _error(exc)
    return None


# --- databases ---------------------------------------------------------------------------------------------

def _sql(template: str, rows: int) -> str:
    return template.replace("{rows}", str(rows))


class Databases:
    """Populated templates per setup and copies per case. A copy serves every transactional case with its
    setup and schema (their runs are rolled back) and is dropped after the last of ``cases``; ``close()``
    drops whatever is left."""

    def __init__(self, setups: dict[str, str], rows: int, admin_url: str = ADMIN_URL, cases: list[Case] = ()):
        self.setups, self.rows, self.admin_url = setups, rows, admin_url
        self.tag = uuid.uuid4().hex[:8]
        self.names: dict[str, str] = {}  # url -> database name, of every database still there
        self.serial = itertools.count()
        self.templates: dict[str, str] = {}
        self.shared: dict[tuple[str, str], str] = {}
        self.uses = collections.Counter((c.setup, c.schema) for c in cases if c.transactional)
        self.admin = psycopg.connect(admin_url, autocommit=True)
        # DROP DATABASE waits for a checkpoint (~1 s): a second session drops while the next case runs
        self.drops: queue.Queue[str | None] = queue.Queue()
        self.drop_errors: list[str] = []
        self.dropper = threading.Thread(target=self._dropping, daemon=True)
        self.dropper.start()

    def _dropping(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            while (name := self.drops.get()) is not None:
                try:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                except psycopg.Error as exc:
                    self.drop_errors.append(f"{name}: {_error(exc)}")

    def _create(self, name: str, template: str | None = None) -> str:
        self.admin.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        url = with_database(self.admin_url, name)
        self.names[url] = name
        return url

    def _drop(self, url: str) -> None:
        self.drops.put(self.names.pop(url))

    def _analyze(self, conn: psycopg.Connection, what: str) -> None:
        """ANALYZE, then make sure every big table holds about ``rows`` rows: the suite (150,000) and the bench
        (1,000,000) must judge in the same size band (bot/risk/sizing.py)."""
        conn.execute("ANALYZE")
        short = conn.execute(_BIG + " AND c.reltuples < %s AND c.relnamespace <> 'pg_catalog'::regnamespace",
                             (self.rows // 10, self.rows * 0.95)).fetchall()
        if short:
            raise ValueError(f"{what}: big tables must hold {{rows}} rows each; {', '.join(t for t, in short)} "
                             "hold fewer")

    def template(self, setup: str) -> str:
        if setup not in self.templates:
            name = f"twins_{self.tag}_tpl_{setup}"
            with psycopg.connect(self._create(name), autocommit=True) as conn:
                conn.execute(_sql(self.setups[setup], self.rows))
                self._analyze(conn, setup)
            # no autovacuum worker connects to it and delays the copies
            self.admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            self.templates[setup] = name
        return self.templates[setup]

    def for_case(self, case: Case) -> str:
        """URL of a database holding the case's setup and schema."""
        key = (case.setup, case.schema)
        if case.transactional and key in self.shared:
            return self.shared[key]
        slug = re.sub(r"[^a-z0-9]+", "_", case.id.lower())[:30]
        url = self._create(f"twins_{self.tag}_{slug}_{next(self.serial)}", self.template(case.setup))
        if case.schema:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(_sql(case.schema, self.rows))
                self._analyze(conn, case.id)
        if case.transactional:
            self.shared[key] = url
        return url

    def done(self, case: Case, url: str) -> None:
        """The case is finished with ``url``: drop it unless a later case shares it."""
        key = (case.setup, case.schema)
        if case.transactional:
            self.uses[key] -= 1
            if self.uses[key] > 0:
                return
            self.shared.pop(key, None)
        self._drop(url)

    def close(self) -> None:
        for url in list(self.names):
            self._drop(url)
        self.drops.put(None)
        self.dropper.join()
        self.admin.close()
        if self.drop_errors:
            raise RuntimeError(f"could not drop {'; '.join(self.drop_errors)}; drop them by hand")
