"""Fleet rollouts in the bot's database: the rollout, its targets, and the claims that keep the caps across workers.

Usage::

    store.create_rollout(rid, targets)                      # once, when the approved request starts applying
    claim = store.claim_fleet_targets(rid, parallel=8, per_server=4, halt_after=1, job="fleet-target")
    store.start_fleet_target(rid, "tenant_007", attempt, job_id)   # queued -> running, unless halted or paused
    store.finish_fleet_target(rid, "tenant_007", "failed", "relation … does not exist", halt_after=1)
"""
from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict

from bot.store.base import StoreBase
from bot.store.outbox import OUTBOX_CHANNEL

# Serialises claims (pg_advisory_xact_lock key: ASCII "guardFL"): counting queued/running targets and marking new
# ones queued happen in one transaction under it, so no two workers ever claim past a cap together.
FLEET_CLAIM_LOCK = int.from_bytes(b"guardFL", "big")
ACTIVE = ("queued", "running")
DONE = ("succeeded", "failed", "skipped")
RolloutState = Literal["running", "paused", "halted", "succeeded", "aborted"]


class Rollout(BaseModel):
    model_config = ConfigDict(frozen=True)

    request_id: int
    state: RolloutState
    wave: int
    next_wave_at: datetime | None = None
    reason: str | None = None
    created_at: datetime
    updated_at: datetime


class RolloutTarget(BaseModel):
    model_config = ConfigDict(frozen=True)

    request_id: int
    target: str
    position: int
    kind: str
    url_env: str | None = None
    server: str
    wave: int | None = None
    files: list[str]
    state: str
    note: str | None = None
    attempt: int
    outbox_id: int | None = None
    job_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    sent_job_id: str | None = None   # the claim's RQ job, once the outbox pump sent it
    intent_unsent: bool = False      # the claim's intent still waits in the outbox


class PastDurations(BaseModel):
    """How long one target's job took in an environment's recent rollouts (targets that applied something)."""

    model_config = ConfigDict(frozen=True)

    rollouts: int
    targets: int
    median_s: float


class Claim(BaseModel):
    """What one claim found: the targets it queued, or why it queued none."""

    model_config = ConfigDict(frozen=True)

    state: RolloutState
    claimed: tuple[str, ...] = ()
    wave_done: int | None = None     # every target up to this wave is finished and a later wave waits
    finished: bool = False           # no target waits, is queued or runs any more
    halted: str | None = None        # set when this claim halted the rollout (the reason)
    not_before: datetime | None = None  # the pause between waves: the next wave opens then


class FleetStore(StoreBase):
    """Rollout rows: created once, claimed under one lock, moved by compare-and-set."""

    def create_rollout(self, request_id: int, targets: list[dict[str, Any]]) -> bool:
        """The rollout and its targets (dicts of RolloutTarget's columns); False when it already existed."""
        with self._tx() as conn:
            made = conn.execute("INSERT INTO guardian_bot.fleet_rollouts (request_id) VALUES (%s) "
                                "ON CONFLICT DO NOTHING RETURNING request_id", (request_id,)).fetchone()
            if made is None:
                return False
            with conn.cursor() as cur:
                cur.executemany(
                    """INSERT INTO guardian_bot.fleet_targets (request_id, target, position, kind, url_env, server,
                           wave, files, state, note) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                    [(request_id, t["target"], i, t["kind"], t.get("url_env"), t["server"], t.get("wave"),
                      list(t.get("files") or ()), t["state"], t.get("note")) for i, t in enumerate(targets)])
        return True

    def get_rollout(self, request_id: int) -> Rollout | None:
        with self._tx() as conn:
            row = conn.execute("SELECT * FROM guardian_bot.fleet_rollouts WHERE request_id = %s",
                               (request_id,)).fetchone()
        return Rollout(**row) if row else None

    def list_rollouts(self, *, states: tuple[str, ...] = ("running", "paused", "halted")) -> list[Rollout]:
        with self._tx() as conn:
            rows = conn.execute("SELECT * FROM guardian_bot.fleet_rollouts WHERE state = ANY(%s) ORDER BY request_id",
                                (list(states),)).fetchall()
        return [Rollout(**r) for r in rows]

    def list_fleet_targets(self, request_id: int) -> list[RolloutTarget]:
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT t.*, o.sent_job_id, (o.id IS NOT NULL AND o.sent_at IS NULL) AS intent_unsent "
                "FROM guardian_bot.fleet_targets t LEFT JOIN guardian_bot.job_outbox o ON o.id = t.outbox_id "
                "WHERE t.request_id = %s ORDER BY t.position", (request_id,)).fetchall()
        return [RolloutTarget(**r) for r in rows]

    def fleet_counts(self, request_id: int) -> dict[str, int]:
        with self._tx() as conn:
            rows = conn.execute("SELECT state, count(*) AS n FROM guardian_bot.fleet_targets WHERE request_id = %s "
                                "GROUP BY state", (request_id,)).fetchall()
        return {r["state"]: r["n"] for r in rows}

    def past_target_durations(self, environment: str, *, rollouts: int = 5) -> PastDurations | None:
        """The median start-to-finish time of the targets that applied something (succeeded without a note) in the
        environment's last ``rollouts`` rollouts that have any (rollbacks not counted); None when there are none."""
        with self._tx() as conn:
            row = conn.execute(
                """WITH done AS (
                       SELECT t.request_id, extract(epoch FROM t.finished_at - t.started_at)::float8 AS s
                       FROM guardian_bot.fleet_targets t JOIN guardian_bot.requests q ON q.id = t.request_id
                       WHERE q.environment = %s AND q.source <> 'rollback' AND t.state = 'succeeded'
                         AND t.note IS NULL AND t.started_at IS NOT NULL AND t.finished_at IS NOT NULL),
                   recent AS (SELECT DISTINCT request_id FROM done ORDER BY request_id DESC LIMIT %s)
                   SELECT count(DISTINCT request_id) AS rollouts, count(*) AS targets,
                          percentile_cont(0.5) WITHIN GROUP (ORDER BY s) AS median_s
                   FROM done WHERE request_id IN (SELECT request_id FROM recent)""",
                (environment, rollouts)).fetchone()
        return PastDurations(**row) if row and row["targets"] else None

    def claim_fleet_targets(self, request_id: int, *, parallel: int, per_server: int, halt_after: int,
                            job: str) -> Claim:
        """Queue the next targets the caps allow, each with its job intent, in one transaction under
        FLEET_CLAIM_LOCK: at most ``parallel`` of this rollout and ``per_server`` on one server (all rollouts)
        queued or running, only from waves already open. Halts the rollout at ``halt_after`` failures."""
        with self._tx() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (FLEET_CLAIM_LOCK,))
            rollout = conn.execute("SELECT *, now() AS now FROM guardian_bot.fleet_rollouts WHERE request_id = %s "
                                   "FOR UPDATE", (request_id,)).fetchone()
            if rollout is None or rollout["state"] != "running":
                return Claim(state=rollout["state"] if rollout else "aborted")
            counts = Counter({r["state"]: r["n"] for r in conn.execute(
                "SELECT state, count(*) AS n FROM guardian_bot.fleet_targets WHERE request_id = %s GROUP BY state",
                (request_id,)).fetchall()})
            if counts["failed"] >= halt_after:
                reason = _halt_reason(counts["failed"])
                _set_state(conn, request_id, "halted", reason)
                return Claim(state="halted", halted=reason)
            if rollout["next_wave_at"] is not None and rollout["next_wave_at"] > rollout["now"]:
                return Claim(state="running", not_before=rollout["next_wave_at"])
            wave = rollout["wave"]
            open_left = conn.execute(
                "SELECT count(*) FILTER (WHERE wave <= %s) AS open, count(*) AS all FROM guardian_bot.fleet_targets "
                "WHERE request_id = %s AND state = 'waiting'", (wave, request_id)).fetchone()
            active = counts["queued"] + counts["running"]
            if open_left["all"] == 0 and active == 0:
                return Claim(state="running", finished=True)
            if open_left["open"] == 0:
                return Claim(state="running", wave_done=wave if active == 0 else None)
            room = parallel - active
            if room <= 0:
                return Claim(state="running")
            busy = Counter({r["server"]: r["n"] for r in conn.execute(
                "SELECT server, count(*) AS n FROM guardian_bot.fleet_targets WHERE state IN ('queued', 'running') "
                "GROUP BY server").fetchall()})
            claimed: list[str] = []
            for row in conn.execute(
                    "SELECT target, server, attempt FROM guardian_bot.fleet_targets WHERE request_id = %s "
                    "AND state = 'waiting' AND wave <= %s ORDER BY wave, position", (request_id, wave)).fetchall():
                if len(claimed) >= room:
                    break
                if busy[row["server"]] >= per_server:
                    continue
                busy[row["server"]] += 1
                attempt = row["attempt"] + 1
                outbox = conn.execute(
                    "INSERT INTO guardian_bot.job_outbox (step, attempt, args) VALUES (%s, %s, %s) RETURNING id",
                    (job, attempt, Jsonb([request_id, row["target"], attempt]))).fetchone()["id"]
                conn.execute("UPDATE guardian_bot.fleet_targets SET state = 'queued', attempt = %s, outbox_id = %s, "
                             "job_id = NULL WHERE request_id = %s AND target = %s",
                             (attempt, outbox, request_id, row["target"]))
                claimed.append(row["target"])
            if claimed:
                conn.execute("SELECT pg_notify(%s, '')", (OUTBOX_CHANNEL,))
            return Claim(state="running", claimed=tuple(claimed))

    def open_wave(self, request_id: int, done: int, not_before: datetime | None) -> bool:
        """Wave ``done`` finished and passed its gate: let the next one start (at ``not_before``). Compare-and-set."""
        with self._tx() as conn:
            row = conn.execute(
                "UPDATE guardian_bot.fleet_rollouts SET wave = %s, next_wave_at = %s, updated_at = now() "
                "WHERE request_id = %s AND wave = %s AND state = 'running' RETURNING request_id",
                (done + 1, not_before, request_id, done)).fetchone()
        return row is not None

    def start_fleet_target(self, request_id: int, target: str, attempt: int, job_id: str | None) -> RolloutTarget | None:
        """queued -> running for this claim's attempt while the rollout runs; a rollout halted, paused or aborted
        since the claim sends the target back to waiting instead (None: nothing starts)."""
        with self._tx() as conn:
            rollout = conn.execute("SELECT state FROM guardian_bot.fleet_rollouts WHERE request_id = %s FOR SHARE",
                                   (request_id,)).fetchone()
            if rollout is None:
                return None
            if rollout["state"] != "running":
                conn.execute("UPDATE guardian_bot.fleet_targets SET state = 'waiting', outbox_id = NULL "
                             "WHERE request_id = %s AND target = %s AND state = 'queued' AND attempt = %s",
                             (request_id, target, attempt))
                return None
            row = conn.execute(
                "UPDATE guardian_bot.fleet_targets SET state = 'running', job_id = %s, started_at = clock_timestamp(), "
                "finished_at = NULL, note = NULL WHERE request_id = %s AND target = %s AND state = 'queued' "
                "AND attempt = %s RETURNING *", (job_id, request_id, target, attempt)).fetchone()
        return RolloutTarget(**row) if row else None

    def finish_fleet_target(self, request_id: int, target: str, state: str, note: str | None, *,
                            halt_after: int, attempt: int | None = None) -> str | None:
        """running -> succeeded | failed | skipped; the failure that reaches ``halt_after`` halts the rollout in the
        same transaction, so nothing starts after it. Returns the halt reason when this call halted it."""
        with self._tx() as conn:
            conn.execute("SELECT 1 FROM guardian_bot.fleet_rollouts WHERE request_id = %s FOR UPDATE", (request_id,))
            conn.execute(
                "UPDATE guardian_bot.fleet_targets SET state = %s, note = %s, finished_at = clock_timestamp() "
                "WHERE request_id = %s AND target = %s AND state = 'running' AND (%s::int IS NULL OR attempt = %s)",
                (state, (note or "")[:500] or None, request_id, target, attempt, attempt))
            if state != "failed":
                return None
            failed = conn.execute("SELECT count(*) AS n FROM guardian_bot.fleet_targets WHERE request_id = %s "
                                  "AND state = 'failed'", (request_id,)).fetchone()["n"]
            if failed < halt_after:
                return None
            reason = _halt_reason(failed)
            return reason if _set_state(conn, request_id, "halted", reason, only_from=("running",)) else None

    def set_rollout_state(self, request_id: int, state: RolloutState, reason: str | None, *,
                          only_from: tuple[str, ...]) -> bool:
        """Compare-and-set the rollout's state (running -> succeeded, halted -> running, …)."""
        with self._tx() as conn:
            return _set_state(conn, request_id, state, reason, only_from=only_from)

    def resume_rollout(self, request_id: int, reason: str, *, halt_after: int) -> str | None:
        """paused | halted -> running; a wave already finished opens the next one (the person who resumes overrides
        a health gate). Returns why it cannot resume, or None when it did."""
        with self._tx() as conn:
            rollout = conn.execute("SELECT * FROM guardian_bot.fleet_rollouts WHERE request_id = %s FOR UPDATE",
                                   (request_id,)).fetchone()
            if rollout is None or rollout["state"] not in ("paused", "halted"):
                return f"the rollout is {rollout['state'] if rollout else 'gone'}, not paused or halted"
            left = conn.execute(
                "SELECT count(*) FILTER (WHERE state = 'failed') AS failed, "
                "count(*) FILTER (WHERE state IN ('waiting', 'queued', 'running') AND wave <= %s) AS open "
                "FROM guardian_bot.fleet_targets WHERE request_id = %s", (rollout["wave"], request_id)).fetchone()
            if left["failed"] >= halt_after:
                return (f"{left['failed']} target(s) failed, which would halt it again: Retry failed or Skip failed "
                        "instead")
            wave = rollout["wave"] + (1 if left["open"] == 0 else 0)
            conn.execute("UPDATE guardian_bot.fleet_rollouts SET state = 'running', wave = %s, next_wave_at = NULL, "
                         "reason = %s, updated_at = now() WHERE request_id = %s", (wave, reason, request_id))
        return None

    def settle_failed_targets(self, request_id: int, to: Literal["waiting", "skipped"], note: str) -> int:
        """Failed targets back to waiting (Retry failed) or to skipped (Skip failed); a halted rollout runs again.
        Returns how many targets moved."""
        with self._tx() as conn:
            conn.execute("SELECT 1 FROM guardian_bot.fleet_rollouts WHERE request_id = %s FOR UPDATE", (request_id,))
            moved = conn.execute(
                "UPDATE guardian_bot.fleet_targets SET state = %s, note = %s, outbox_id = NULL, job_id = NULL "
                "WHERE request_id = %s AND state = 'failed'", (to, note, request_id)).rowcount
            if moved:
                _set_state(conn, request_id, "running", note, only_from=("halted",))
        return moved

    def release_fleet_target(self, request_id: int, target: str, attempt: int, note: str) -> bool:
        """A target whose job died goes back to waiting (its ledger says what is applied; the next claim resumes)."""
        with self._tx() as conn:
            row = conn.execute(
                "UPDATE guardian_bot.fleet_targets SET state = 'waiting', note = %s, outbox_id = NULL, job_id = NULL "
                "WHERE request_id = %s AND target = %s AND attempt = %s AND state IN ('queued', 'running') "
                "RETURNING target", (note, request_id, target, attempt)).fetchone()
        return row is not None

    def add_fleet_targets(self, request_id: int, targets: list[dict[str, Any]]) -> int:
        """Targets found after the approval, recorded as excluded (listed, never migrated); existing ones are kept."""
        with self._tx() as conn:
            start = conn.execute("SELECT coalesce(max(position), -1) + 1 AS n FROM guardian_bot.fleet_targets "
                                 "WHERE request_id = %s", (request_id,)).fetchone()["n"]
            added = 0
            for i, t in enumerate(targets):
                cur = conn.execute(
                    """INSERT INTO guardian_bot.fleet_targets (request_id, target, position, kind, url_env, server,
                           state, note) VALUES (%s, %s, %s, %s, %s, %s, 'excluded', %s) ON CONFLICT DO NOTHING""",
                    (request_id, t["target"], start + i, t["kind"], t.get("url_env"), t["server"], t.get("note")))
                added += cur.rowcount
        return added


def _halt_reason(failed: int) -> str:
    return f"{failed} target{'s' if failed != 1 else ''} failed (halt_after_failures reached)"


def _set_state(conn: psycopg.Connection, request_id: int, state: str, reason: str | None, *,
               only_from: tuple[str, ...] = ("running",)) -> bool:
    row = conn.execute(
        "UPDATE guardian_bot.fleet_rollouts SET state = %s, reason = %s, updated_at = now() "
        "WHERE request_id = %s AND state = ANY(%s) RETURNING request_id",
        (state, reason, request_id, list(only_from))).fetchone()
    return row is not None
