"""The store's foundation: the health-checked connection pool, retried transactions and the hash-chained event append."""
from __future__ import annotations

import hashlib
import inspect
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout
from pydantic import BaseModel

from bot.errors import NotFound, StoreError
from bot.models import (
    Event,
    Request,
    Step,
)
import bot.store.retry as retry
from bot.redaction import IDENTIFIER_KEYS, scrub, scrub_value

log = logging.getLogger(__name__)

# Serialises appends to the hash chain (pg_advisory_xact_lock key: ASCII "guardEV").
EVENT_CHAIN_LOCK = int.from_bytes(b"guardEV", "big")
GENESIS_HASH = "0" * 64
_REQ_COLS = (
    "id, environment, requester, source, status, risk, risk_reasons, git_ref, git_commit, "
    "target_fingerprint, policy_version, channel, message_ts, thread_ts, run_after, failed_step, "
    "db_state, error, created_at, updated_at, selection, target, parent_request_id, rehearsal"
)
# Columns a transition may set alongside the status.
_SETTABLE = frozenset(
    {"risk", "risk_reasons", "git_commit", "target_fingerprint", "policy_version", "channel",
     "message_ts", "thread_ts", "run_after", "failed_step", "db_state", "error", "target", "rehearsal"}
)
_JSON_COLS = frozenset({"risk_reasons", "target", "selection", "rehearsal"})


class NewMigration(BaseModel):
    """A migration to attach to a new request."""

    name: str
    sql: str
    version: str | None = None
    ledger_name: str | None = None
    path: str | None = None
    down_sql: str | None = None
    verify_sql: str | None = None
    risk: str | None = None
    report: dict[str, Any] | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


_M = TypeVar("_M", bound=BaseModel)


class StoreBase:
    """The connection pool and one-transaction helper every part of the store uses.

    Every public method of a subclass is wrapped by ``retry.retried``: a connection lost to the
    bot's database is retried (RETRY_BUDGET_S) where that is safe, and a pooled connection is
    checked before use (``check``), so a database restart costs a reconnect, not a failed call.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, member in list(vars(cls).items()):
            if name.startswith("_") or not inspect.isfunction(member) or hasattr(member, "__wrapped__"):
                continue
            setattr(cls, name, retry.retried(member, txid_status=StoreBase._txid_status,
                                             recover=_RECOVER.get(name)))

    def __init__(self, database_url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self._pool = ConnectionPool(
            database_url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"row_factory": dict_row, "autocommit": False},
            open=False,
            name="guardian-store",
            check=ConnectionPool.check_connection,  # a connection the server dropped is replaced, not handed out
        )
        try:
            self._pool.open(wait=True, timeout=15)
        except (PoolTimeout, psycopg.OperationalError) as exc:
            self._pool.close()
            raise StoreError(
                "cannot connect to the bot's database (DATABASE_URL); check that PostgreSQL is "
                "running and the URL is right, then run `guardian db upgrade`",
                code="state-db-unreachable",
            ) from exc

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> "StoreBase":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection]:
        """One transaction on a pooled connection; notes its transaction id before COMMIT so a call whose
        connection drops during COMMIT can learn whether it committed (retry.retried)."""
        call = retry.current_call()
        timeout = max(0.5, call.deadline - time.monotonic()) if call else retry.RETRY_BUDGET_S
        with self._pool.connection(timeout=timeout) as conn:
            with conn.transaction():
                yield conn
                if call is not None:
                    call.committing_txid = conn.execute("SELECT txid_current_if_assigned() AS x").fetchone()["x"]
                    call.committing = True
            if call is not None:
                call.committed += 1
                call.committing, call.committing_txid = False, None

    def _txid_status(self, txid: int, timeout: float) -> str | None:
        """'committed', 'aborted', 'in progress' or None for transaction ``txid`` (asked on a fresh pooled connection)."""
        with self._pool.connection(timeout=timeout) as conn:
            row = conn.execute("SELECT txid_status(%s) AS s", (txid,)).fetchone()
            conn.rollback()
        return row["s"]

    def _by_id(self, table: str, row_id: int, model: type[_M], noun: str) -> _M:
        """Row `row_id` of guardian_bot.<table> (a name of ours, never input) as `model`; NotFound names
        the `noun`."""
        with self._tx() as conn:
            row = conn.execute(f"SELECT * FROM guardian_bot.{table} WHERE id = %s", (row_id,)).fetchone()
        if row is None:
            raise NotFound(f"{noun} {row_id} does not exist")
        return model(**row)


def _request_back(store: StoreBase, request_id: int, *_args: Any, **_kwargs: Any) -> Request:
    return store.get_request(request_id)  # type: ignore[attr-defined]


def _step_by_id(store: StoreBase, step_id: int, *_args: Any, **_kwargs: Any) -> Step:
    return store._by_id("steps", step_id, Step, "step")


def _latest_step(store: StoreBase, request_id: int, step: str, *_args: Any, **_kwargs: Any) -> Step:
    with store._tx() as conn:
        row = conn.execute("SELECT * FROM guardian_bot.steps WHERE request_id = %s AND step = %s ORDER BY id DESC "
                           "LIMIT 1", (request_id, step)).fetchone()
    return Step(**row)


# How a call that committed, though its connection dropped at COMMIT, reads its result back.
_RECOVER: dict[str, Callable[..., Any]] = {"transition": _request_back, "update_request": _request_back,
                                          "finish_step": _step_by_id, "start_step": _latest_step}


def _clean(text: str | None) -> str | None:
    """Free text bound for the bot's state (an error, a summary, a note) without any known secret (bot.redaction)."""
    return scrub(text) if text else text


def _scrubbed(fields: dict[str, Any]) -> dict[str, Any]:
    """Columns to write with their free text (error, summary, post-mortem, note) ``_clean``."""
    return {key: _clean(value) if key in _FREE_TEXT and isinstance(value, str) else value
            for key, value in fields.items()}


_FREE_TEXT = frozenset({"error", "summary", "postmortem", "text"})


def _insert_migrations(conn: psycopg.Connection, request_id: int, migrations: Sequence[NewMigration]) -> None:
    for position, mig in enumerate(migrations, start=1):
        conn.execute(
            """INSERT INTO guardian_bot.request_migrations
                   (request_id, position, name, version, ledger_name, path, sha256, sql, down_sql,
                    verify_sql, risk, report)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (request_id, position, mig.name, mig.version, mig.ledger_name, mig.path, mig.sha256, mig.sql,
             mig.down_sql, mig.verify_sql, mig.risk, Jsonb(mig.report) if mig.report is not None else None),
        )


def _append_event(
    conn: psycopg.Connection,
    *,
    request_id: int | None,
    actor: str,
    kind: str,
    detail: dict[str, Any],
    incident_id: int | None = None,
    permalink: str | None = None,
) -> Event:
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (EVENT_CHAIN_LOCK,))
    last = conn.execute("SELECT hash FROM guardian_bot.events ORDER BY id DESC LIMIT 1").fetchone()
    created_at = conn.execute("SELECT clock_timestamp() AS t").fetchone()["t"]
    # round-trip detail through JSON so the hash sees exactly what jsonb will return; no known secret in it
    detail = scrub_value(json.loads(json.dumps(detail, default=str)), IDENTIFIER_KEYS)
    row = {"request_id": request_id, "incident_id": incident_id, "actor": actor, "kind": kind,
           "detail": detail, "permalink": permalink, "created_at": created_at,
           "prev_hash": last["hash"] if last else GENESIS_HASH}
    row["hash"] = _event_hash(row)
    saved = conn.execute(
        """INSERT INTO guardian_bot.events
               (request_id, incident_id, actor, kind, detail, permalink, created_at, prev_hash, hash)
           VALUES (%(request_id)s, %(incident_id)s, %(actor)s, %(kind)s, %(detail)s, %(permalink)s,
                   %(created_at)s, %(prev_hash)s, %(hash)s) RETURNING *""",
        {**row, "detail": Jsonb(detail)},
    ).fetchone()
    return Event(**saved)


def _event_hash(row: dict[str, Any]) -> str:
    payload = json.dumps(
        [row["request_id"], row["incident_id"], row["actor"], row["kind"], row["detail"],
         row["permalink"], row["created_at"].isoformat(), row["prev_hash"]],
        sort_keys=True, separators=(",", ":"), default=str,
    )
    return hashlib.sha256((row["prev_hash"] + payload).encode()).hexdigest()


