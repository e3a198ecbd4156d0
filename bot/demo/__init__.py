"""The demo project `guardian dev` runs when GUARDIAN_CONFIG is unset: a git repo of Prisma migrations, two seeded databases, a config.

Usage::

    demo = create_demo(admin_url, Path(".guardian/dev"), prefix="guardian")
    os.environ.update(demo.env)                    # the variables the generated config names
    config = load_config(demo.config_path, required=True)
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import psycopg

from bot.errors import GuardianError
from bot.local_services import with_database
from bot.sources.ledgers import PRISMA_DDL, prisma_checksum

ENVIRONMENTS = {"staging": "GUARDIAN_DEMO_STAGING_URL", "production": "GUARDIAN_DEMO_PRODUCTION_URL"}
VERIFY_FAILS_BRANCH = "demo/verify-fails"
# (branch, commit message, migrations added) in the order they are committed.
HISTORY: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("main", "Initial schema: customers and orders", ("20240101000000_init",)),
    ("main", "Customers may have a nickname", ("20240215000000_add_customer_nickname",)),
    ("main", "Index orders by customer for the account page", ("20240301000000_index_orders_by_customer",)),
    (VERIFY_FAILS_BRANCH, "Backfill normalised e-mails (buggy: half the rows)",
     ("20240320000000_backfill_email_normalized",)),
)
BASELINE = "20240101000000_init"  # applied in both databases at start; the rest is pending


class DemoError(GuardianError):
    code = "demo-failed"


@dataclass(frozen=True)
class DevUser:
    id: str
    name: str
    real_name: str
    role: str = "member"

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "real_name": self.real_name, "role": self.role}


@dataclass(frozen=True)
class DemoProject:
    config_path: Path
    repo: Path
    channel: str
    channel_name: str
    users: tuple[DevUser, ...]
    env: dict[str, str] = field(repr=False)  # variable -> target URL (secret-bearing: never print)
    databases: tuple[str, ...] = ()


def _text(name: str) -> str:
    return resources.files("bot.demo").joinpath(name).read_text("utf-8")


def _migration(name: str) -> str:
    return _text(f"migrations/{name}.sql")


def demo_people() -> tuple[str, str, tuple[DevUser, ...]]:
    """(channel id, channel name, users) of the demo workspace."""
    data: dict[str, Any] = json.loads(_text("users.json"))
    users = tuple(DevUser(**u) for u in data["users"])
    return data["channel"]["id"], data["channel"]["name"], users


def _git(repo: Path, *args: str) -> None:
    cmd = ["git", "-c", "user.name=Guardian Demo", "-c", "user.email=demo@guardian.invalid",
           "-c", "commit.gpgsign=false", "-C", str(repo), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DemoError(f"git {args[0]} failed in the demo repository: {proc.stderr.strip()[:300]}")


def create_repo(repo: Path) -> Path:
    """A fresh git repository with the demo's Prisma migrations on main and a branch whose migration fails verify."""
    if shutil.which("git") is None:
        raise DemoError("git is not installed; install it (e.g. `apt-get install git`) and start again")
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text(
        "# Demo shop\n\nMigrations under `prisma/migrations/`, reviewed through Migration Guardian.\n"
        f"Branch `{VERIFY_FAILS_BRANCH}` adds a backfill whose verification fails.\n")
    for branch, message, names in HISTORY:
        if branch != "main":
            _git(repo, "checkout", "-q", "-B", branch)
        for name in names:
            folder = repo / "prisma" / "migrations" / name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "migration.sql").write_text(_migration(name))
            down = resources.files("bot.demo").joinpath(f"migrations/{name}.down.sql")
            if down.is_file():  # Guardian's rollback companion; Prisma ignores it
                (folder / "down.sql").write_text(down.read_text("utf-8"))
        _git(repo, "add", "-A")
        _git(repo, "commit", "-q", "-m", message)
    _git(repo, "checkout", "-q", "main")
    return repo


def _template_marker() -> str:
    material = _migration(BASELINE) + _text("seed.sql") + PRISMA_DDL
    return "guardian-demo " + hashlib.sha256(material.encode()).hexdigest()[:16]


def _ensure_template(admin_url: str, name: str) -> None:
    """A database with the baseline schema, the rows and Prisma's ledger; rebuilt when the templates change."""
    marker = _template_marker()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                           (name,)).fetchone()
        if row is not None and row[0] == marker:
            return
        if row is not None:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        building = f"{name}_build_{uuid.uuid4().hex[:6]}"
        conn.execute(f'CREATE DATABASE "{building}"')
    try:
        baseline = _migration(BASELINE)
        with psycopg.connect(with_database(admin_url, building), autocommit=True) as conn:
            conn.execute(baseline.encode())
            conn.execute(_text("seed.sql").encode())
            conn.execute(PRISMA_DDL)
            conn.execute(
                "INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name, started_at, "
                "applied_steps_count) VALUES (%s, %s, now(), %s, now(), 1)",
                (str(uuid.uuid4()), prisma_checksum(baseline), BASELINE))
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
            conn.execute(f"COMMENT ON DATABASE \"{name}\" IS '{marker}'")
    except BaseException:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
        raise


def create_databases(admin_url: str, prefix: str) -> dict[str, str]:
    """Fresh `<prefix>_demo_staging` and `<prefix>_demo_production`, copied from the seeded template; env name -> URL."""
    template = f"{prefix}_demo_template"
    _ensure_template(admin_url, template)
    urls: dict[str, str] = {}
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for env, variable in ENVIRONMENTS.items():
            name = f"{prefix}_demo_{env}"
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
            urls[variable] = with_database(admin_url, name)
    return urls


def create_demo(admin_url: str, workdir: Path, *, prefix: str = "guardian") -> DemoProject:
    """Everything the demo needs, made afresh in ``workdir`` and on the server behind ``admin_url``."""
    workdir = workdir.resolve()
    repo = create_repo(workdir / "demo-repo")
    env = create_databases(admin_url, prefix)
    channel, channel_name, users = demo_people()
    backups = workdir / "backups"
    backups.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "guardian.toml"
    config_path.write_text(Template(_text("guardian.toml")).safe_substitute(
        REPO=str(repo), BACKUPS=str(backups), CHANNEL=channel,
        REMIND_AFTER=os.environ.get("GUARDIAN_DEV_REMIND_AFTER") or "4h"))
    return DemoProject(config_path=config_path, repo=repo, channel=channel, channel_name=channel_name,
                       users=users, env=env, databases=tuple(f"{prefix}_demo_{e}" for e in ENVIRONMENTS))
