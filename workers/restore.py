"""Restore step (incidents): put the tables a failed request touched back as its backup holds them.

Usage (RQ job; the incident service enqueues it after a typed confirmation)::

    enqueue_step(redis, "restore", request_id)

Only the touched tables are restored: their definition, data, sequences, indexes, constraints, defaults,
triggers, row-level security, policies and grants, selected from the archive's table of contents. pg_restore
writes them as SQL (``--clean --if-exists --file=-``) and it runs here on ONE connection in ONE transaction,
together with what real schemas need around it: other tables' foreign keys into the restored tables and
views over them are set aside first and put back (and checked) after, and the tool's ledger is marked so
the migration counts as not applied again. Anything failing rolls all of it back; the thread gets one
paragraph either way.
"""
from __future__ import annotations

import logging
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bot.errors import GuardianError
from bot.incidents import IncidentService, touched_relations
from bot.models import Backup, DbState, Request
from bot.pg.connect import connect_target, describe_pg_error, scrub
from bot.sources.apply import mark_reverted, repository_paths, rollback_advice
from workers.backup import find_pg_dump
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
        if desc in ("ACL", "COMMENT") and first in ("TABLE", "COLUMN"):  # `ACL public TABLE users`, `COLUMN users.email`
            first = rest.split(" ", 2)[1].split(".", 1)[0] if " " in rest else first
        if desc in _TABLE_TAGGED and (schema, first) in wanted:
            chosen.append(line)
        elif desc == "INDEX" and (schema, indexes.get((schema, first), "")) in wanted:
            chosen.append(line)
        elif desc in ("SEQUENCE", "SEQUENCE SET", "SEQUENCE OWNED BY") and any(first.startswith(t + "_") for s, t in wanted if s == schema):
            chosen.append(line)
    return chosen


def _index_tables(rt: Any, request: Request) -> dict[tuple[str, str], str]:
    """(schema, index) -> table, from the schema snapshot the backup step took before the run."""
    steps = [s for s in rt.store.list_steps(request.id) if s.step == "backup" and s.status == "succeeded"]
    snapshot = steps[-1].outcome.get("snapshot") if steps else None
    return {(i["schema_name"], i["name"]): i["table"] for i in (snapshot or {}).get("indexes", [])}


@dataclass
class Outside:
    """What depends on the restored tables from outside them, kept aside while they are replaced."""

    foreign_keys: list[tuple[str, str, str]] = field(default_factory=list)  # (table, constraint, definition)
    views: list[tuple[str, str, str, list[str]]] = field(default_factory=list)  # (name, kind, definition, grants)


_OUTSIDE_FKS = """
SELECT format('%%I.%%I', n.nspname, t.relname), c.conname, pg_get_constraintdef(c.oid)
FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE c.contype = 'f' AND c.confrelid = ANY(%(oids)s::oid[]) AND NOT c.conrelid = ANY(%(oids)s::oid[])
ORDER BY c.oid"""

# views and materialized views depending on the tables, directly or through other views, oldest first
_DEPENDENT_VIEWS = """
WITH RECURSIVE deps(oid) AS (
    SELECT DISTINCT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
    WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = ANY(%(oids)s::oid[]) AND r.ev_class <> d.refobjid
  UNION
    SELECT r.ev_class FROM deps JOIN pg_depend d ON d.refobjid = deps.oid JOIN pg_rewrite r ON r.oid = d.objid
    WHERE d.classid = 'pg_rewrite'::regclass AND r.ev_class <> d.refobjid
)
SELECT format('%%I.%%I', n.nspname, v.relname), v.relkind, pg_get_viewdef(v.oid),
       coalesce((SELECT array_agg(format('GRANT %%s ON %%I.%%I TO %%s', a.privilege_type, n.nspname, v.relname,
                                         CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END))
                 FROM aclexplode(v.relacl) a WHERE a.grantee <> v.relowner), '{}')
FROM deps JOIN pg_class v ON v.oid = deps.oid JOIN pg_namespace n ON n.oid = v.relnamespace
WHERE NOT v.oid = ANY(%(oids)s::oid[])
ORDER BY v.oid"""


def _set_aside(conn: Any, tables: list[str]) -> Outside:
    """Drop (inside the restore's transaction) the foreign keys of other tables into ``tables`` and the views
    over them; what was dropped is returned to be put back once the tables are restored."""
    oids = [row[0] for row in conn.execute(
        "SELECT to_regclass(t)::oid FROM unnest(%s::text[]) t WHERE to_regclass(t) IS NOT NULL",
        ([_quoted(t) for t in tables],))]
    outside = Outside()
    if not oids:
        return outside
    outside.foreign_keys = [tuple(r) for r in conn.execute(_OUTSIDE_FKS, {"oids": oids}).fetchall()]
    outside.views = [(r[0], r[1], r[2], list(r[3])) for r in conn.execute(_DEPENDENT_VIEWS, {"oids": oids}).fetchall()]
    for table, name, _ in outside.foreign_keys:
        conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name.replace(chr(34), chr(34) * 2)}"')
    for kind in ("m", "v"):
        names = [v[0] for v in outside.views if v[1] == kind]
        if names:  # one DROP for all: PostgreSQL orders the views among themselves
            conn.execute(f"DROP {'MATERIALIZED VIEW' if kind == 'm' else 'VIEW'} {', '.join(names)}")
    return outside


def _put_back(conn: Any, outside: Outside) -> None:
    for name, kind, definition, grants in outside.views:
        conn.execute(f"CREATE {'MATERIALIZED VIEW' if kind == 'm' else 'VIEW'} {name} AS {definition}")
        for grant in grants:
            conn.execute(grant)
    for table, name, definition in outside.foreign_keys:
        try:
            with conn.transaction():  # a savepoint: the error names this key, then the whole restore rolls back
                conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name.replace(chr(34), chr(34) * 2)}" {definition}')
        except psycopg.errors.ForeignKeyViolation as exc:
            detail = (exc.diag.message_detail or "").strip()
            raise RestoreError(
                f"{table} holds rows the backup's tables do not (its foreign key {name} would break: {detail}); rows "
                f"written after the backup refer to them, so restoring would orphan them — fix forward instead, or "
                f"delete those rows first", code="restore-orphans") from None


_SKIPPED_SETTINGS = ("SET statement_timeout", "SET lock_timeout", "SET idle_in_transaction_session_timeout",
                     "SET transaction_timeout")


def _replay(conn: Any, script: Any) -> None:
    """Run pg_restore's SQL script (read line by line) on ``conn``: statements in batches, COPY data streamed."""
    batch: list[str] = []
    lines = iter(script)
    for line in lines:
        if line.startswith(_SKIPPED_SETTINGS):
            continue  # the environment's lock and statement timeouts stay; a newer pg_restore's settings go
        if line.startswith("\\"):
            continue  # psql meta-commands (\restrict and \unrestrict since 15.14/16.10/17.6) are not SQL
        if line.startswith("COPY ") and line.rstrip().endswith("FROM stdin;"):
            if batch:
                conn.execute("".join(batch))
                batch = []
            with conn.cursor().copy(line.rstrip().rstrip(";")) as copy:
                for row in lines:
                    if row.rstrip("\n") == "\\.":
                        break
                    copy.write(row)
            continue
        batch.append(line)
        if len(batch) > 2000 and line.rstrip().endswith(";"):
            conn.execute("".join(batch))
            batch = []
    if "".join(batch).strip():
        conn.execute("".join(batch))


def restore_tables(rt: Any, request: Request, backup: Backup, url: str) -> str:
    """Put the touched tables back from ``backup`` in ONE transaction; returns a paragraph saying what was done.

    pg_restore writes the selected entries (the tables' definitions, data, sequences, defaults, indexes,
    constraints, triggers, row-level security, policies and grants) as SQL, which runs here, on one connection,
    between setting aside what depends on the tables from outside (other tables' foreign keys into them, views
    over them) and putting it back: a failure anywhere changes nothing.
    """
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
    names = [".".join(_plain(t)) for t in tables]
    env = rt.config.environment(request.environment)
    with tempfile.NamedTemporaryFile("w", suffix=".list", delete=False) as handle:
        handle.write("\n".join(entries) + "\n")
        list_file = handle.name
    proc = subprocess.Popen([pg_restore, "--clean", "--if-exists", "--no-owner", f"--use-list={list_file}",
                             "--file=-", str(archive)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, encoding="utf-8")
    try:
        with connect_target(url, request.environment, autocommit=False,
                            application_name=f"guardian-req{request.id}-restore") as conn:
            conn.execute("SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)",
                         (env.lock_timeout, env.statement_timeout))
            try:
                # definitions read with an empty search_path come schema-qualified, as pg_restore's script runs
                conn.execute("SELECT set_config('search_path', '', true)")
                outside = _set_aside(conn, names)
                assert proc.stdout is not None
                _replay(conn, proc.stdout)
                _put_back(conn, outside)
                rows = {t: conn.execute(f"SELECT count(*) FROM {_quoted(t)}").fetchone()[0] for t in names}
                conn.execute("RESET search_path")
                for ref in request.migrations:  # the ledger, in the same transaction
                    mark_reverted(conn, rt.config.project.layout, to_migration(ref, rt.config.project.layout))
            except psycopg.Error as exc:
                conn.rollback()
                raise RestoreError(f"the restore stopped and changed nothing (one transaction): "
                                   f"{describe_pg_error(exc, url, detail=True)}", code="restore-failed") from None
            except RestoreError:
                conn.rollback()
                raise
            conn.commit()
    finally:
        proc.stdout and proc.stdout.close()
        err = proc.stderr.read() if proc.stderr else ""
        proc.wait()
        Path(list_file).unlink(missing_ok=True)
    if proc.returncode != 0:  # only reached when the SQL itself ran: pg_restore complaining afterwards is odd
        log.warning("pg_restore exited %s after its script ran: %s", proc.returncode, err.strip()[-300:])
    return _paragraph(backup, rows, outside)


def _quoted(name: str) -> str:
    schema, table = _plain(name)
    return '"' + schema.replace('"', '""') + '"."' + table.replace('"', '""') + '"'


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def _paragraph(backup: Backup, rows: dict[str, int], outside: Outside) -> str:
    """One readable paragraph: what was restored, what was set aside and put back, what was not touched."""
    restored = ", ".join(f"{t} ({_count(n, 'row')})" for t, n in rows.items())
    text = (f"Restored {restored} from backup #{backup.id} (taken {backup.created_at:%Y-%m-%d %H:%M} UTC): "
            "definition, data, indexes, constraints, sequences, triggers, row-level security and grants, "
            "in one transaction.")
    kept = []
    if outside.foreign_keys:
        kept.append(_count(len(outside.foreign_keys), "foreign key") + " into them ("
                    + ", ".join(f"{t}.{n}" for t, n, _ in outside.foreign_keys) + ")")
    if outside.views:
        kept.append(_count(len(outside.views), "view") + " over them (" + ", ".join(v[0] for v in outside.views) + ")")
    if kept:
        plural = len(outside.foreign_keys) + len(outside.views) > 1
        joined = " and ".join(kept)
        text += (f" {joined[0].upper()}{joined[1:]} {'were' if plural else 'was'} re-created and checked against the "
                 "restored rows.")
    text += " Other tables were not touched; rows written to the restored tables after the backup are gone."
    return text


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
        summary = restore_tables(rt, request, backups[-1], url)
        restored = [".".join(_plain(t)) for t in touched_relations(request)]
    except GuardianError as exc:
        message = scrub(exc.message, url)
        rt.store.finish_step(step.id, "failed", error=message)
        log.warning("request %s: restore failed: %s", request_id, message)
        service.on_restore_finished(request_id, False, message)
        return
    rt.store.finish_step(step.id, "succeeded", outcome={"backup_id": backups[-1].id, "tables": restored})
    rt.store.update_request(request_id, db_state=DbState.ROLLED_BACK)
    log.info("request %s: restored %s from backup %s", request_id, restored, backups[-1].id)
    service.on_restore_finished(request_id, True, summary + " "
                                                  + rollback_advice(rt.config.project.layout, repository_paths(
                                                      rt.config.project.layout, request.migrations)))
