"""The job outbox: "run this step" intents written in the same transaction as the state change that causes them.

Usage::

    store.transition(rid, S.APPROVED, S.QUEUED, actor="guardian", enqueue="backup")   # CAS + intent, one commit
    store.enqueue_job(JobIntent(step="analyze"), request_id=rid)                     # an intent on its own
    sent = store.deliver_outbox(send)      # the worker's pump: hand unsent rows to RQ, mark each one sent

PostgreSQL is the truth and Redis only carries work: a row is written with the change, so a Redis
outage delays the step and never loses it. Names of jobs are plain strings here; what each one runs
and on which queue is decided by the worker (workers/enqueue.py), never by the store.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from bot.store.base import StoreBase

log = logging.getLogger(__name__)

# NOTIFY channel: a committed intent wakes the worker's pump at once (it also polls).
OUTBOX_CHANNEL = "guardian_job_outbox"


class JobIntent(BaseModel):
    """What to enqueue: a job name (a step), its attempt, optional arguments and a time to hold it until."""

    model_config = ConfigDict(frozen=True)

    step: str
    attempt: int = 1
    args: tuple[Any, ...] = ()
    run_at: datetime | None = None


class OutboxJob(BaseModel):
    """One row of guardian_bot.job_outbox."""

    model_config = ConfigDict(frozen=True)

    id: int
    request_id: int | None
    step: str
    attempt: int
    args: list[Any] = Field(default_factory=list)
    run_at: datetime | None = None
    created_at: datetime
    sent_at: datetime | None = None
    sent_job_id: str | None = None


def as_intent(enqueue: JobIntent | str) -> JobIntent:
    return enqueue if isinstance(enqueue, JobIntent) else JobIntent(step=enqueue)


def insert_intent(conn: psycopg.Connection, request_id: int | None, enqueue: JobIntent | str) -> None:
    """Write an intent inside the caller's transaction (a second unsent one for the same step and attempt is a no-op)."""
    intent = as_intent(enqueue)
    conn.execute(
        """INSERT INTO guardian_bot.job_outbox (request_id, step, attempt, args, run_at)
           VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (request_id, step, attempt) WHERE sent_at IS NULL DO NOTHING""",
        (request_id, intent.step, intent.attempt, Jsonb(list(intent.args)), intent.run_at),
    )
    conn.execute("SELECT pg_notify(%s, '')", (OUTBOX_CHANNEL,))


class OutboxStore(StoreBase):
    """Writing intents, handing them to the queue, and answering "is a job for this step still owed?"."""

    _listen_conn: psycopg.Connection | None = None

    def enqueue_job(self, enqueue: JobIntent | str, *, request_id: int | None = None) -> None:
        """Record an intent on its own (when no state change goes with it)."""
        with self._tx() as conn:
            insert_intent(conn, request_id, enqueue)

    def deliver_outbox(self, send: Callable[[OutboxJob], str | None], *, limit: int = 100) -> int:
        """Hand due, unsent rows to ``send`` oldest first; a row is marked sent with the job id ``send`` returns.

        ``send`` returns None when it could not send (the queue is down): the pass stops there and
        the rest stay unsent for the next one. Rows are locked while being sent (SKIP LOCKED), so two
        pumps never send one row at the same time; a row sent but not marked (a crash in between) is
        sent again, and ``send`` must make that harmless (RQ job ids are deterministic).
        """
        sent = 0
        with self._tx() as conn:
            rows = conn.execute(
                """SELECT * FROM guardian_bot.job_outbox
                   WHERE sent_at IS NULL AND (run_at IS NULL OR run_at <= now())
                   ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED""",
                (limit,),
            ).fetchall()
            for row in rows:
                job_id = send(OutboxJob(**row))
                if job_id is None:
                    break
                conn.execute("UPDATE guardian_bot.job_outbox SET sent_at = clock_timestamp(), sent_job_id = %s "
                             "WHERE id = %s", (job_id, row["id"]))
                sent += 1
        return sent

    def latest_job(self, request_id: int, step: str) -> OutboxJob | None:
        """The newest intent for a request's step (sent or not), or None when none was ever written."""
        with self._tx() as conn:
            row = conn.execute(
                """SELECT * FROM guardian_bot.job_outbox WHERE request_id = %s AND step = %s
                   ORDER BY id DESC LIMIT 1""",
                (request_id, step),
            ).fetchone()
        return OutboxJob(**row) if row else None

    def prune_outbox(self, *, older_than_days: int = 7) -> int:
        """Delete sent intents older than that whose request is finished (or that belong to no request)."""
        with self._tx() as conn:
            cur = conn.execute(
                """DELETE FROM guardian_bot.job_outbox o
                   WHERE o.sent_at < now() - make_interval(days => %s)
                     AND (o.request_id IS NULL OR EXISTS (
                          SELECT 1 FROM guardian_bot.requests r WHERE r.id = o.request_id
                          AND r.status IN ('succeeded', 'rejected', 'cancelled', 'expired', 'failed')))""",
                (older_than_days,),
            )
            return cur.rowcount

    def list_outbox(self, *, unsent_only: bool = False, request_id: int | None = None) -> list[OutboxJob]:
        clauses, params = ["TRUE"], []
        if unsent_only:
            clauses.append("sent_at IS NULL")
        if request_id is not None:
            clauses.append("request_id = %s")
            params.append(request_id)
        with self._tx() as conn:
            rows = conn.execute(
                f"SELECT * FROM guardian_bot.job_outbox WHERE {' AND '.join(clauses)} ORDER BY id", params
            ).fetchall()
        return [OutboxJob(**r) for r in rows]

    def wait_for_intents(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a committed intent (LISTEN/NOTIFY); True when one arrived.

        Only the worker's pump thread calls this. The listening connection is the store's own, outside
        the pool, opened on first use and again after an error (which returns False at once, so the
        caller falls back to polling).
        """
        try:
            if self._listen_conn is None or self._listen_conn.closed:
                self._listen_conn = psycopg.connect(self._pool.conninfo, autocommit=True)
                self._listen_conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
            return bool(list(self._listen_conn.notifies(timeout=timeout, stop_after=1)))
        except psycopg.Error as exc:
            log.warning("outbox listener lost its connection (%s); polling until it is back", type(exc).__name__)
            self._close_listener()
            return False

    def _close_listener(self) -> None:
        if self._listen_conn is not None:
            try:
                self._listen_conn.close()
            except psycopg.Error:
                pass
        self._listen_conn = None

    def close(self) -> None:
        self._close_listener()
        super().close()
