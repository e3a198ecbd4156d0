"""Who blocks our apply backend, who waits behind it, and a thread that reports the waiters in the thread.

Usage::

    with Watchdog(url, our_pid, on_waiters=lambda waiters: post(...), label="guardian-req7-watchdog") as dog:
        ...                            # apply; dog.last_blockers() after a lock timeout names the blocker
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from bot.errors import TargetError
from bot.pg.connect import connect_target
log = logging.getLogger(__name__)

WAIT_THRESHOLD_S = 1.0  # report sessions waiting behind us longer than this
REPORT_EVERY_S = 15.0  # at most one waiters message per this many seconds
POLL_S = 0.2

_BLOCKERS = """
SELECT a.pid, a.application_name, a.state, left(a.query, 300),
       extract(epoch FROM clock_timestamp() - a.xact_start)::float8
FROM pg_stat_activity a WHERE a.pid = ANY(pg_blocking_pids(%s)) ORDER BY a.xact_start"""
_WAITERS = """
SELECT a.pid, a.application_name, left(a.query, 300),
       extract(epoch FROM clock_timestamp() - coalesce(
           (SELECT min(l.waitstart) FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted), a.query_start))::float8
FROM pg_stat_activity a
WHERE a.wait_event_type = 'Lock' AND %s = ANY(pg_blocking_pids(a.pid)) ORDER BY 4 DESC"""


def target_lock_key(environment: str) -> int:
    """The session advisory lock key every Guardian worker takes for one environment's target (signed bigint)."""
    digest = hashlib.sha256(f"guardian-target:{environment}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def fleet_session_name(request_id: int, target: str) -> str:
    """`guardian-req<id>-t<hash>`: one fleet target's apply connection (PostgreSQL keeps 63 bytes of a name)."""
    return application_name(request_id, "t" + hashlib.sha256(target.encode()).hexdigest()[:10])


def application_name(request_id: int, role: str = "") -> str:
    """`guardian-req<id>` on the apply connection (the reconciler looks for it), suffixed for helpers."""
    return f"guardian-req{request_id}" + (f"-{role}" if role else "")


def blockers(conn: psycopg.Connection, pid: int) -> list[dict[str, Any]]:
    return [{"pid": r[0], "application_name": r[1], "state": r[2], "query": r[3], "xact_age_s": r[4]}
            for r in conn.execute(_BLOCKERS, (pid,)).fetchall()]


def waiters(conn: psycopg.Connection, pid: int) -> list[dict[str, Any]]:
    return [{"pid": r[0], "application_name": r[1], "query": r[2], "wait_s": r[3] or 0.0}
            for r in conn.execute(_WAITERS, (pid,)).fetchall()]


def lock_holder(conn: psycopg.Connection, key: int) -> tuple[int, str] | None:
    """(pid, application_name) of the session holding advisory lock ``key`` in this database, if any."""
    row = conn.execute(
        """SELECT l.pid, coalesce(a.application_name, '') FROM pg_locks l
           LEFT JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND l.classid::bigint = ((%s::bigint >> 32) & 4294967295) AND l.objid::bigint = (%s::bigint & 4294967295)""",
        (key, key),
    ).fetchone()
    return (row[0], row[1]) if row else None


def ours(conn: psycopg.Connection, request_id: int) -> list[int]:
    """Pids of sessions whose application_name marks them as this request's apply connection, in ``conn``'s database
    (another database on the server may hold another installation's, or test session's, request of the same id)."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid() "
        "AND datname = current_database()",
        (application_name(request_id),),
    ).fetchall()
    return [r[0] for r in rows]


class Watchdog:
    """A thread polling the target: remembers who blocks ``pid``, reports sessions waiting behind it."""

    def __init__(self, url: str, pid: int, *, on_waiters: Callable[[list[dict[str, Any]]], None],
                 label: str) -> None:
        self._url = url
        self._pid = pid
        self._on_waiters = on_waiters
        self._label = label
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._blockers: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._loop, name=label, daemon=True)
        self.reports = 0

    def __enter__(self) -> "Watchdog":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def last_blockers(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._blockers)

    def clear_blockers(self) -> None:
        with self._lock:
            self._blockers = []

    def _loop(self) -> None:
        try:
            conn = connect_target(self._url, self._label, application_name=self._label)
        except TargetError as exc:
            log.warning("%s: cannot connect; no lock watchdog for this apply (%s)", self._label, exc.code)
            return
        last_report = 0.0
        with conn:
            while not self._stop.wait(POLL_S):
                try:
                    found = blockers(conn, self._pid)
                    waiting = waiters(conn, self._pid)
                except psycopg.Error as exc:
                    log.warning("%s: polling failed (%s); watchdog stops", self._label, type(exc).__name__)
                    return
                if found:
                    with self._lock:
                        self._blockers = found
                late = [w for w in waiting if w["wait_s"] >= WAIT_THRESHOLD_S]
                if late and time.monotonic() - last_report >= REPORT_EVERY_S:
                    last_report = time.monotonic()
                    self.reports += 1
                    self._on_waiters(late)
