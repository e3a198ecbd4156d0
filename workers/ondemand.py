"""`/migrate backup <env>`: a whole-database backup on demand, checked, recorded and kept like the pipeline's.

Usage (RQ job; the Slack command enqueues it for an approver of the environment)::

    queue.enqueue("workers.ondemand.backup", "staging", "U123", "C0123")
"""
from __future__ import annotations

import logging

from bot.errors import GuardianError
from bot.pg.connect import connect_target, scrub
from workers.backup import find_pg_dump, write_backup
from workers.runtime import runtime

log = logging.getLogger(__name__)


def backup(environment: str, user: str, channel: str | None) -> int | None:
    """Dump ``environment`` (custom format), verify it, record it; tell ``channel``. Returns the backup id."""
    rt = runtime()
    env = rt.config.environment(environment)
    url = ""
    try:
        url = env.database_url().get_secret_value()
        app = f"guardian-backup-{environment}"[:63]
        with connect_target(url, env.name, application_name=app) as conn:
            server_major = conn.info.server_version // 10000
        binary, major = find_pg_dump(server_major)
        saved, path, digest, size, duration_ms = write_backup(rt, env, url, binary, [], label="ondemand",
                                                              scope="full", app=app)
        rt.store.record_event("backup.on_demand", actor=user, detail={"backup_id": saved.id, "environment": env.name})
    except GuardianError as exc:
        text = scrub(exc.message, url)
        log.warning("on-demand backup of %s failed: %s", environment, text)
        _tell(rt, channel, rt.notifier.ondemand_backup_failed(environment, user, text))
        return None
    log.info("on-demand backup %s of %s: %s bytes in %s ms", saved.id, environment, size, duration_ms)
    _tell(rt, channel, rt.notifier.ondemand_backup_taken(saved.id, environment, user, path.name, size, major, digest,
                                                         rt.config.backup.retention_days))
    return saved.id


def _tell(rt, channel: str | None, text: str) -> None:
    rt.notifier.post("the on-demand backup's result", channel, rt.notifier.thread_note(text))  # recorded either way
