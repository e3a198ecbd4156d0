"""Freezes, backups, incidents and their notes, webhook cursors and the audit log."""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from bot.errors import NotFound, StoreError, TransitionConflict
from bot.models import (
    Backup,
    Event,
    Freeze,
    Incident,
    IncidentNote,
    IncidentStatus,
)
from bot.store.base import GENESIS_HASH, StoreBase, _append_event, _event_hash, _clean, _scrubbed

log = logging.getLogger(__name__)


class OperationsStore(StoreBase):
    """Everything around requests: freezes, backups, incidents, webhook cursors and the audit log."""

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
        return self._by_id("backups", backup_id, Backup, "backup")

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
        summary = _clean(summary)
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
        return self._by_id("incidents", incident_id, Incident, "incident")

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
        allowed, fields = {"channel", "thread_ts", "summary", "postmortem"}, _scrubbed(fields)
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
        text = _clean(text)
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
        return self._by_id("events", event_id, Event, "event")

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


