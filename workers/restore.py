"""Restore step (incidents): put the tables a failed request touched back as its backup holds them.

Usage (RQ job; the incident service enqueues it after a typed confirmation)::

    enqueue_step(redis, "restore", request_id)

Only the touched tables are restored: their definition, data, indexes, constraints, defaults,
triggers and policies, selected from the archive's table of contents, in ONE transaction
(``pg_restore --single-transaction --clean --if-exists``). Other tables referencing them make the
drop fail: then nothing changes and the thread says why. The tool's ledger is marked so the
migration counts as not applied again.
"""
from __future__ import annotations

import logging
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bot.errors import GuardianError
from bot.incidents import IncidentService, touched_relations
from bot.models import Backup, DbState, Request
from bot.pg.connect import connect_target
from bot.sources.apply import mark_reverted, repository_paths, rollback_advice
from workers import report
from workers.backup import find_pg_dump, libpq_env
from workers.refs import to_migration
from workers.runtime import runtime

log = logging.getLogger(__name__)
# `3415; 1259 16389 TABLE public users postgres` -> (desc, schema, rest); multi-word kinds listed first
_KINDS = ("SEQUENCE OWNED BY", "SEQUENCE SET", "TABLE DATA", "FK CONSTRAINT", "ROW SECURITY", "CONSTRAINT",
          "SEQUENCE", "DEFAULT", "TRIGGER", "POLICY", "COMMENT", "INDEX", "TABLE", "ACL")
_TOC = re.compile(r"^\d+;\s+\d+\s+\d+\s+(?P<desc>" + "|".join(_KINDS) + r")\s+(?P<schema>\S+)\s+(?P<rest>.+?)\s+\S+$")
# TOC kinds whose tag starts with the table name ("users users_pkey", "users id", "users trg")
_TABLE_TAGGED = {"TABLE", "TABLE DATA", "CONSTRAINT", "FK CONSTRAINT", "DEFAULT", "TRIGGER", "POLICY",
                 "ROW SECURITY", "COMMENT", "ACL"}


class RestoreError(GuardianError):
    code = "restore-failed"


def _plain(name: str) -> tuple[str, str]:
    name = name.strip('"')
    schema, _, table = name.rpartition(".")
    return (schema.strip('"') or "public"), table.strip('"')


def select_entries(toc: str, tables: list[str], indexes: dict[tuple[str, str], str]) -> list[str]:
    """The archive's TOC lines that belong to ``tables`` (indexes matched through ``indexes``: (schema, index) -> table)."""
    wanted = {_plain(t) for t in tables}
    chosen = []
    for line in toc.splitlines():
        if not line or line.startswith(";"):
            continue
        m = _TOC.match(line)
        if not m:
            continue
        desc, schema, rest = m.group("desc"), m.group("schema"), m.group("rest")
        first = rest.split(" ", 1)[0]
        if desc in _TABLE_TAGGED and (schema, first) in wanted:
            chosen.append(line)
        elif desc == "INDEX" and (schema, indexes.get((schema, first), "")) in wanted:
            chosen.append(line)
        elif desc == "SEQUENCE OWNED BY" and any(first.startswith(t + "_") for s, t in wanted if s == schema):
            chosen.append(line)
    return chosen


def _index_tables(rt: Any, request: Request) -> dict[tuple[str, str], str]:
    """(schema, index) -> table, from the schema snapshot the backup step took before the run."""
    steps = [s for s in rt.store.list_steps(request.id) if s.step == "backup" and s.status == "succeeded"]
    snapshot = steps[-1].outcome.get("snapshot") if steps else None
    return {(i["schema_name"], i["name"]): i["table"] for i in (snapshot or {}).get("indexes", [])}


def restore_tables(rt: Any, request: Request, backup: Backup, url: str) -> list[str]:
    """pg_restore the touched tables from ``backup`` in one transaction; returns the tables restored."""
    tables = touched_relations(request)
    if not tables:
        raise RestoreError("the request's analysis names no table it touched, so there is nothing to restore "
                           "selectively; restore the whole database by hand from the backup file", code="nothing-to-restore")
    with connect_target(url, request.environment) as conn:
        server_major = conn.info.server_version // 10000
    pg_dump, _ = find_pg_dump(server_major)
    pg_restore = str(Path(pg_dump).with_name("pg_restore"))
    archive = Path(backup.path)
    listed = subprocess.run([pg_restore, "--list", str(archive)], capture_output=True, text=True)
    if listed.returncode != 0:
        raise RestoreError(f"backup #{backup.id} cannot be read ({listed.stderr.strip()[-300:]}); it was checked when "
                           "taken — look for disk problems", code="backup-unreadable")
    entries = select_entries(listed.stdout, tables, _index_tables(rt, request))
    if not any(" TABLE DATA " in e for e in entries):
        raise RestoreError(f"backup #{backup.id} holds no data for {', '.join(tables)} (scope: {backup.scope})",
                           code="tables-not-in-backup")
    env = rt.config.environment(request.environment)
    with tempfile.NamedTemporaryFile("w", suffix=".list", delete=False) as handle:
        handle.write("\n".join(entries) + "\n")
        list_file = handle.name
    proc_env = libpq_env(url, f"guardian-req{request.id}-restore")
    proc_env["PGOPTIONS"] = f"-c lock_timeout={env.lock_timeout} -c statement_timeout={env.statement_timeout}"
    try:
        proc = subprocess.run([pg_restore, "--no-password", "--single-transaction", "--clean", "--if-exists",
                               "--exit-on-error", "--no-owner", f"--use-list={list_file}", "--dbname",
                               proc_env.get("PGDATABASE", ""), str(archive)],
                              env=proc_env, capture_output=True, text=True)
    finally:
        Path(list_file).unlink(missing_ok=True)
    if proc.returncode != 0:
        detail = report.scrub_error(proc.stderr.strip()[-600:] or "no output", url)
        raise RestoreError(f"pg_restore failed and changed nothing (one transaction): {detail}", code="restore-failed")
    return [".".join(_plain(t)) for t in tables]


def run(request_id: int) -> None:
    """The RQ job: restore, mark the ledger, tell the incident; never touches a request in flight."""
    rt = runtime()
    request = rt.store.get_request(request_id)
    service = IncidentService(rt.flow)
    backups = rt.store.list_backups(request_id=request_id)
    incident = rt.store.find_incident(request_id=request_id)
    if incident is None or incident.status.value != "mitigating" or not backups:
        log.info("request %s: restore job does nothing (incident %s, %s backups)", request_id,
                 incident.status.value if incident else None, len(backups))
        return
    step = rt.store.start_step(request_id, "restore")
    url = ""
    try:
        url = rt.config.environment(request.environment).database_url().get_secret_value()
        restored = restore_tables(rt, request, backups[-1], url)

        with connect_target(url, request.environment) as conn, conn.transaction():
            for ref in request.migrations:
                mark_reverted(conn, rt.config.project.layout, to_migration(ref, rt.config.project.layout))
    except GuardianError as exc:
        message = report.scrub_error(exc.message, url)
        rt.store.finish_step(step.id, "failed", error=message)
        log.warning("request %s: restore failed: %s", request_id, message)
        service.on_restore_finished(request_id, False, message)
        return
    rt.store.finish_step(step.id, "succeeded", outcome={"backup_id": backups[-1].id, "tables": restored})
    rt.store.update_request(request_id, db_state=DbState.ROLLED_BACK)
    log.info("request %s: restored %s from backup %s", request_id, restored, backups[-1].id)
    service.on_restore_finished(request_id, True, f"{', '.join(restored)} restored from backup #{backups[-1].id}; "
                                                  "the migration is marked not applied in the ledger. "
                                                  + rollback_advice(rt.config.project.layout, repository_paths(
                                                      rt.config.project.layout, request.migrations)))
