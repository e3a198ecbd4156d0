"""Frozen values of the sources package: migration files on disk, ledger rows in the target, status."""
from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Layout = Literal["prisma", "supabase", "sql"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Migration(_Frozen):
    """One migration as the tool sees it, read at a pinned commit (or from the working tree).

    ``version`` is what orders and identifies it (Prisma: the timestamp prefix of the folder;
    Supabase: the digits before ``_``; sql: the digits before ``_``); ``ledger_name`` is the key the
    tool's own ledger uses (Prisma: the folder name; Supabase and sql: the version).
    """

    version: str
    name: str
    ledger_name: str
    path: str  # repository-relative, POSIX separators
    sql: str
    sha256: str  # of the exact bytes of the file
    size: int
    down_path: str | None = None
    down_sql: str | None = None
    verify_path: str | None = None
    verify_sql: str | None = None


class SourceSnapshot(_Frozen):
    """Every migration of a project, in the order its tool applies them.

    ``commit`` is the full sha the files were read at, or None when read from the working tree.
    """

    layout: Layout
    repo: str
    folder: str
    ref: str | None = None
    commit: str | None = None
    migrations: tuple[Migration, ...] = ()
    skipped: tuple[str, ...] = ()  # files the tool itself skips, each with the warning it prints

    def get(self, version: str) -> Migration | None:
        return next((m for m in self.migrations if m.version == version or m.ledger_name == version), None)


class LedgerRow(_Frozen):
    """One row of the tool's ledger, normalised across Prisma, Supabase and our schema_history."""

    layout: Layout
    version: str
    name: str | None
    ledger_name: str
    checksum: str | None = None  # Prisma: stored sha256 hex; sql: our sha256; Supabase: none
    statements: tuple[str, ...] | None = None  # Supabase only
    started_at: datetime | None = None
    finished_at: datetime | None = None
    rolled_back_at: datetime | None = None
    logs: str | None = None
    failed: bool = False


class SidecarRow(_Frozen):
    """Our own ledger row (guardian.applied_migrations), written for every layout."""

    layout: Layout
    version: str
    name: str
    sha256: str
    statements_sha256: str | None = None
    request_id: str | None = None
    approvers: tuple[str, ...] = ()
    backup_id: str | None = None
    started_at: datetime
    finished_at: datetime | None = None
    duration_ms: int | None = None
    succeeded: bool = True
    error: str | None = None


class LedgerState(_Frozen):
    """What a target database holds: the tool's ledger rows and all our sidecar rows, oldest first."""

    layout: Layout
    exists: bool
    rows: tuple[LedgerRow, ...] = ()
    sidecar: tuple[SidecarRow, ...] = ()


class MigrationState(str, Enum):
    APPLIED = "applied"
    PENDING = "pending"
    FAILED = "failed"
    MODIFIED = "modified"  # applied, but the file changed since
    MISSING_LOCALLY = "missing_locally"  # applied, no file any more
    OUT_OF_ORDER = "out_of_order"  # pending, but older than the newest applied one


class MigrationStatus(_Frozen):
    version: str
    name: str
    state: MigrationState
    sha256: str | None = None  # of the file, when there is one
    applied_sha256: str | None = None  # what the ledger/sidecar recorded, when known
    applied_at: datetime | None = None
    detail: str | None = None
    ledger_name: str | None = None  # the tool's key (Prisma: the folder name), for the commands we suggest


class StatusReport(_Frozen):
    """The pure result of comparing a snapshot with a ledger; see status.compute_status."""

    layout: Layout
    commit: str | None
    migrations: tuple[MigrationStatus, ...]
    summary: dict[str, int] = Field(default_factory=dict)
    skipped: tuple[str, ...] = ()  # the tool's own skip warnings for files in the folder

    def by_state(self, state: MigrationState) -> tuple[MigrationStatus, ...]:
        return tuple(m for m in self.migrations if m.state == state)


class ApplyResult(_Frozen):
    """Timings of one applied migration file."""

    layout: Layout
    version: str
    ledger_name: str
    started_at: datetime
    finished_at: datetime
    duration_ms: int
