"""Backup step: pg_dump (custom format) of the target before anything changes, checked, recorded, expired on time.

Usage (RQ jobs; start_run enqueues the first)::

    enqueue_step(redis, "backup", request_id)
    cleanup()                              # delete expired backups (the worker's maintenance loop runs it hourly)
    tidy_at_worker_start(config)           # at worker start: 0700 directory, 0600 dumps, no stale partial dump

The step also takes what verify compares against: the schema snapshot, RLS probe results and the
row counts of tables a DML touches, stored in the step's outcome.
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg

from bot.errors import GuardianError
from bot.models import DbState, Request, RequestStatus
from bot.pg.connect import connect_target, scrub
from bot.pg.tools import BackupError, find_pg_dump, libpq_env
from bot.pg.snapshot import take_snapshot
from workers import pipeline
from workers.checks import dml_tables, rls_probe_results, row_counts, touched_tables
from workers.runtime import runtime
from workers.watchdog import application_name

log = logging.getLogger(__name__)

PARTIAL = ".partial"  # <name>.dump.partial while pg_dump writes; renamed to <name>.dump when complete
STALE_AFTER_S = 60.0  # a partial dump untouched this long whose lock nobody holds has no writer left


def run(request_id: int) -> None:
    """The RQ job: queued -> backing_up, dump + check + record, then enqueue apply (or fail, database untouched)."""
    rt = runtime()
    current = rt.store.get_request(request_id)
    if current.status is not RequestStatus.QUEUED:
        log.info("request %s: backup job does nothing: the request is %s", request_id, current.status.value)
        return
    try:
        still_bound = pipeline.revalidate(request_id)
    except GuardianError as exc:  # e.g. the target is unreachable: nothing ran, the database is untouched
        pipeline.fail(rt, request_id, expected=RequestStatus.QUEUED, failed_step="backup", db_state=DbState.UNTOUCHED,
                      error=pipeline.step_error(exc, current.environment, _url_or_empty(rt, current)))
        return
    if not still_bound:
        return
    step = pipeline.begin(rt, request_id, "backup")
    if step is None:
        return
    secret = ""
    try:
        env = rt.config.environment(step.request.environment)
        secret = env.database_url().get_secret_value()
        outcome = take_backup(rt, step.request, env, secret)
    except (GuardianError, psycopg.Error, OSError) as exc:
        if isinstance(exc, OSError):
            exc = BackupError(f"the backup could not be written ({exc.strerror}); check backup.dir and free space")
        pipeline.fail(rt, request_id, expected=RequestStatus.BACKING_UP, failed_step="backup",
                      db_state=DbState.UNTOUCHED, error=pipeline.step_error(exc, step.request.environment, secret),
                      step_id=step.step.id)
        return
    pipeline.succeed(step, outcome, rt.notifier.backup_taken(Path(outcome["path"]).name, outcome["size_bytes"],
                                                             outcome["scope"], outcome["pg_dump_major"],
                                                             outcome["sha256"]))


def _url_or_empty(rt: Any, request: Request) -> str:
    try:
        return rt.config.environment(request.environment).database_url().get_secret_value()
    except GuardianError:
        return ""


def take_backup(rt: Any, request: Request, env: Any, url: str) -> dict[str, Any]:
    """Snapshot + probes + counts (for verify), then the dump; returns the step outcome."""
    with connect_target(url, env.name, application_name=application_name(request.id, "backup")) as conn:
        server_num = conn.info.server_version
        snapshot = take_snapshot(conn, env.name)
        touched = touched_tables(conn, request)
        probes = rls_probe_results(conn, env)
        counts = row_counts(conn, dml_tables(conn, request))
    mode = rt.config.backup.mode
    binary, major = find_pg_dump(server_num // 10000)
    args: list[str] = []
    scope = mode
    if mode == "schema":
        args.append("--schema-only")
    elif mode == "touched":
        if touched:
            args += [f"--table={t}" for t in touched]
        else:  # only new objects: nothing existing to save but the schema
            args.append("--schema-only")
            scope = "schema"
    backup, path, digest, size, duration_ms = write_backup(
        rt, env, url, binary, args, label=f"req{request.id}", scope=scope,
        app=application_name(request.id, "backup"), request_id=request.id)
    log.info("request %s: backup %s written (%s bytes, %s ms, scope %s)", request.id, backup.id, size, duration_ms,
             scope)
    return {"backup_id": backup.id, "path": str(path), "sha256": digest, "size_bytes": size, "scope": scope,
            "dump_ms": duration_ms, "pg_dump_major": major, "server_version_num": server_num,
            "snapshot": snapshot.model_dump(mode="json"), "rls": probes, "row_counts": counts}


def write_backup(rt: Any, env: Any, url: str, binary: str, args: list[str], *, label: str, scope: str, app: str,
                 request_id: int | None = None) -> tuple[Any, Path, str, int, int]:
    """pg_dump (custom format) to <backup dir>/<env>-<label>-<UTC stamp>.dump, checked with
    `pg_restore --list`, recorded with its sha256 and retention: (backup, path, sha256, bytes, dump ms)."""
    backup_dir = private_dir(rt.config.backup.dir)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = backup_dir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', env.name)}-{label}-{stamp}.dump"
    clock = time.monotonic()
    dump(binary, url, path, args, lock_timeout=env.lock_timeout, app=app)
    duration_ms = int((time.monotonic() - clock) * 1000)
    verify_archive(Path(binary).with_name("pg_restore"), path, url)
    digest, size = _sha256(path)
    expires = datetime.now(timezone.utc) + timedelta(days=rt.config.backup.retention_days)
    backup = rt.store.create_backup(env.name, str(path), request_id=request_id, scope=scope, sha256=digest,
                                    size_bytes=size, duration_ms=duration_ms, verified=True, expires_at=expires)
    return backup, path, digest, size, duration_ms


def dump(binary: str, url: str, path: Path, args: list[str], *, lock_timeout: str, app: str) -> None:
    """pg_dump -Fc to ``path`` (written as .partial, renamed when complete); BackupError with scrubbed stderr.

    We create the partial file 0600 and hand it to pg_dump as its stdout, holding an exclusive flock on it:
    pg_dump inherits the open file, so the lock lasts as long as any writer lives, even one whose worker was
    killed, and tidy_backup_dir never removes a dump still being written.
    """
    partial = path.with_name(path.name + PARTIAL)
    cmd = [binary, "--format=custom", "--no-password", f"--lock-wait-timeout={lock_timeout}", *args]
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # a leftover file of the same name keeps its old mode through O_CREAT
        fcntl.flock(fd, fcntl.LOCK_EX)
        proc = subprocess.run(cmd, env=libpq_env(url, app), stdout=fd, stderr=subprocess.PIPE, text=True)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        detail = scrub(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no output", url)
        raise BackupError(f"pg_dump exited with {proc.returncode}: {detail}; fix the cause and retry the request")
    partial.rename(path)


def verify_archive(pg_restore: Path, path: Path, url: str) -> int:
    """`pg_restore --list` must read the archive; returns the number of entries."""
    proc = subprocess.run([str(pg_restore), "--list", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        detail = scrub(proc.stderr.strip()[-300:], url)
        raise BackupError(f"the backup {path.name} is unreadable (pg_restore --list: {detail}); retry the request",
                          code="backup-unreadable")
    return sum(1 for line in proc.stdout.splitlines() if line and not line.startswith(";"))


def private_dir(path: Path | str) -> Path:
    """The backup directory, created 0700 or narrowed to 0700 (dumps hold the whole database)."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        try:
            path.chmod(0o700)
        except OSError as exc:
            raise BackupError(f"the backup directory {path} is open to other users and cannot be narrowed "
                              f"({exc.strerror}); chmod 700 it and retry", code="backup-dir-open") from None
        log.warning("backup directory %s was open to other users; narrowed to 0700", path)
    return path


def tidy_backup_dir(path: Path | str, *, stale_after_s: float = STALE_AFTER_S) -> list[Path]:
    """At worker start: the directory 0700, every dump 0600, and partial dumps nobody writes any more removed.

    A ``*.dump.partial`` is removed only when no process holds its lock (see ``dump``) and it has not been
    written for ``stale_after_s`` (which also covers the instant between a writer creating and locking it).
    Returns the removed files; a directory not made yet is left for the first backup to make.
    """
    if not Path(path).is_dir():
        return []
    path = private_dir(path)
    removed: list[Path] = []
    for file in sorted(path.glob("*.dump")):
        try:
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)
        except FileNotFoundError:
            continue  # expired and deleted meanwhile
        except PermissionError:
            log.warning("backup %s is readable by other users and is not ours to narrow; chmod 600 it", file.name)
    for file in sorted(path.glob(f"*.dump{PARTIAL}")):
        try:
            fd = os.open(file, os.O_RDONLY)
        except FileNotFoundError:
            continue  # its writer finished (renamed it) or failed (removed it) meanwhile
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("partial backup %s is being written by a live pg_dump; kept", file.name)
            continue
        finally:
            os.close(fd)  # closing drops our lock at once
        try:
            age = time.time() - file.stat().st_mtime
        except FileNotFoundError:
            continue
        if age < stale_after_s:
            log.info("partial backup %s was written %.0f s ago; kept", file.name, age)
            continue
        file.unlink(missing_ok=True)
        removed.append(file)
        log.warning("removed partial backup %s left by a dump that never finished", file.name)
    return removed


def tidy_at_worker_start(config: Any) -> None:
    """``tidy_backup_dir`` for a starting worker: a problem is logged (the backup step reports it when it runs)."""
    try:
        tidy_backup_dir(config.backup.dir)
    except (BackupError, OSError) as exc:
        log.warning("backup directory %s could not be tidied: %s", config.backup.dir, exc)


def _sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def cleanup(request_id: int | None = None) -> int:
    """The RQ job: delete expired backups. ``request_id`` is ignored (enqueue_step passes one)."""
    return cleanup_backups(runtime())


def cleanup_backups(rt: Any) -> int:
    """Delete every backup past its expiry (backup.retention_days) and mark it deleted; returns how many.

    A file already gone is marked deleted all the same.
    """
    expired = rt.store.list_backups(expired_at=datetime.now(timezone.utc))
    freed = 0
    for backup in expired:
        path = Path(backup.path)
        try:
            freed += path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            log.info("request %s: backup %s file already gone", backup.request_id, backup.id)
        rt.store.mark_backup_deleted(backup.id)
        log.info("request %s: backup %s expired and deleted", backup.request_id, backup.id)
    if expired:
        rt.notifier.post("backup retention", rt.config.slack.channel, rt.notifier.retention_report(len(expired), freed))
    return len(expired)
