"""All SQL for the bot's own state; nothing else writes it.

Usage::

    store = Store(settings.database_url.get_secret_value())
    req = store.create_request("staging", "U123", [NewMigration(name="001_x", sql="…")])
    req = store.transition(req.id, RequestStatus.AWAITING_APPROVAL, RequestStatus.APPROVED, actor="U456")

Status changes are compare-and-set (``UPDATE … WHERE id = %s AND status = %s RETURNING``), so a
duplicate click or duplicate job can never apply a transition twice; each one appends an event to
the hash-chained audit log in the same transaction.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout
from pydantic import BaseModel

from bot.errors import NotFound, StoreError, TransitionConflict
from bot.models import (
    TRANSITIONS,
    Backup,
    Decision,
    Event,
    Freeze,
    Incident,
    IncidentNote,
    IncidentStatus,
    MigrationRef,
    Request,
    RequestStatus,
    Step,
)

log = logging.getLogger(__name__)

# Serialises appends to the hash chain (pg_advisory_xact_lock key: ASCII "guardEV").
EVENT_CHAIN_LOCK = int.from_bytes(b"guardEV", "big")
GENESIS_HASH = "0" * 64
_REQ_COLS = (
    "id, environment, requester, source, status, risk, risk_reasons, git_ref, git_commit, "
    "target_fingerprint, policy_version, channel, message_ts, thread_ts, run_after, failed_step, "
    "db_state, error, created_at, updated_at, selection, target, parent_request_id"
)
# Columns a transition may set alongside the status.
_SETTABLE = frozenset(
    {"risk", "risk_reasons", "git_commit", "target_fingerprint", "policy_version", "channel",
     "message_ts", "thread_ts", "run_after", "failed_step", "db_state", "error", "target"}
)
_JSON_COLS = frozenset({"risk_reasons", "target", "selection"})


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


class Store:
    """The bot's PostgreSQL state behind a small connection pool."""

    def __init__(self, database_url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self._pool = ConnectionPool(
            database_url,
            min_size=min_size,
            max_size=max_size,
            kwargs={"row_factory": dict_row, "autocommit": False},
            open=False,
            name="guardian-store",
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

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection]:
        with self._pool.connection() as conn, conn.transaction():
            yield conn

    # ----------------------------------------------------------------- requests
    def create_request(
        self,
        environment: str,
        requester: str,
        migrations: Sequence[NewMigration],
        *,
        source: str = "repo",
        git_ref: str | None = None,
        git_commit: str | None = None,
        channel: str | None = None,
        target_fingerprint: str | None = None,
        policy_version: str | None = None,
        status: RequestStatus = RequestStatus.ANALYZING,
        selection: dict[str, Any] | None = None,
        parent_request_id: int | None = None,
    ) -> Request:
        """A new request. Only a request still being analysed may start without its migrations."""
        if not migrations and RequestStatus(status) is not RequestStatus.ANALYZING:
            raise StoreError("a request needs at least one migration", code="empty-request")
        with self._tx() as conn:
            row = conn.execute(
                f"""INSERT INTO guardian_bot.requests
                        (environment, requester, source, status, git_ref, git_commit, channel,
                         target_fingerprint, policy_version, selection, parent_request_id)
                    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_REQ_COLS}""",
                (environment, requester, source, RequestStatus(status).value, git_ref, git_commit,
                 channel, target_fingerprint, policy_version, Jsonb(selection or {}), parent_request_id),
            ).fetchone()
            _insert_migrations(conn, row["id"], migrations)
            _append_event(conn, request_id=row["id"], actor=requester, kind="request.created",
                          detail={"environment": environment, "source": source, "parent": parent_request_id,
                                  "migrations": {m.name: m.sha256 for m in migrations},
                                  "git_commit": git_commit})
            return self._load_request(conn, row)

    def replace_migrations(self, request_id: int, migrations: Sequence[NewMigration], *, actor: str = "guardian") -> Request:
        """Set what an ``analyzing`` request will run (first analysis, or re-analysis after a change)."""
        with self._tx() as conn:
            row = conn.execute(
                f"SELECT {_REQ_COLS} FROM guardian_bot.requests WHERE id = %s FOR UPDATE", (request_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"request {request_id} does not exist")
            if row["status"] != RequestStatus.ANALYZING.value:
                raise TransitionConflict(
                    f"request {request_id} is {row['status'].replace('_', ' ')}; its migrations can only change "
                    "while it is being analysed"
                )
            conn.execute("DELETE FROM guardian_bot.request_migrations WHERE request_id = %s", (request_id,))
            _insert_migrations(conn, request_id, migrations)
            _append_event(conn, request_id=request_id, actor=actor, kind="request.migrations",
                          detail={"migrations": {m.name: m.sha256 for m in migrations}})
            return self._load_request(conn, row)

    def get_request(self, request_id: int) -> Request:
        with self._tx() as conn:
            row = conn.execute(
                f"SELECT {_REQ_COLS} FROM guardian_bot.requests WHERE id = %s", (request_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"request {request_id} does not exist; `/migrate history` lists recent ones")
            return self._load_request(conn, row)

    def list_requests(
        self,
        *,
        environment: str | None = None,
        statuses: Sequence[RequestStatus] | None = None,
        limit: int = 20,
    ) -> list[Request]:
        clauses, params = [], []
        if environment is not None:
            clauses.append("environment = %s")
            params.append(environment)
        if statuses:
            clauses.append("status = ANY(%s)")
            params.append([RequestStatus(s).value for s in statuses])
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._tx() as conn:
            rows = conn.execute(
                f"SELECT {_REQ_COLS} FROM guardian_bot.requests {where} ORDER BY id DESC LIMIT %s",
                (*params, limit),
            ).fetchall()
            return [self._load_request(conn, row) for row in rows]

    def update_migration_analysis(
        self, request_id: int, position: int, *, risk: str, report: dict[str, Any]
    ) -> None:
        with self._tx() as conn:
            conn.execute(
                """UPDATE guardian_bot.request_migrations SET risk = %s, report = %s
                   WHERE request_id = %s AND position = %s""",
                (risk, Jsonb(report), request_id, position),
            )

    def transition(
        self,
        request_id: int,
        expected: RequestStatus,
        new: RequestStatus,
        *,
        actor: str,
        detail: dict[str, Any] | None = None,
        **fields: Any,
    ) -> Request:
        """Move a request from ``expected`` to ``new`` or raise TransitionConflict.

        Exactly one of any number of concurrent callers with the same ``expected`` wins.
        """
        expected, new = RequestStatus(expected), RequestStatus(new)
        if new not in TRANSITIONS[expected]:
            raise StoreError(
                f"request {request_id}: {expected.value} → {new.value} is not a valid transition",
                code="invalid-transition",
            )
        unknown = set(fields) - _SETTABLE
        if unknown:
            raise StoreError(f"cannot set {', '.join(sorted(unknown))} on a request")
        sets = ["status = %s", "updated_at = now()"]
        params: list[Any] = [new.value]
        for key, value in fields.items():
            sets.append(f"{key} = %s")
            params.append(Jsonb(value) if key in _JSON_COLS else getattr(value, "value", value))
        with self._tx() as conn:
            row = conn.execute(
                f"""UPDATE guardian_bot.requests SET {', '.join(sets)}
                    WHERE id = %s AND status = %s RETURNING {_REQ_COLS}""",
                (*params, request_id, expected.value),
            ).fetchone()
            if row is None:
                current = conn.execute(
                    "SELECT status FROM guardian_bot.requests WHERE id = %s", (request_id,)
                ).fetchone()
                if current is None:
                    raise NotFound(f"request {request_id} does not exist")
                raise TransitionConflict(
                    f"request {request_id} is {current['status'].replace('_', ' ')}, not "
                    f"{expected.value.replace('_', ' ')}; nothing was changed",
                    request_id=request_id, current=current["status"], expected=expected.value,
                )
            _append_event(conn, request_id=request_id, actor=actor, kind=f"request.{new.value}",
                          detail={"from": expected.value, **(detail or {})})
            return self._load_request(conn, row)

    def update_request(self, request_id: int, **fields: Any) -> Request:
        """Set descriptive fields (message ts, fingerprint…) without changing the status."""
        unknown = set(fields) - _SETTABLE
        if unknown or not fields:
            raise StoreError(f"cannot set {', '.join(sorted(unknown)) or 'nothing'} on a request")
        sets = [f"{k} = %s" for k in fields] + ["updated_at = now()"]
        params = [Jsonb(v) if k in _JSON_COLS else getattr(v, "value", v) for k, v in fields.items()]
        with self._tx() as conn:
            row = conn.execute(
                f"UPDATE guardian_bot.requests SET {', '.join(sets)} WHERE id = %s RETURNING {_REQ_COLS}",
                (*params, request_id),
            ).fetchone()
            if row is None:
                raise NotFound(f"request {request_id} does not exist")
            return self._load_request(conn, row)

    def _load_request(self, conn: psycopg.Connection, row: dict[str, Any]) -> Request:
        migs = conn.execute(
            """SELECT position, name, version, ledger_name, path, sha256, sql, down_sql, verify_sql, risk, report
               FROM guardian_bot.request_migrations WHERE request_id = %s ORDER BY position""",
            (row["id"],),
        ).fetchall()
        return Request(**row, migrations=[MigrationRef(**m) for m in migs])

    # ---------------------------------------------------------------- decisions
    def record_decision(
        self,
        request: Request,
        user_id: str,
        decision: str,
        *,
        reason: str | None = None,
    ) -> tuple[Decision, bool]:
        """Record a live decision bound to what ``request`` holds now.

        Returns (decision, created). A second click by the same person returns their existing
        decision with created=False: 50 concurrent clicks record one row.
        """
        if decision not in ("approve", "reject"):
            raise StoreError(f"unknown decision {decision!r}")
        with self._tx() as conn:
            row = conn.execute(
                """INSERT INTO guardian_bot.decisions
                       (request_id, user_id, decision, reason, sha256s, git_commit, environment,
                        target_fingerprint, policy_version)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (request_id, user_id) WHERE voided_at IS NULL DO NOTHING
                   RETURNING *""",
                (request.id, user_id, decision, reason, Jsonb(request.sha256s), request.git_commit,
                 request.environment, request.target_fingerprint, request.policy_version),
            ).fetchone()
            if row is not None:
                _append_event(conn, request_id=request.id, actor=user_id, kind=f"decision.{decision}",
                              detail={"reason": reason, "sha256s": request.sha256s,
                                      "git_commit": request.git_commit})
                return Decision(**row), True
            existing = conn.execute(
                """SELECT * FROM guardian_bot.decisions
                   WHERE request_id = %s AND user_id = %s AND voided_at IS NULL""",
                (request.id, user_id),
            ).fetchone()
        if existing is None:  # voided between our insert and select: let the caller retry
            raise TransitionConflict("your decision raced a change to the request; click again")
        return Decision(**existing), False

    def list_decisions(self, request_id: int, *, live_only: bool = True) -> list[Decision]:
        live = "AND voided_at IS NULL" if live_only else ""
        with self._tx() as conn:
            rows = conn.execute(
                f"SELECT * FROM guardian_bot.decisions WHERE request_id = %s {live} ORDER BY id",
                (request_id,),
            ).fetchall()
        return [Decision(**r) for r in rows]

    def void_decisions(self, request_id: int, *, reason: str, actor: str = "guardian") -> int:
        """Void every live decision on a request (the SQL, commit, target or policy changed)."""
        with self._tx() as conn:
            cur = conn.execute(
                """UPDATE guardian_bot.decisions SET voided_at = now(), void_reason = %s
                   WHERE request_id = %s AND voided_at IS NULL""",
                (reason, request_id),
            )
            if cur.rowcount:
                _append_event(conn, request_id=request_id, actor=actor, kind="decision.voided",
                              detail={"reason": reason, "count": cur.rowcount})
            return cur.rowcount

    # -------------------------------------------------------------------- steps
    def start_step(self, request_id: int, step: str, *, job_id: str | None = None) -> Step:
        with self._tx() as conn:
            attempt = conn.execute(
                "SELECT count(*) + 1 AS n FROM guardian_bot.steps WHERE request_id = %s AND step = %s",
                (request_id, step),
            ).fetchone()["n"]
            row = conn.execute(
                """INSERT INTO guardian_bot.steps (request_id, step, attempt, job_id)
                   VALUES (%s, %s, %s, %s) RETURNING *""",
                (request_id, step, attempt, job_id),
            ).fetchone()
            _append_event(conn, request_id=request_id, actor="guardian", kind=f"step.{step}.started",
                          detail={"attempt": attempt, "job_id": job_id})
            return Step(**row)

    def finish_step(
        self,
        step_id: int,
        status: str,
        *,
        outcome: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> Step:
        if status not in ("succeeded", "failed", "skipped"):
            raise StoreError(f"unknown step status {status!r}")
        with self._tx() as conn:
            row = conn.execute(
                """UPDATE guardian_bot.steps
                   SET status = %s, outcome = %s, error = %s, finished_at = clock_timestamp(),
                       duration_ms = (extract(epoch FROM clock_timestamp() - started_at) * 1000)::int
                   WHERE id = %s AND status = 'running' RETURNING *""",
                (status, Jsonb(outcome or {}), error, step_id),
            ).fetchone()
            if row is None:
                raise TransitionConflict(f"step {step_id} is not running; nothing was changed")
            _append_event(conn, request_id=row["request_id"], actor="guardian",
                          kind=f"step.{row['step']}.{status}",
                          detail={"attempt": row["attempt"], "duration_ms": row["duration_ms"],
                                  "error": error, **(outcome or {})})
            return Step(**row)

    def list_steps(self, request_id: int) -> list[Step]:
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT * FROM guardian_bot.steps WHERE request_id = %s ORDER BY id", (request_id,)
            ).fetchall()
        return [Step(**r) for r in rows]

    # ------------------------------------------------------------------ freezes
    def create_freeze(self, environment: str, *, reason: str, created_by: str, ends_at: datetime) -> Freeze:
        with self._tx() as conn:
            row = conn.execute(
                """INSERT INTO guardian_bot.freezes (environment, reason, created_by, ends_at)
                   VALUES (%s, %s, %s, %s) RETURNING *""",
                (environment, reason, created_by, ends_at),
            ).fetchone()
            _append_event(conn, request_id=None, actor=created_by, kind="freeze.created",
                          detail={"environment": environment, "reason": reason,
                                  "ends_at": ends_at.isoformat()})
            return Freeze(**row)

    def get_active_freeze(self, environment: str, at: datetime | None = None) -> Freeze | None:
        with self._tx() as conn:
            row = conn.execute(
                """SELECT * FROM guardian_bot.freezes
                   WHERE environment = %s AND lifted_at IS NULL
                     AND starts_at <= coalesce(%s, now()) AND ends_at > coalesce(%s, now())
                   ORDER BY ends_at DESC LIMIT 1""",
                (environment, at, at),
            ).fetchone()
        return Freeze(**row) if row else None

    def lift_freezes(self, environment: str, *, lifted_by: str) -> int:
        with self._tx() as conn:
            cur = conn.execute(
                """UPDATE guardian_bot.freezes SET lifted_at = now(), lifted_by = %s
                   WHERE environment = %s AND lifted_at IS NULL AND ends_at > now()""",
                (lifted_by, environment),
            )
            if cur.rowcount:
                _append_event(conn, request_id=None, actor=lifted_by, kind="freeze.lifted",
                              detail={"environment": environment, "count": cur.rowcount})
            return cur.rowcount

    # ------------------------------------------------------------------ backups
    def create_backup(
        self,
        environment: str,
        path: str,
        *,
        request_id: int | None = None,
        scope: str = "full",
        sha256: str,
        size_bytes: int,
        duration_ms: int,
        verified: bool,
        expires_at: datetime,
    ) -> Backup:
        with self._tx() as conn:
            row = conn.execute(
                """INSERT INTO guardian_bot.backups
                       (request_id, environment, path, scope, sha256, size_bytes, duration_ms, verified, expires_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *""",
                (request_id, environment, path, scope, sha256, size_bytes, duration_ms, verified, expires_at),
            ).fetchone()
            _append_event(conn, request_id=request_id, actor="guardian", kind="backup.created",
                          detail={"backup_id": row["id"], "environment": environment, "scope": scope,
                                  "sha256": sha256, "size_bytes": size_bytes})
            return Backup(**row)

    def get_backup(self, backup_id: int) -> Backup:
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM guardian_bot.backups WHERE id = %s", (backup_id,)).fetchone()
        if row is None:
            raise NotFound(f"backup {backup_id} does not exist")
        return Backup(**row)

    def list_backups(self, *, request_id: int | None = None, expired_at: datetime | None = None) -> list[Backup]:
        """Backups of one request, or (with ``expired_at``) every undeleted backup past its expiry."""
        clauses, params = ["deleted_at IS NULL"], []
        if request_id is not None:
            clauses.append("request_id = %s")
            params.append(request_id)
        if expired_at is not None:
            clauses.append("expires_at <= %s")
            params.append(expired_at)
        with self._tx() as conn:
            rows = conn.execute(
                f"SELECT * FROM guardian_bot.backups WHERE {' AND '.join(clauses)} ORDER BY id", params
            ).fetchall()
        return [Backup(**r) for r in rows]

    def mark_backup_deleted(self, backup_id: int) -> None:
        with self._tx() as conn:
            conn.execute("UPDATE guardian_bot.backups SET deleted_at = now() WHERE id = %s AND deleted_at IS NULL",
                         (backup_id,))
            _append_event(conn, request_id=None, actor="guardian", kind="backup.deleted",
                          detail={"backup_id": backup_id})

    def succeeded_environments(self, sha256s: dict[str, str]) -> list[str]:
        """Environments where a request with exactly these migrations (by sha256) succeeded."""
        with self._tx() as conn:
            rows = conn.execute(
                """SELECT DISTINCT r.environment FROM guardian_bot.requests r
                   WHERE r.status = 'succeeded'
                     AND (SELECT jsonb_object_agg(m.name, m.sha256) FROM guardian_bot.request_migrations m
                          WHERE m.request_id = r.id) = %s""",
                (Jsonb(sha256s),),
            ).fetchall()
        return sorted(r["environment"] for r in rows)

    # ---------------------------------------------------------------- incidents
    def create_incident(
        self, request_id: int, *, opened_by: str, summary: str, channel: str | None = None,
    ) -> tuple[Incident, bool]:
        """Open an incident for a request, or return the one already open (created=False)."""
        with self._tx() as conn:
            row = conn.execute(
                """INSERT INTO guardian_bot.incidents (request_id, opened_by, summary, channel)
                   VALUES (%s, %s, %s, %s)
                   ON CONFLICT (request_id) WHERE status <> 'resolved' DO NOTHING RETURNING *""",
                (request_id, opened_by, summary, channel),
            ).fetchone()
            if row is not None:
                _append_event(conn, request_id=request_id, incident_id=row["id"], actor=opened_by,
                              kind="incident.opened", detail={"summary": summary[:500]})
                return Incident(**row), True
            existing = conn.execute(
                "SELECT * FROM guardian_bot.incidents WHERE request_id = %s AND status <> 'resolved'", (request_id,)
            ).fetchone()
        return Incident(**existing), False

    def get_incident(self, incident_id: int) -> Incident:
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM guardian_bot.incidents WHERE id = %s", (incident_id,)).fetchone()
        if row is None:
            raise NotFound(f"incident {incident_id} does not exist")
        return Incident(**row)

    def find_incident(
        self, *, request_id: int | None = None, channel: str | None = None, thread_ts: str | None = None,
    ) -> Incident | None:
        """The newest incident of a request, or the one whose Slack thread is (channel, thread_ts)."""
        with self._tx() as conn:
            if request_id is not None:
                row = conn.execute(
                    "SELECT * FROM guardian_bot.incidents WHERE request_id = %s ORDER BY id DESC LIMIT 1",
                    (request_id,),
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT * FROM guardian_bot.incidents WHERE channel = %s AND thread_ts = %s ORDER BY id DESC LIMIT 1",
                    (channel, thread_ts),
                ).fetchone()
        return Incident(**row) if row else None

    def update_incident(self, incident_id: int, **fields: Any) -> Incident:
        allowed = {"channel", "thread_ts", "summary", "postmortem"}
        if not fields or set(fields) - allowed:
            raise StoreError(f"cannot set {', '.join(sorted(set(fields) - allowed)) or 'nothing'} on an incident")
        sets = ", ".join(f"{k} = %s" for k in fields)
        with self._tx() as conn:
            row = conn.execute(
                f"UPDATE guardian_bot.incidents SET {sets} WHERE id = %s RETURNING *", (*fields.values(), incident_id)
            ).fetchone()
            if row is None:
                raise NotFound(f"incident {incident_id} does not exist")
            if "postmortem" in fields:
                _append_event(conn, request_id=row["request_id"], incident_id=incident_id, actor="guardian",
                              kind="incident.postmortem", detail={"chars": len(fields["postmortem"] or "")})
            return Incident(**row)

    def transition_incident(
        self,
        incident_id: int,
        expected: IncidentStatus | Sequence[IncidentStatus],
        new: IncidentStatus,
        *,
        actor: str,
        detail: dict[str, Any] | None = None,
    ) -> Incident:
        """Compare-and-set an incident's status; exactly one concurrent caller wins."""
        expected_set = [IncidentStatus(expected).value] if isinstance(expected, (str, IncidentStatus)) else [
            IncidentStatus(e).value for e in expected]
        new = IncidentStatus(new)
        with self._tx() as conn:
            row = conn.execute(
                """UPDATE guardian_bot.incidents
                   SET status = %s, resolved_at = CASE WHEN %s = 'resolved' THEN now() ELSE resolved_at END
                   WHERE id = %s AND status = ANY(%s) RETURNING *""",
                (new.value, new.value, incident_id, expected_set),
            ).fetchone()
            if row is None:
                current = conn.execute("SELECT status FROM guardian_bot.incidents WHERE id = %s",
                                       (incident_id,)).fetchone()
                if current is None:
                    raise NotFound(f"incident {incident_id} does not exist")
                raise TransitionConflict(
                    f"incident {incident_id} is {current['status']}, not {' or '.join(expected_set)}; nothing was changed",
                    current=current["status"],
                )
            _append_event(conn, request_id=row["request_id"], incident_id=incident_id, actor=actor,
                          kind=f"incident.{new.value}", detail=detail or {})
            return Incident(**row)

    def add_incident_note(
        self, incident_id: int, *, author: str, text: str, source: str, slack_ts: str | None = None,
        created_at: datetime | None = None,
    ) -> bool:
        """Record a timeline note; a Slack message redelivered (same ts and source) is recorded once."""
        with self._tx() as conn:
            row = conn.execute(
                """INSERT INTO guardian_bot.incident_notes (incident_id, author, text, source, slack_ts, created_at)
                   VALUES (%s, %s, %s, %s, %s, coalesce(%s, now()))
                   ON CONFLICT (incident_id, slack_ts, source) WHERE slack_ts IS NOT NULL DO NOTHING
                   RETURNING id, (SELECT request_id FROM guardian_bot.incidents WHERE id = %s) AS request_id""",
                (incident_id, author, text, source, slack_ts, created_at, incident_id),
            ).fetchone()
            if row is not None:
                _append_event(conn, request_id=row["request_id"], incident_id=incident_id, actor=author,
                              kind=f"incident.note.{source}", detail={"slack_ts": slack_ts})
            return row is not None

    def list_incident_notes(self, incident_id: int) -> list[IncidentNote]:
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT * FROM guardian_bot.incident_notes WHERE incident_id = %s ORDER BY created_at, id",
                (incident_id,),
            ).fetchall()
        return [IncidentNote(**r) for r in rows]

    # ----------------------------------------------------------------- webhooks
    def claim_webhook_events(self, webhook: str, kinds: Callable[[str], bool], *, limit: int = 500) -> list[Event]:
        """Events after the webhook's cursor that it wants, and advance the cursor past them, atomically.

        Concurrent pumps serialise on the cursor row, so each event is handed out once.
        """
        with self._tx() as conn:
            conn.execute("INSERT INTO guardian_bot.webhook_cursors (webhook) VALUES (%s) ON CONFLICT DO NOTHING",
                         (webhook,))
            last = conn.execute("SELECT last_event_id FROM guardian_bot.webhook_cursors WHERE webhook = %s FOR UPDATE",
                                (webhook,)).fetchone()["last_event_id"]
            rows = conn.execute("SELECT * FROM guardian_bot.events WHERE id > %s ORDER BY id LIMIT %s",
                                (last, limit)).fetchall()
            if rows:
                conn.execute("UPDATE guardian_bot.webhook_cursors SET last_event_id = %s, updated_at = now() "
                             "WHERE webhook = %s", (rows[-1]["id"], webhook))
        return [Event(**r) for r in rows if kinds(r["kind"])]

    def get_event(self, event_id: int) -> Event:
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM guardian_bot.events WHERE id = %s", (event_id,)).fetchone()
        if row is None:
            raise NotFound(f"event {event_id} does not exist")
        return Event(**row)

    # ------------------------------------------------------------------- events
    def record_event(
        self,
        kind: str,
        *,
        actor: str,
        request_id: int | None = None,
        incident_id: int | None = None,
        detail: dict[str, Any] | None = None,
        permalink: str | None = None,
    ) -> Event:
        with self._tx() as conn:
            return _append_event(conn, request_id=request_id, incident_id=incident_id, actor=actor,
                                 kind=kind, detail=detail or {}, permalink=permalink)

    def list_events(self, *, request_id: int | None = None, incident_id: int | None = None) -> list[Event]:
        clauses, params = [], []
        if request_id is not None:
            clauses.append("request_id = %s")
            params.append(request_id)
        if incident_id is not None:
            clauses.append("incident_id = %s")
            params.append(incident_id)
        where = f"WHERE {' OR '.join(clauses)}" if clauses else ""
        with self._tx() as conn:
            rows = conn.execute(f"SELECT * FROM guardian_bot.events {where} ORDER BY id", params).fetchall()
        return [Event(**r) for r in rows]

    def verify_event_chain(self) -> int | None:
        """Id of the first event whose hash does not match the chain, or None when intact."""
        prev = GENESIS_HASH
        with self._pool.connection() as conn:
            with conn.cursor(name="guardian_chain") as cur:
                cur.execute("SELECT * FROM guardian_bot.events ORDER BY id")
                for row in cur:
                    if row["prev_hash"] != prev or row["hash"] != _event_hash(row):
                        return row["id"]
                    prev = row["hash"]
        return None


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
    # round-trip detail through JSON so the hash sees exactly what jsonb will return
    detail = json.loads(json.dumps(detail, default=str))
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

