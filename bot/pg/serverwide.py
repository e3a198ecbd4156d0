"""What a rehearsal on a copy must not commit: server-wide effects. A copy made on the target's own server isolates
only what lives in its database; roles, databases, tablespaces, server settings and the shared catalogs are the
production server's own. So, in ``rehearse(commit=True)`` (bot/pg/rehearsal.py):

- a statement that must run alone (autocommit) runs only when it is database-local (``alone_refusal``);
- each transaction part is checked, just before its COMMIT, for changes to the shared catalogs it made (DO blocks
  and functions included: the check looks at the catalogs, not at the SQL) and is rolled back instead
  (``SharedCatalogs.changed``).

Usage::

    reason = alone_refusal(piece)          # 'ALTER SYSTEM changes the whole server: not rehearsed on a copy'
    with SharedCatalogs(conn) as guard:    # a second session of ours reads the committed state
        guard.begin(conn); conn.execute("BEGIN"); ... the part's statements ...
        conn.execute("ROLLBACK" if guard.changed(conn) else "COMMIT")   # changed: ('roles',)
"""
from __future__ import annotations

import logging
import re
import time

import psycopg

from bot.pg.connect import describe_pg_error, second_session
from bot.risk.parse import Piece

log = logging.getLogger(__name__)

_WHOLE_SERVER = {
    "AlterSystemStmt": "ALTER SYSTEM changes the whole server",
    "CreatedbStmt": "CREATE DATABASE creates a database on the server",
    "DropdbStmt": "DROP DATABASE drops a database of the server",
    "CreateTableSpaceStmt": "CREATE TABLESPACE creates a tablespace of the server",
    "DropTableSpaceStmt": "DROP TABLESPACE drops a tablespace of the server",
    "AlterDatabaseStmt": "ALTER DATABASE … SET TABLESPACE moves a database of the server",
    "ReindexStmt": "REINDEX SYSTEM/DATABASE rebuilds the server's shared catalog indexes too",
    "CreateSubscriptionStmt": "CREATE SUBSCRIPTION reaches the publisher's server",
    "AlterSubscriptionStmt": "ALTER SUBSCRIPTION reaches the publisher's server",
    "DropSubscriptionStmt": "DROP SUBSCRIPTION reaches the publisher's server",
}
NOT_ON_COPY = ": not rehearsed on a copy"
_SHARED_CATALOGS = {"pg_authid", "pg_auth_members", "pg_database", "pg_db_role_setting", "pg_tablespace", "pg_shdepend",
                    "pg_shdescription", "pg_shseclabel", "pg_replication_origin", "pg_subscription", "pg_parameter_acl"}
_ROLE_DDL = {"CreateRoleStmt": "roles", "AlterRoleStmt": "roles", "DropRoleStmt": "roles",
             "GrantRoleStmt": "role memberships", "AlterRoleSetStmt": "role and database settings",
             "AlterDatabaseSetStmt": "role and database settings", "AlterDatabaseStmt": "databases",
             "AlterDatabaseRefreshCollStmt": "databases", "AlterTableSpaceOptionsStmt": "tablespaces"}
_SHARED_OBJECTS = {"OBJECT_DATABASE": "databases", "OBJECT_ROLE": "roles", "OBJECT_TABLESPACE": "tablespaces",
                   "OBJECT_PARAMETER_ACL": "parameter privileges"}


def alone_refusal(piece: Piece) -> str | None:
    """Why a statement that must run alone (autocommit, so committed at once) is not run on a copy, None when what
    it changes stays in the copy's database: CREATE/DROP INDEX CONCURRENTLY, REINDEX of an index, table or schema,
    VACUUM/ANALYZE, CLUSTER, ALTER TYPE … ADD VALUE, ALTER TABLE … DETACH PARTITION … CONCURRENTLY. An allowlist:
    anything else that must run alone is refused.

    >>> alone_refusal(Piece(index=0, line=1, text="ALTER SYSTEM SET work_mem = '7MB'", node_type="AlterSystemStmt",
    ...                     node={}))
    'ALTER SYSTEM changes the whole server: not rehearsed on a copy'
    """
    kind, n = piece.node_type, piece.node or {}
    if kind == "VacuumStmt" and "full" in {(o.get("DefElem") or {}).get("defname") for o in n.get("options") or ()}:
        rels = [(r.get("VacuumRelation") or {}).get("relation") or {} for r in n.get("rels") or ()]
        if not rels or any(r.get("relname") in _SHARED_CATALOGS for r in rels):  # ACCESS EXCLUSIVE on them
            return "VACUUM FULL of the shared catalogs (pg_authid, pg_database, …) locks them for the whole server" + (
                NOT_ON_COPY)
    if kind == "ReindexStmt" and n.get("kind") == "REINDEX_OBJECT_SCHEMA" and n.get("name") == "pg_catalog":
        return "REINDEX SCHEMA pg_catalog rebuilds the server's shared catalog indexes too" + NOT_ON_COPY
    if kind in ("IndexStmt", "VacuumStmt", "ClusterStmt", "AlterEnumStmt"):
        return None
    if kind == "DropStmt" and n.get("removeType") == "OBJECT_INDEX":
        return None
    if kind == "AlterTableStmt" and n.get("objtype", "OBJECT_TABLE") == "OBJECT_TABLE":
        return None
    if kind == "ReindexStmt" and n.get("kind") in ("REINDEX_OBJECT_INDEX", "REINDEX_OBJECT_TABLE",
                                                   "REINDEX_OBJECT_SCHEMA"):
        return None
    named = re.sub(r"(?<!^)(?=[A-Z])", " ", (kind or "").removesuffix("Stmt")).upper() or "the statement"
    what = _WHOLE_SERVER.get(kind or "") or f"{named} is not known to stay inside the copy's database"
    return what + NOT_ON_COPY


def shared_change(piece: Piece) -> str | None:
    """The server-wide objects a statement names and changes by itself (its parse: roles, a database's settings,
    owner, name or privileges, …), so a transaction holding it is never committed on a copy even where the shared
    catalogs' check cannot see the change (a password in pg_authid, unreadable but to superusers); None for the
    rest, whose hidden changes (a DO block, a function) the check finds.

    >>> shared_change(Piece(index=0, line=1, text="CREATE ROLE app", node_type="CreateRoleStmt", node={}))
    'roles'
    """
    kind, n = piece.node_type or "", piece.node or {}
    if kind in _ROLE_DDL:
        return _ROLE_DDL[kind]
    what = {"RenameStmt": n.get("renameType"), "AlterOwnerStmt": n.get("objectType"), "GrantStmt": n.get("objtype"),
            "CommentStmt": n.get("objtype"), "SecLabelStmt": n.get("objtype")}.get(kind)
    return _SHARED_OBJECTS.get(what or "")


# (what people call it, catalog): the shared catalogs DDL changes (not pg_shdepend, which every object owned by
# a role other than the bootstrap superuser touches)
_CATALOGS = (
    ("roles", "pg_authid"),
    ("roles", "pg_roles"),  # when pg_authid is not readable (not a superuser): all but the password
    ("role memberships", "pg_auth_members"),
    ("databases", "pg_database"),
    ("tablespaces", "pg_tablespace"),
    ("role and database settings", "pg_db_role_setting"),
    ("comments on server-wide objects", "pg_shdescription"),
    ("security labels on server-wide objects", "pg_shseclabel"),
    ("subscriptions", "pg_subscription"),  # readable whole by superusers only
    ("parameter privileges", "pg_parameter_acl"),  # PostgreSQL 15+
)


class SharedCatalogs:
    """Which shared catalogs ``conn``'s open transaction changed: the row versions it sees (their ctid; for the
    pg_roles view, the row's text) are compared with those a second session of ours sees, the committed state. A
    row only it sees was inserted or updated by it, one only the other sees was deleted or updated by it, unless
    another session committed in between: so the rows that differ are read again from both sides, and only those
    still differing the same way count (a row would have to change twice within milliseconds to pass for ours).
    DO blocks and functions are seen through: the catalogs are read, not the SQL. Without a second session, the
    transaction's view is compared with the state read at ``begin`` (a concurrent change then rolls a part back
    needlessly, never the reverse)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        readable = conn.execute("SELECT " + ", ".join(
            f"coalesce(has_table_privilege(to_regclass('pg_catalog.{rel}'), 'SELECT'), false)"
            for _, rel in _CATALOGS)).fetchone()
        picked = [(label, rel) for (label, rel), ok in zip(_CATALOGS, readable)
                  if ok and not (rel == "pg_roles" and readable[0])]
        self.unwatched = sorted(rel for (_, rel), ok in zip(_CATALOGS, readable)
                                if not ok and not (rel == "pg_authid" and readable[1]))
        self.labels = [label for label, _ in picked]
        self.sql = "SELECT " + ", ".join(
            f"(SELECT coalesce(array_agg({'md5(x::text)' if rel == 'pg_roles' else 'ctid::text'}), '{{}}') "
            f"FROM pg_catalog.{rel} x)" for _, rel in picked)
        self.costs_ms: list[float] = []
        self._before: tuple | None = None
        try:
            self._session: psycopg.Connection | None = second_session(conn, "guardian-rehearsal-shared")
        except psycopg.Error as exc:
            log.warning("rehearsal: shared catalogs compared with the state before each part (no second session: %s)",
                        describe_pg_error(exc))
            self._session = None

    def begin(self, conn: psycopg.Connection) -> None:
        """Called before the part's BEGIN: without a second session, the committed state is read now."""
        if self._session is None:
            self._before = conn.execute(self.sql).fetchone()

    def _inside(self, conn: psycopg.Connection) -> list[set[str]]:
        """The rows the open transaction sees, read in a savepoint (a migration's SET ROLE may forbid it)."""
        conn.execute("SAVEPOINT guardian_shared_catalogs")
        try:
            return [set(rows) for rows in conn.execute(self.sql).fetchone()]
        finally:
            conn.execute("ROLLBACK TO SAVEPOINT guardian_shared_catalogs")

    def _outside(self) -> list[set[str]]:
        rows = self._session.execute(self.sql).fetchone() if self._session is not None else self._before
        return [set(r) for r in rows]

    def changed(self, conn: psycopg.Connection) -> tuple[str, ...]:
        """The shared catalogs ``conn``'s open transaction changed (their labels, e.g. ('roles',)); when they
        cannot be read inside it (a migration's SET ROLE), ('shared catalogs (unreadable)',)."""
        started = time.perf_counter()
        try:
            # txid_current_if_assigned: PostgreSQL 10+ (pg_current_xact_id_if_assigned from 13 on)
            (top,) = conn.execute("SELECT txid_current_if_assigned() IS NOT NULL").fetchone()
            if not top or not self.labels:  # no transaction id: it wrote nothing
                return ()
            inside, outside = self._inside(conn), self._outside()
            differing = [(a - b, b - a) for a, b in zip(inside, outside)]
            if any(ins or dels for ins, dels in differing) and self._session is not None:
                inside, outside = self._inside(conn), self._outside()  # still the same way: ours
                differing = [((ins & a) - b, (dels & b) - a) for (ins, dels), a, b in zip(differing, inside, outside)]
            found = {label for label, (ins, dels) in zip(self.labels, differing) if ins or dels}
        except psycopg.Error as exc:
            log.warning("rehearsal: shared catalogs unreadable in the transaction: %s", describe_pg_error(exc))
            found = {"shared catalogs (unreadable)"}
        finally:
            self.costs_ms.append(round((time.perf_counter() - started) * 1000, 3))
        return tuple(sorted(found))

    def __enter__(self) -> "SharedCatalogs":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
