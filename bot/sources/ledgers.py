"""What a target database holds: the tools' ledgers (Prisma, Supabase, ours) and our sidecar, read and created."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import psycopg
from psycopg.rows import dict_row

from bot.errors import TargetError
from bot.sources.models import Layout, LedgerRow, LedgerState, SidecarRow

PRISMA_TABLE = "_prisma_migrations"
SUPABASE_TABLE = "supabase_migrations.schema_migrations"
HISTORY_TABLE = "guardian.schema_history"
SIDECAR_TABLE = "guardian.applied_migrations"

# Exactly as prisma-engines creates it (flavour/postgres.rs), in the connection's current schema.
PRISMA_DDL = """CREATE TABLE _prisma_migrations (
    id                      VARCHAR(36) PRIMARY KEY NOT NULL,
    checksum                VARCHAR(64) NOT NULL,
    finished_at             TIMESTAMPTZ,
    migration_name          VARCHAR(255) NOT NULL,
    logs                    TEXT,
    rolled_back_at          TIMESTAMPTZ,
    started_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_steps_count     INTEGER NOT NULL DEFAULT 0
)"""
# As the Supabase CLI runs it (pkg/migration/history.go CreateMigrationTable), idempotent.
SUPABASE_DDL = (
    "SELECT set_config('lock_timeout', '4s', true)",
    "CREATE SCHEMA IF NOT EXISTS supabase_migrations",
    "CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (version text NOT NULL PRIMARY KEY)",
    "ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS statements text[]",
    "ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS name text",
)
HISTORY_DDL = (
    "CREATE SCHEMA IF NOT EXISTS guardian",
    """CREATE TABLE IF NOT EXISTS guardian.schema_history (
        version      text PRIMARY KEY,
        name         text NOT NULL,
        sha256       char(64) NOT NULL,
        applied_at   timestamptz NOT NULL DEFAULT now(),
        duration_ms  integer NOT NULL
    )""",
)
SIDECAR_DDL = (
    "CREATE SCHEMA IF NOT EXISTS guardian",
    """CREATE TABLE IF NOT EXISTS guardian.applied_migrations (
        id                 bigserial PRIMARY KEY,
        layout             text NOT NULL,
        version            text NOT NULL,
        name               text NOT NULL,
        sha256             char(64) NOT NULL,
        statements_sha256  char(64),
        request_id         text,
        approvers          text[] NOT NULL DEFAULT '{}',
        backup_id          text,
        started_at         timestamptz NOT NULL,
        finished_at        timestamptz,
        duration_ms        integer,
        succeeded          boolean NOT NULL,
        error              text
    )""",
)

# column -> (format_type, required); "required" columns must exist, the others may be added by the tool.
_SHAPES: dict[str, dict[str, tuple[str, bool]]] = {
    PRISMA_TABLE: {
        "id": ("character varying(36)", True), "checksum": ("character varying(64)", True),
        "finished_at": ("timestamp with time zone", True), "migration_name": ("character varying(255)", True),
        "logs": ("text", True), "rolled_back_at": ("timestamp with time zone", True),
        "started_at": ("timestamp with time zone", True), "applied_steps_count": ("integer", True),
    },
    SUPABASE_TABLE: {"version": ("text", True), "statements": ("text[]", False), "name": ("text", False)},
    HISTORY_TABLE: {
        "version": ("text", True), "name": ("text", True), "sha256": ("character(64)", True),
        "applied_at": ("timestamp with time zone", True), "duration_ms": ("integer", True),
    },
    SIDECAR_TABLE: {
        "id": ("bigint", True), "layout": ("text", True), "version": ("text", True), "name": ("text", True),
        "sha256": ("character(64)", True), "statements_sha256": ("character(64)", True),
        "request_id": ("text", True), "approvers": ("text[]", True), "backup_id": ("text", True),
        "started_at": ("timestamp with time zone", True), "finished_at": ("timestamp with time zone", True),
        "duration_ms": ("integer", True), "succeeded": ("boolean", True), "error": ("text", True),
    },
}
_TOOL_TABLE: dict[str, str] = {"prisma": PRISMA_TABLE, "supabase": SUPABASE_TABLE, "sql": HISTORY_TABLE}


class LedgerError(TargetError):
    """A ledger table exists in a shape we do not write, or a ledger state blocks the apply."""

    code = "ledger-error"


def prisma_checksum(script: str) -> str:
    """Prisma's stored checksum: lowercase hex sha256 of the script's UTF-8 bytes, no normalisation."""
    return hashlib.sha256(script.encode("utf-8")).hexdigest()


def prisma_checksum_matches(script: str, stored: str) -> bool:
    """Prisma's own comparison: exact, CRLF->LF or LF->CRLF; old unpadded hex rows (prisma-engines#1887)."""
    for variant in (script, script.replace("\r\n", "\n"), script.replace("\n", "\r\n")):
        digest = hashlib.sha256(variant.encode("utf-8")).digest()
        candidate = "".join(format(b, "x") for b in digest) if stored and len(stored) != 64 else digest.hex()
        if candidate == stored:
            return True
    return False


def statements_sha256(statements: Sequence[str]) -> str:
    """What the sidecar stores in statements_sha256: sha256 of the JSON list, to tell our rows from rewritten ones."""
    return hashlib.sha256(json.dumps(list(statements), ensure_ascii=False).encode("utf-8")).hexdigest()


def _regclass(conn: psycopg.Connection, table: str) -> str | None:
    row = conn.execute("SELECT to_regclass(%s)::text", (table,)).fetchone()
    return row[0] if row else None


def _columns(conn: psycopg.Connection, table: str) -> dict[str, str]:
    rows = conn.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
           WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped""",
        (table,),
    ).fetchall()
    return {name: kind for name, kind in rows}


def check_shape(conn: psycopg.Connection, table: str) -> bool:
    """True if ``table`` exists in the shape we write, False if absent; LedgerError if it differs."""
    if _regclass(conn, table) is None:
        return False
    have = _columns(conn, table)
    problems = []
    for column, (kind, required) in _SHAPES[table].items():
        if column not in have:
            if required:
                problems.append(f"column {column} is missing")
        elif have[column] != kind:
            problems.append(f"column {column} is {have[column]}, expected {kind}")
    if problems:
        raise LedgerError(
            f"ledger table {table} has an unexpected shape ({'; '.join(problems)}); nothing was written. Check "
            "that the environment points at the right database and tool, or fix the table by hand",
            code="ledger-shape",
        )
    return True


def prisma_schema_not_empty(conn: psycopg.Connection) -> list[str]:
    """Prisma's P3005 test (sql_migration_persistence.rs initialize): with no _prisma_migrations in the connection's
    schema, the tables there (flavour postgres.rs table_names: relkind 'r'); any of them and `migrate deploy`
    refuses to start a history. Empty when the ledger exists or the schema is empty."""
    if _regclass(conn, PRISMA_TABLE) is not None:
        return []
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind = 'r' AND n.nspname = current_schema() AND c.relname <> 'spatial_ref_sys' "
        "ORDER BY c.relname"
    ).fetchall()
    return [r[0] for r in rows]


def baseline_error(tables: list[str], first: str | None) -> LedgerError:
    listed = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
    how = (f'`npx prisma migrate resolve --applied "{first}"` (and so on for each migration already in the database)'
           if first else "`npx prisma migrate resolve --applied <migration>` for each migration already in it")
    return LedgerError(
        f"the database schema is not empty ({listed}) and has no _prisma_migrations history, so `prisma migrate "
        f"deploy` refuses it (P3005); baseline it first: run {how}, then plan again",
        code="baseline-needed",
    )


def ensure_ledgers(conn: psycopg.Connection, layout: Layout) -> None:
    """Create the tool's ledger and our sidecar if missing, after checking every existing one's shape.

    Runs in its own transaction; a table in a wrong shape raises before anything is written.
    """
    tool = _TOOL_TABLE[layout]
    with conn.transaction():
        tool_exists = check_shape(conn, tool)
        sidecar_exists = check_shape(conn, SIDECAR_TABLE)
        if layout == "prisma" and not tool_exists:
            if conn.execute("SELECT current_schema()").fetchone()[0] is None:
                path = conn.execute("SELECT current_setting('search_path')").fetchone()[0]
                raise LedgerError(
                    f"no schema of the search_path ({path}) exists, so there is nowhere to keep _prisma_migrations; "
                    "create the schema named by the URL's ?schema= (CREATE SCHEMA …) or fix the URL",
                    code="schema-missing",
                )
            tables = prisma_schema_not_empty(conn)
            if tables:
                raise baseline_error(tables, None)
            conn.execute(PRISMA_DDL)
        elif layout == "supabase":
            for statement in SUPABASE_DDL:  # idempotent, as the CLI runs it every time
                conn.execute(statement)
        elif layout == "sql" and not tool_exists:
            for statement in HISTORY_DDL:
                conn.execute(statement)
        if not sidecar_exists:
            for statement in SIDECAR_DDL:
                conn.execute(statement)


def read_ledger(conn: psycopg.Connection, layout: Layout) -> LedgerState:
    """The tool's ledger rows and every sidecar row of this layout (oldest first); read-only, shapes checked."""
    tool = _TOOL_TABLE[layout]
    was_idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    exists = check_shape(conn, tool)
    rows: list[LedgerRow] = []
    with conn.cursor(row_factory=dict_row) as cur:
        if exists and layout == "prisma":
            cur.execute(
                f"SELECT * FROM {PRISMA_TABLE} ORDER BY started_at, migration_name"
            )
            for r in cur.fetchall():
                name = r["migration_name"]
                version, _, rest = name.partition("_")
                rows.append(LedgerRow(
                    layout="prisma", version=version, name=rest or None, ledger_name=name,
                    checksum=r["checksum"], started_at=r["started_at"], finished_at=r["finished_at"],
                    rolled_back_at=r["rolled_back_at"], logs=r["logs"],
                    failed=r["finished_at"] is None and r["rolled_back_at"] is None,
                ))
        elif exists and layout == "supabase":
            cols = _columns(conn, tool)
            name_col = "name" if "name" in cols else "NULL::text AS name"
            stmts_col = "statements" if "statements" in cols else "NULL::text[] AS statements"
            cur.execute(f"SELECT version, {name_col}, {stmts_col} FROM {SUPABASE_TABLE} ORDER BY version")
            for r in cur.fetchall():
                rows.append(LedgerRow(
                    layout="supabase", version=r["version"], name=r["name"], ledger_name=r["version"],
                    statements=tuple(r["statements"]) if r["statements"] is not None else None,
                ))
        elif exists:
            cur.execute(f"SELECT * FROM {HISTORY_TABLE} ORDER BY applied_at, version")
            for r in cur.fetchall():
                rows.append(LedgerRow(
                    layout="sql", version=r["version"], name=r["name"], ledger_name=r["version"],
                    checksum=r["sha256"], started_at=r["applied_at"], finished_at=r["applied_at"],
                ))
        sidecar: list[SidecarRow] = []
        if check_shape(conn, SIDECAR_TABLE):
            cur.execute(
                f"SELECT * FROM {SIDECAR_TABLE} WHERE layout = %s ORDER BY id",
                (layout,),
            )
            for r in cur.fetchall():
                sidecar.append(SidecarRow(
                    layout=r["layout"], version=r["version"], name=r["name"], sha256=r["sha256"],
                    statements_sha256=r["statements_sha256"], request_id=r["request_id"],
                    approvers=tuple(r["approvers"] or ()), backup_id=r["backup_id"], started_at=r["started_at"],
                    finished_at=r["finished_at"], duration_ms=r["duration_ms"], succeeded=r["succeeded"],
                    error=r["error"],
                ))
    if was_idle and not conn.autocommit:
        conn.rollback()  # reading must not leave a transaction open on a caller's connection
    return LedgerState(layout=layout, exists=exists, rows=tuple(rows), sidecar=tuple(sidecar))
