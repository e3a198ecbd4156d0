"""Scratch copies of a target for rehearsals: one database per request, made from the target as a template, the
latest verified backup, or a configured command (a Neon branch, an Aurora clone), and always dropped.

While a copy lives, the process that made it holds a session advisory lock on the target server's maintenance
database, keyed by the request, and (given a registry: the store) the copy is recorded before it is made and
forgotten once dropped. `sweep_recorded` drops the recorded copies whose lock nobody holds (their worker died),
made by any means, a command's branch included; `sweep_copies` drops every ``guardian_copy_<install>_req<id>``
database of this installation whose lock nobody holds, recorded or not. So no copy outlives its rehearsal.

A copy's name and lock carry the installation's id (the store's ``install_id``): two Guardians on one PostgreSQL
server, each with a request #5, make two copies and never wait for or sweep each other's. A copy made without a
store (``guardian plan --rehearse-copy``, the benches) is of installation ``adhoc``.

Usage::

    with copy_of(env, request.id, backups=store.list_backups(), registry=store) as copy:   # guardian_copy_<id>_req<n>
        with connect_target(copy.url, f"{env.name} (copy)") as conn:
            ...
    sweep_recorded(env, store.list_copies(older_than_s=COPY_GRACE_S))   # the reconciler, on every pass
    sweep_copies(env, store.install_id)
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

import psycopg
from psycopg import conninfo, sql
from pydantic import BaseModel, ConfigDict, SecretStr

from bot.config import EnvironmentConfig, RehearsalCopyConfig, parse_duration
from bot.errors import GuardianError
from bot.models import Backup, RehearsalCopyRecord
from bot.pg.connect import connect_target, describe_pg_error, scrub
from bot.pg.tools import find_pg_dump, libpq_env

log = logging.getLogger(__name__)

COPY_PREFIX = "guardian_copy_"
ADHOC_INSTALL = "adhoc"  # copies made without a store: their request ids come from the process id
_INSTALL_ID = "[0-9a-z]{1,16}"  # an installation id: the store's 8 hex digits, or ADHOC_INSTALL
_INSTALL = re.compile(rf"^{_INSTALL_ID}$")
_COPY_NAME = re.compile(rf"^{COPY_PREFIX}(?:(?P<install>{_INSTALL_ID})_)?req(?P<request>\d+)$")
_LOCK_CLASS = 0x67436F70  # pg_advisory_lock(class, request id): the lock of a copy named before installations; "gCop"
_MAINTENANCE_DB = "postgres"
COPY_GRACE_S = 60.0  # a recorded copy younger than this is left alone by the sweep, whoever holds its lock


class CopyRegistry(Protocol):
    """Where copies are recorded while they live (the store: bot/store/copies.py), and whose they are."""

    @property
    def install_id(self) -> str: ...

    def record_copy(self, name: str, request_id: int, environment: str, kind: str, owner: str) -> None: ...

    def clear_copy(self, name: str) -> None: ...


class CopyError(GuardianError):
    code = "copy-failed"


class Copy(BaseModel):
    """A live copy: where its data comes from and how old it is; ``url`` reaches it (never shown)."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: str  # template | backup | command
    source: str  # e.g. "template of appdb", "backup #12", "command"
    taken_at: datetime  # when the data it holds was read from the target
    size_bytes: int | None
    made_s: float  # how long making it took
    max_age_s: float
    stale: bool  # its data was older than the environment's max_age when it was made: may not reflect today's
    url: SecretStr

    def age_s(self, now: datetime | None = None) -> float:
        return ((now or datetime.now(timezone.utc)) - self.taken_at).total_seconds()


    def summary(self) -> dict:
        """What is recorded and shown: source, age and size, never the URL."""
        return {"name": self.name, "kind": self.kind, "source": self.source, "taken_at": self.taken_at.isoformat(),
                "size_bytes": self.size_bytes, "made_s": round(self.made_s, 3), "stale": self.stale}


def copy_name(request_id: int, install: str) -> str:
    """``guardian_copy_<install>_req<id>``: the database (or a command's branch) of one request's copy."""
    if not _INSTALL.match(install):
        raise ValueError(f"an installation id is 1-16 lowercase letters or digits, not {install!r}")
    return f"{COPY_PREFIX}{install}_req{int(request_id)}"


class CopyLock:
    """The session advisory lock held on the server while a copy lives, keyed by its name: one bigint from the
    name's sha256 (copies of this version), or (class, request id) for a copy named before installations."""

    def __init__(self, name: str, request_id: int) -> None:
        match = _COPY_NAME.match(name)
        if match is not None and match.group("install") is None:
            self._args, self._params = "%s, %s", (_LOCK_CLASS, request_id)
        else:
            self._args, self._params = "%s", (int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big",
                                                               signed=True),)

    def take(self, admin: psycopg.Connection) -> None:
        admin.execute(f"SELECT pg_advisory_lock({self._args})", self._params)

    def try_take(self, admin: psycopg.Connection) -> bool:
        return bool(admin.execute(f"SELECT pg_try_advisory_lock({self._args})", self._params).fetchone()[0])

    def release(self, admin: psycopg.Connection) -> None:
        admin.execute(f"SELECT pg_advisory_unlock({self._args})", self._params)


def _with_db(url: str, dbname: str) -> str:
    return conninfo.make_conninfo(url, dbname=dbname)


@contextmanager
def copy_of(env: EnvironmentConfig, request_id: int, *, backups: Sequence[Backup] = (),
            url: str | None = None, registry: CopyRegistry | None = None) -> Iterator[Copy]:
    """A fresh copy of ``env``'s target (or of ``url``) for ``request_id``, dropped on leaving (also when the body
    raises); recorded in ``registry`` before it is made and cleared once dropped, and named after its installation
    (``adhoc`` without a registry)."""
    spec = env.rehearsal
    if spec is None:
        raise CopyError(f"environment {env.name!r} has no [environments.{env.name}.rehearsal] copy configured",
                        code="no-copy")
    url = url or env.database_url().get_secret_value()
    name = copy_name(request_id, registry.install_id if registry is not None else ADHOC_INSTALL)
    lock = CopyLock(name, request_id)
    with connect_target(_with_db(url, _MAINTENANCE_DB), f"{env.name} (server)",
                        application_name=f"guardian-req{request_id}-copy") as admin:
        lock.take(admin)
        started = time.monotonic()
        try:
            if registry is not None:  # before anything exists: a worker killed from here on leaves a record
                registry.record_copy(name, request_id, env.name, spec.kind, f"{socket.gethostname()}:{os.getpid()}")
            if spec.kind == "command":
                copy_url, source, taken = _by_command(spec, name, request_id), "command", datetime.now(timezone.utc)
            else:
                _drop_database(admin, name)  # a leftover of an earlier try of this request
                if spec.kind == "template":
                    source, taken = _by_template(admin, env, url, name)
                else:
                    source, taken = _by_backup(admin, env, spec, url, name, backups, request_id)
                copy_url = _with_db(url, name)
                admin.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    sql.Identifier(name), sql.Literal(json.dumps({"request": request_id, "source": source}))))
            max_age = parse_duration(spec.max_age)
            copy = Copy(name=name, kind=spec.kind, source=source, taken_at=taken,
                        size_bytes=_size(copy_url, env.name), made_s=time.monotonic() - started, max_age_s=max_age,
                        stale=(datetime.now(timezone.utc) - taken).total_seconds() > max_age, url=SecretStr(copy_url))
            log.info("request %s: copy %s made from %s in %.1f s", request_id, name, source, copy.made_s)
            yield copy
        finally:
            try:
                if spec.kind == "command":
                    _drop_by_command(spec, name, request_id)
                else:
                    _drop_database(admin, name)
                if registry is not None:
                    registry.clear_copy(name)
                log.info("request %s: copy %s dropped", request_id, name)
            finally:
                lock.release(admin)


def _by_template(admin: psycopg.Connection, env: EnvironmentConfig, url: str, name: str) -> tuple[str, datetime]:
    target = conninfo.conninfo_to_dict(url).get("dbname") or ""
    taken = datetime.now(timezone.utc)
    try:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(target)))
    except psycopg.errors.ObjectInUse:
        sessions = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (target,)).fetchone()[0]
        raise CopyError(
            f"environment {env.name!r}: PostgreSQL cannot copy database {target} as a template while other sessions "
            f"are connected to it ({sessions} now); use copy = \"backup\" or copy = \"command\" for a database in use",
            code="copy-template-busy") from None
    except psycopg.Error as exc:
        raise CopyError(f"environment {env.name!r}: CREATE DATABASE … TEMPLATE {target} failed: "
                        f"{describe_pg_error(exc, url)}", code="copy-template") from None
    return f"template of {target}", taken


def _by_backup(admin: psycopg.Connection, env: EnvironmentConfig, spec: RehearsalCopyConfig, url: str, name: str,
               backups: Sequence[Backup], request_id: int) -> tuple[str, datetime]:
    usable = [b for b in backups if b.environment == env.name and b.verified and b.scope == "full"
              and b.deleted_at is None and Path(b.path).is_file()]
    if not usable:
        raise CopyError(f"environment {env.name!r} has no verified full backup to restore a copy from; take one "
                        f"with `/migrate backup {env.name}` and plan again", code="copy-no-backup")
    backup = max(usable, key=lambda b: b.created_at)
    pg_restore = str(Path(find_pg_dump(admin.info.server_version // 10000)[0]).with_name("pg_restore"))
    admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    copy_url = _with_db(url, name)
    done = subprocess.run(
        [pg_restore, "--no-owner", "--no-privileges", "--exit-on-error", f"--jobs={spec.jobs}", f"--dbname={name}",
         backup.path], env=libpq_env(copy_url, f"guardian-req{request_id}-copy"), capture_output=True, text=True)
    if done.returncode != 0:
        raise CopyError(f"restoring backup #{backup.id} into a copy failed: {scrub(done.stderr.strip()[-300:], url)}",
                        code="copy-restore")
    return f"backup #{backup.id}", backup.created_at


def _run_command(command: str, name: str, request_id: int, copy_url: str | None = None) -> str:
    env = {**os.environ, "GUARDIAN_COPY_NAME": name, "GUARDIAN_REQUEST_ID": str(request_id)}
    if copy_url:
        env["GUARDIAN_COPY_URL"] = copy_url
    done = subprocess.run(command, shell=True, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise CopyError(f"the copy command exited {done.returncode}: "
                        f"{scrub(done.stderr.strip()[-300:], *(s for s in (copy_url,) if s))}", code="copy-command")
    return done.stdout


def _by_command(spec: RehearsalCopyConfig, name: str, request_id: int) -> str:
    lines = [line.strip() for line in _run_command(spec.command or "", name, request_id).splitlines() if line.strip()]
    if not lines:
        raise CopyError("the copy command printed no URL on stdout; it must print the new copy's database URL",
                        code="copy-command")
    return lines[-1]


def _drop_by_command(spec: RehearsalCopyConfig, name: str, request_id: int) -> None:
    _run_command(spec.drop_command or "", name, request_id)


def _drop_database(admin: psycopg.Connection, name: str) -> None:
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def _size(url: str, label: str) -> int | None:
    with connect_target(url, f"{label} (copy)") as conn:
        return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]


def sweep_copies(env: EnvironmentConfig, install: str) -> list[str]:
    """Drop installation ``install``'s copies on ``env``'s server whose maker is gone (nobody holds their lock), and
    those named before installations (``guardian_copy_req<id>``); their names. Other installations' are left."""
    if env.rehearsal is None or env.rehearsal.kind == "command":
        return []
    url = env.database_url().get_secret_value()
    dropped = []
    with connect_target(_with_db(url, _MAINTENANCE_DB), f"{env.name} (server)",
                        application_name="guardian-copy-sweep") as admin:
        names = [r[0] for r in admin.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (COPY_PREFIX.replace("_", r"\_") + "%",))]
        for name in names:
            match = _COPY_NAME.match(name)
            if not match or match.group("install") not in (install, None):
                continue
            request_id = int(match.group("request"))
            lock = CopyLock(name, request_id)
            if not lock.try_take(admin):
                continue  # its rehearsal is running
            try:
                _drop_database(admin, name)
                dropped.append(name)
                log.warning("request %s: copy %s left by a worker that died: dropped", request_id, name)
            finally:
                lock.release(admin)
    return dropped



def sweep_recorded(env: EnvironmentConfig, records: Iterable[RehearsalCopyRecord]) -> list[str]:
    """Drop ``env``'s recorded copies whose maker is gone (nobody holds their lock): a database dropped, a command's
    copy by its drop_command. Returns the names dropped (their records are the caller's to clear); a copy that
    cannot be dropped now is logged and left for the next pass."""
    mine = [r for r in records if r.environment == env.name]
    if not mine or env.rehearsal is None:
        return []
    url = env.database_url().get_secret_value()
    dropped = []
    with connect_target(_with_db(url, _MAINTENANCE_DB), f"{env.name} (server)",
                        application_name="guardian-copy-sweep") as admin:
        for record in mine:
            lock = CopyLock(record.name, record.request_id)
            if not lock.try_take(admin):
                continue  # its rehearsal is running
            try:
                if record.kind == "command":
                    _drop_by_command(env.rehearsal, record.name, record.request_id)
                else:
                    _drop_database(admin, record.name)
                dropped.append(record.name)
                log.warning("request %s: copy %s (%s) left by a worker that died (%s): dropped", record.request_id,
                            record.name, record.kind, record.owner)
            except (CopyError, psycopg.Error, subprocess.SubprocessError) as exc:
                log.warning("request %s: copy %s left by a dead worker could not be dropped yet: %s",
                            record.request_id, record.name, getattr(exc, "message", None) or describe_pg_error(exc))
            finally:
                lock.release(admin)
    return dropped
