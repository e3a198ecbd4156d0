"""What the real Prisma and Supabase CLIs write and conclude, written from their source, file by file.

Nothing here imports Guardian's ledger or status code: the writers below issue the SQL the CLIs issue, and the
readers re-derive each CLI's conclusion from the rows with the CLI's own rules, so a test can set a database up
"as the CLI left it" and compare Guardian's status and plan with what the CLI would do next.

Prisma (prisma/prisma-engines, schema-engine; prisma/prisma, packages/migrate):
- schema-engine/connectors/sql-schema-connector/src/flavour/postgres.rs: `create_migrations_table` (the DDL);
  `acquire_lock` (pg_advisory_lock(72707369)).
- schema-engine/connectors/sql-schema-connector/src/sql_migration_persistence.rs:
  `record_migration_started_impl` (id uuid v4, checksum, started_at, migration_name; nothing else),
  `record_successful_step` (applied_steps_count + 1), `record_migration_finished` (finished_at), `record_failed_step`
  (logs), `mark_migration_applied_impl` (logs '', started_at = finished_at = now), `mark_migration_rolled_back_by_id`
  (rolled_back_at = now), `initialize` (P3005 when the table is missing and the schema has tables).
- schema-engine/connectors/schema-connector/src/checksum.rs: sha256 of the script, lowercase hex.
- schema-engine/connectors/sql-schema-connector/src/flavour/postgres/connection.rs `apply_migration_script`: the
  whole script in one `simple_query` (one implicit transaction for a multi-statement script).
- schema-engine/core/src/commands/apply_migrations.rs (`migrate deploy`): P3009 when any row has neither
  finished_at nor rolled_back_at; otherwise applies every folder that has no row with rolled_back_at NULL, in the
  folders' order.
- schema-engine/core/src/commands/diagnose_migration_history.rs (`migrate status`): failed = rows with neither
  timestamp; edited = the FIRST row of a name (list_migrations orders by started_at) whose checksum differs;
  unapplied = folders with no row of that name at all (rolled back or not); unpersisted = rows with no folder.
- schema-engine/core/src/commands/mark_migration_applied.rs (`migrate resolve --applied`): P3008 when a row of the
  name is finished; marks its failed rows rolled back, then inserts the applied row.
- schema-engine/core/src/commands/mark_migration_rolled_back.rs (`migrate resolve --rolled-back`): P3011 with no
  row, P3012 when no row of the name is unfinished; sets rolled_back_at on the failed rows.
- packages/migrate/src/utils/listMigrations.ts: every directory is a migration, sorted with `localeCompare`.

Supabase (supabase/cli, apps/cli-go):
- pkg/migration/history.go: CreateMigrationTable (schema, table, `statements text[]`, `name text`),
  INSERT_MIGRATION_VERSION, UPSERT_MIGRATION_VERSION, DELETE_MIGRATION_VERSION, LIST_MIGRATION_VERSION.
- pkg/migration/file.go: NewMigrationFromFile (version and name from `^([0-9]+)_(.*)\\.sql$`, statements =
  parser.SplitAndTrim), ExecBatch (every statement then the version INSERT in one implicit transaction).
- pkg/migration/apply.go: FindPendingMigrations (remote versions missing locally -> error; local ones older than the
  last remote one -> error unless --include-all; else local[len(remote):]), ApplyMigrations (RESET ALL per file).
- pkg/migration/list.go: ListLocalMigrations (directories passed over; the first entry skipped when it is a
  pre-20211209000000 `<14 digits>_init.sql`; anything not matching the pattern skipped with a warning).
- internal/migration/repair/repair.go: `--status applied` upserts version, name and the file's statements;
  `--status reverted` deletes the versions.
"""
from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field

import psycopg

from bot.sources.supabase_parser import split_and_trim  # the port under test in test_supabase_parser.py

PRISMA_DDL = """CREATE TABLE _prisma_migrations (
    id                      VARCHAR(36) PRIMARY KEY NOT NULL,
    checksum                VARCHAR(64) NOT NULL,
    finished_at             TIMESTAMPTZ,
    migration_name          VARCHAR(255) NOT NULL,
    logs                    TEXT,
    rolled_back_at          TIMESTAMPTZ,
    started_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_steps_count     INTEGER NOT NULL DEFAULT 0
);"""


class CliError(Exception):
    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code} {detail}".strip())
        self.code = code
        self.detail = detail


# ----------------------------------------------------------------------------------------------- Prisma writers
def _checksum(script: str) -> str:
    return hashlib.sha256(script.encode("utf-8")).hexdigest()


def _prisma_rows(conn: psycopg.Connection) -> list[dict]:
    if conn.execute("SELECT to_regclass('_prisma_migrations')").fetchone()[0] is None:
        return []
    cur = conn.execute("SELECT id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, "
                       "applied_steps_count FROM _prisma_migrations ORDER BY started_at")
    cols = [d.name for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def prisma_initialize(conn: psycopg.Connection) -> None:
    """sql_migration_persistence.rs initialize: the table, or P3005 on a non-empty schema without it."""
    if conn.execute("SELECT to_regclass('_prisma_migrations')").fetchone()[0] is not None:
        return
    tables = conn.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                          "WHERE c.relkind = 'r' AND n.nspname = current_schema()").fetchall()
    if tables:
        raise CliError("P3005", "The database schema is not empty.")
    conn.execute(PRISMA_DDL)


def prisma_deploy(conn: psycopg.Connection, folders: dict[str, str]) -> list[str]:
    """`prisma migrate deploy` (apply_migrations.rs) over ``folders`` {name: script} given in the CLI's order.
    ``conn`` in autocommit, as quaint's connection is. Returns the names applied; raises CliError on P3009 or on a
    failed script (P3018) after recording it as the engine does."""
    prisma_initialize(conn)
    conclusion = prisma_deploy_plan(_prisma_rows(conn), list(folders))
    if conclusion[0] == "P3009":
        raise CliError("P3009", ", ".join(conclusion[1]))
    applied = []
    for name in conclusion[1]:
        script = folders[name]
        row_id = str(uuid.uuid4())
        conn.execute("INSERT INTO _prisma_migrations (id, checksum, started_at, migration_name) "
                     "VALUES (%s, %s, now(), %s)", (row_id, _checksum(script), name))
        try:
            conn.execute(script.encode("utf-8"))  # no parameters: one simple query, as apply_migration_script
        except psycopg.Error as exc:
            conn.execute("UPDATE _prisma_migrations SET logs = %s WHERE id = %s", (str(exc), row_id))
            raise CliError("P3018", name) from exc
        conn.execute("UPDATE _prisma_migrations SET applied_steps_count = applied_steps_count + 1 WHERE id = %s",
                     (row_id,))
        conn.execute("UPDATE _prisma_migrations SET finished_at = now() WHERE id = %s", (row_id,))
        applied.append(name)
    return applied


def prisma_resolve_rolled_back(conn: psycopg.Connection, name: str) -> None:
    """`prisma migrate resolve --rolled-back NAME` (mark_migration_rolled_back.rs)."""
    rows = [r for r in _prisma_rows(conn) if r["migration_name"] == name]
    if not rows:
        raise CliError("P3011", name)
    failed = [r for r in rows if r["finished_at"] is None and r["rolled_back_at"] is None]
    if not any(r["finished_at"] is None for r in rows):
        raise CliError("P3012", name)
    for r in failed:
        conn.execute("UPDATE _prisma_migrations SET rolled_back_at = now() WHERE id = %s", (r["id"],))


def prisma_resolve_applied(conn: psycopg.Connection, name: str, script: str) -> None:
    """`prisma migrate resolve --applied NAME` (mark_migration_applied.rs, mark_migration_applied_impl)."""
    if conn.execute("SELECT to_regclass('_prisma_migrations')").fetchone()[0] is None:
        conn.execute(PRISMA_DDL)  # baseline_initialize
    rows = [r for r in _prisma_rows(conn) if r["migration_name"] == name]
    if any(r["finished_at"] is not None for r in rows):
        raise CliError("P3008", name)
    for r in rows:
        if r["finished_at"] is None and r["rolled_back_at"] is None:
            conn.execute("UPDATE _prisma_migrations SET rolled_back_at = now() WHERE id = %s", (r["id"],))
    conn.execute("INSERT INTO _prisma_migrations (id, checksum, logs, started_at, finished_at, migration_name) "
                 "VALUES (%s, %s, '', now(), now(), %s)", (str(uuid.uuid4()), _checksum(script), name))


# ----------------------------------------------------------------------------------------------- Prisma readers
def prisma_deploy_plan(rows: list[dict], folders: list[str]) -> tuple[str, list[str]]:
    """apply_migrations.rs: ("P3009", failed names) or ("ok", folders it would apply, in order)."""
    failed = [r["migration_name"] for r in rows if r["finished_at"] is None and r["rolled_back_at"] is None]
    if failed:
        return "P3009", failed
    live = {r["migration_name"] for r in rows if r["rolled_back_at"] is None}
    return "ok", [f for f in folders if f not in live]


@dataclass
class PrismaStatus:
    failed: list[str] = field(default_factory=list)
    edited: list[str] = field(default_factory=list)
    unapplied: list[str] = field(default_factory=list)
    unpersisted: list[str] = field(default_factory=list)


def prisma_status(rows: list[dict], folders: dict[str, str]) -> PrismaStatus:
    """diagnose_migration_history.rs, as `prisma migrate status` reports it."""
    out = PrismaStatus()
    for name, script in folders.items():
        first = next((r for r in rows if r["migration_name"] == name), None)
        if first is None:
            out.unapplied.append(name)
        elif not _prisma_checksum_matches(script, first["checksum"]):
            out.edited.append(name)
    for r in rows:
        if r["finished_at"] is None and r["rolled_back_at"] is None:
            out.failed.append(r["migration_name"])
        if r["migration_name"] not in folders:
            out.unpersisted.append(r["migration_name"])
    return out


def _prisma_checksum_matches(script: str, stored: str) -> bool:
    """checksum.rs script_matches_checksum: the script as is, CRLF->LF or LF->CRLF."""
    return any(_checksum(v) == stored
               for v in (script, script.replace("\r\n", "\n"), script.replace("\n", "\r\n")))


def prisma_rows(conn: psycopg.Connection) -> list[dict]:
    return _prisma_rows(conn)


# --------------------------------------------------------------------------------------------- Supabase writers
SUPABASE_FILE = re.compile(r"^([0-9]+)_(.*)\.sql$")
LEGACY_INIT = re.compile(r"([0-9]{14})_init\.sql")


def supabase_local(entries: list[str]) -> tuple[list[str], list[str]]:
    """list.go ListLocalMigrations over the folder's entries (file names; a trailing `/` marks a directory):
    (the files it applies, in order; the ones it skips with a warning)."""
    clean, skipped = [], []
    for i, name in enumerate(sorted(entries)):
        if name.endswith("/"):
            continue
        legacy = LEGACY_INIT.search(name)
        if i == 0 and legacy and int(legacy.group(1)) < 20211209000000:
            skipped.append(name)
            continue
        if not SUPABASE_FILE.match(name):
            skipped.append(name)
            continue
        clean.append(name)
    return clean, skipped


def supabase_create_table(conn: psycopg.Connection) -> None:
    """history.go CreateMigrationTable."""
    with conn.transaction():
        conn.execute("SET lock_timeout = '4s'")
        conn.execute("CREATE SCHEMA IF NOT EXISTS supabase_migrations")
        conn.execute("CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (version text NOT NULL PRIMARY KEY)")
        conn.execute("ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS statements text[]")
        conn.execute("ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS name text")


def supabase_remote(conn: psycopg.Connection) -> list[str]:
    """list.go ListRemoteMigrations (LIST_MIGRATION_VERSION; no table = no migrations)."""
    if conn.execute("SELECT to_regclass('supabase_migrations.schema_migrations')").fetchone()[0] is None:
        return []
    return [r[0] for r in conn.execute("SELECT version FROM supabase_migrations.schema_migrations ORDER BY version")]


def supabase_pending(local: list[str], remote: list[str]) -> tuple[str, list[str]]:
    """apply.go FindPendingMigrations: ("missing-local", versions) | ("missing-remote", files) | ("ok", files)."""
    unapplied, missing = [], []
    i = j = 0
    while i < len(remote) and j < len(local):
        version = SUPABASE_FILE.match(local[j]).group(1)
        if remote[i] == version:
            i += 1
            j += 1
        elif remote[i] < version:
            missing.append(remote[i])
            i += 1
        else:
            unapplied.append(local[j])
            j += 1
    if j == len(local):
        missing.extend(remote[i:])
    if missing:
        return "missing-local", missing
    if unapplied:
        return "missing-remote", unapplied
    return "ok", local[len(remote):]


def supabase_push(conn: psycopg.Connection, files: dict[str, str], *, include_all: bool = False) -> list[str]:
    """`supabase db push` over ``files`` {file name: sql}: pending files, each in one implicit transaction
    (ExecBatch) after RESET ALL. ``conn`` in autocommit. Raises CliError on a refusal or a failed file."""
    local, _ = supabase_local(list(files))
    verdict, todo = supabase_pending(local, supabase_remote(conn))
    if verdict == "missing-local" or (verdict == "missing-remote" and not include_all):
        raise CliError(verdict, ", ".join(todo))
    if verdict == "missing-remote":
        todo = todo + local[len(supabase_remote(conn)) + len(todo):]
    if todo:
        supabase_create_table(conn)
    for name in todo:
        conn.execute("RESET ALL")
        version, label = SUPABASE_FILE.match(name).groups()
        statements = split_and_trim(files[name])
        try:
            with conn.transaction():
                for statement in statements:
                    conn.execute(statement.encode("utf-8"))
                conn.execute("INSERT INTO supabase_migrations.schema_migrations(version, name, statements) "
                             "VALUES (%s, %s, %s)", (version, label, statements))
        except psycopg.Error as exc:
            raise CliError("push-failed", name) from exc
    return todo


def supabase_repair(conn: psycopg.Connection, versions: list[str], status: str, files: dict[str, str]) -> None:
    """`supabase migration repair --status applied|reverted VERSION…` (repair.go UpdateMigrationTable)."""
    supabase_create_table(conn)
    with conn.transaction():
        if status == "applied":
            for v in versions:
                name = sorted(f for f in files if f.startswith(v + "_") and f.endswith(".sql"))[0]
                version, label = SUPABASE_FILE.match(name).groups()
                conn.execute("INSERT INTO supabase_migrations.schema_migrations(version, name, statements) "
                             "VALUES (%s, %s, %s) ON CONFLICT (version) DO UPDATE SET name = EXCLUDED.name, "
                             "statements = EXCLUDED.statements", (version, label, split_and_trim(files[name])))
        else:
            conn.execute("DELETE FROM supabase_migrations.schema_migrations WHERE version = ANY(%s)", (versions,))
