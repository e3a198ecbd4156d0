"""Slack deliveries already processed: each signed command, click, submission or event runs at most once."""
from __future__ import annotations

from bot.store.base import StoreBase

KEEP_DELIVERIES = "1 day"  # far longer than the 5 minutes a Slack signature stays valid


class DeliveriesStore(StoreBase):
    """Claims of Slack delivery ids (``trigger_id``, ``event_id``…)."""

    def claim_delivery(self, key: str, kind: str) -> bool:
        """True the first time ``key`` is claimed, False for a replay or a retry of the same delivery.

        Each claim also forgets up to 100 claims older than a day (indexed; bounded work per call).
        """
        with self._tx() as conn:
            row = conn.execute(
                """INSERT INTO guardian_bot.slack_deliveries (key, kind) VALUES (%s, %s)
                   ON CONFLICT (key) DO NOTHING RETURNING key""",
                (key, kind),
            ).fetchone()
            conn.execute(
                f"""DELETE FROM guardian_bot.slack_deliveries WHERE key IN (
                       SELECT key FROM guardian_bot.slack_deliveries
                       WHERE received_at < now() - interval '{KEEP_DELIVERIES}' LIMIT 100)"""
            )
        return row is not None
