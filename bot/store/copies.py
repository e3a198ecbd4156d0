"""Rehearsal copies in the making or alive: recorded before a copy is made, cleared once it is dropped, so the
reconciler finds the copies of a worker that died (bot/pg/copy.py sweep_recorded)."""
from __future__ import annotations

from bot.models import RehearsalCopyRecord
from bot.store.base import StoreBase


class CopiesStore(StoreBase):
    """guardian_bot.rehearsal_copies: one row per live copy, by name; guardian_bot.installation: this install's id."""

    _install_id: str | None = None

    @property
    def install_id(self) -> str:
        """This installation's id (8 hex digits, made once by schema file 0011): part of its copies' names."""
        if self._install_id is None:
            with self._tx() as conn:
                self._install_id = conn.execute("SELECT id FROM guardian_bot.installation").fetchone()["id"]
        return self._install_id

    def record_copy(self, name: str, request_id: int, environment: str, kind: str, owner: str) -> None:
        """Note a copy about to be made (a leftover row of the same name is taken over: one copy per name)."""
        with self._tx() as conn:
            conn.execute(
                """INSERT INTO guardian_bot.rehearsal_copies (name, request_id, environment, kind, owner)
                   VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (name) DO UPDATE SET request_id = excluded.request_id,
                       environment = excluded.environment, kind = excluded.kind, owner = excluded.owner,
                       created_at = now()""",
                (name, request_id, environment, kind, owner))

    def clear_copy(self, name: str) -> None:
        """The copy is dropped: forget it."""
        with self._tx() as conn:
            conn.execute("DELETE FROM guardian_bot.rehearsal_copies WHERE name = %s", (name,))

    def list_copies(self, *, older_than_s: float = 0) -> list[RehearsalCopyRecord]:
        """Recorded copies made at least ``older_than_s`` seconds ago, oldest first."""
        with self._tx() as conn:
            rows = conn.execute(
                """SELECT * FROM guardian_bot.rehearsal_copies
                   WHERE created_at <= now() - make_interval(secs => %s) ORDER BY created_at""",
                (older_than_s,)).fetchall()
        return [RehearsalCopyRecord(**r) for r in rows]
