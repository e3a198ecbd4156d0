"""Requests, their migrations, decisions and pipeline steps: compare-and-set status changes."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from bot.errors import NotFound, PreviewOutdated, StoreError, TransitionConflict
from bot.models import (
    TRANSITIONS,
    Decision,
    MigrationRef,
    Request,
    RequestStatus,
    Step,
)
from bot.store.base import (
    _JSON_COLS,
    _REQ_COLS,
    _SETTABLE,
    NewMigration,
    _append_event,
    _insert_migrations,
    _clean,
    _scrubbed,
)
from bot.store.outbox import JobIntent, OutboxStore, insert_intent

log = logging.getLogger(__name__)


class RequestsStore(OutboxStore):
    """Requests, the migrations they run, decisions on them and the steps that ran them."""

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

    def transition(
        self,
        request_id: int,
        expected: RequestStatus,
        new: RequestStatus,
        *,
        actor: str,
        detail: dict[str, Any] | None = None,
        enqueue: JobIntent | str | None = None,
        **fields: Any,
    ) -> Request:
        """Move a request from ``expected`` to ``new`` or raise TransitionConflict.

        Exactly one of any number of concurrent callers with the same ``expected`` wins. ``enqueue``
        (a step name or JobIntent) is written to the job outbox in the same transaction.
        """
        expected, new, fields = RequestStatus(expected), RequestStatus(new), _scrubbed(fields)
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
            if enqueue is not None:
                insert_intent(conn, request_id, enqueue)
            return self._load_request(conn, row)

    def update_request(self, request_id: int, *, enqueue: JobIntent | str | None = None, **fields: Any) -> Request:
        """Set descriptive fields (message ts, fingerprint…) without changing the status; ``enqueue`` as for transition."""
        fields, unknown = _scrubbed(fields), set(fields) - _SETTABLE
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
            if enqueue is not None:
                insert_intent(conn, request_id, enqueue)
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
        shown: str | None = None,
    ) -> tuple[Decision, bool]:
        """Record a live decision bound to the preview ``shown`` (default: the one ``request`` holds).

        Under a lock on the request row, the request must still await approval with exactly that
        preview (same files' sha256, commit, target, policy); otherwise PreviewOutdated and nothing is
        written. Returns (decision, created). A second click by the same person on the same preview
        returns their existing decision with created=False: 50 concurrent clicks record one row. A live
        decision of theirs on an older preview is voided and replaced.
        """
        if decision not in ("approve", "reject"):
            raise StoreError(f"unknown decision {decision!r}")
        shown, reason = shown or request.preview_fingerprint, _clean(reason)
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM guardian_bot.requests WHERE id = %s FOR UPDATE",
                               (request.id,)).fetchone()
            if row is None:
                raise NotFound(f"request {request.id} does not exist")
            current = self._load_request(conn, row)
            if current.status is not RequestStatus.AWAITING_APPROVAL:
                raise TransitionConflict(
                    f"request {request.id} is {current.status.value.replace('_', ' ')}, not awaiting approval",
                    status=current.status.value)
            if current.preview_fingerprint != shown:
                _append_event(conn, request_id=request.id, actor=user_id, kind="decision.refused",
                              detail={"decision": decision, "why": "preview-outdated", "shown": shown,
                                      "current": current.preview_fingerprint})
                raise PreviewOutdated(
                    f"request #{request.id} was re-analysed after the preview you clicked; nothing was recorded",
                    shown=shown, current=current.preview_fingerprint)
            existing = conn.execute(
                """SELECT * FROM guardian_bot.decisions
                   WHERE request_id = %s AND user_id = %s AND voided_at IS NULL""",
                (request.id, user_id),
            ).fetchone()
            if existing is not None and existing["preview_fingerprint"] == shown:
                return Decision(**existing), False
            if existing is not None:
                conn.execute(
                    """UPDATE guardian_bot.decisions SET voided_at = now(), void_reason = %s WHERE id = %s""",
                    ("superseded by a decision on a newer preview", existing["id"]))
            row = conn.execute(
                """INSERT INTO guardian_bot.decisions
                       (request_id, user_id, decision, reason, sha256s, git_commit, environment,
                        target_fingerprint, policy_version, preview_fingerprint)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                   RETURNING *""",
                (current.id, user_id, decision, reason, Jsonb(current.sha256s), current.git_commit,
                 current.environment, current.target_fingerprint, current.policy_version, shown),
            ).fetchone()
            _append_event(conn, request_id=request.id, actor=user_id, kind=f"decision.{decision}",
                          detail={"reason": reason, "sha256s": current.sha256s,
                                  "git_commit": current.git_commit, "preview": shown})
            return Decision(**row), True

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
        reason = _clean(reason) or reason
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
        enqueue: JobIntent | str | None = None,
    ) -> Step:
        """Finish a running step; ``enqueue`` (the next step) is written to the job outbox in the same transaction."""
        if status not in ("succeeded", "failed", "skipped"):
            raise StoreError(f"unknown step status {status!r}")
        error = _clean(error)
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
            if enqueue is not None:
                insert_intent(conn, row["request_id"], enqueue)
            return Step(**row)

    def list_steps(self, request_id: int) -> list[Step]:
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT * FROM guardian_bot.steps WHERE request_id = %s ORDER BY id", (request_id,)
            ).fetchall()
        return [Step(**r) for r in rows]

