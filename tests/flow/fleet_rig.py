"""A fleet on the real server: a database of tenant schemas and a few tenant databases, each a baselined Prisma
target (its own _prisma_migrations next to an accounts table)."""
from __future__ import annotations

import hashlib
import uuid

import psycopg

from bot.sources.ledgers import PRISMA_DDL

FLEET_TOML = """
[environments.tenants]
database_url_env = "GT_TENANTS_URL"
approvers = ["U_A", "U_B"]
approvals = { low = 1, medium = 1, high = 1, critical = 1 }
[environments.tenants.fleet]
schemas = "tenant_*"
canary = 1
wave = %(wave)s
parallel = %(parallel)s
per_server = %(per_server)s
halt_after_failures = 1
pause = "0s"
%(health)s

[environments.shards]
database_url_env = "GT_TENANTS_URL"
approvers = ["U_A", "U_B"]
approvals = { low = 1, medium = 1, high = 1, critical = 1 }
[environments.shards.fleet]
url_envs = ["GT_SHARD_1_URL", "GT_SHARD_2_URL", "GT_SHARD_3_URL", "GT_SHARD_GONE_URL"]
canary = 1
wave = 2
pause = "0s"
"""


def fleet_toml(*, wave: str = "25", parallel: int = 8, per_server: int = 4, health: str | None = None) -> str:
    return FLEET_TOML % {"wave": wave, "parallel": parallel, "per_server": per_server,
                         "health": f'health_query = "{health}"' if health else ""}


def tenant_sql(schema: str) -> str:
    """One baselined Prisma tenant: its schema, an accounts table with rows, and an empty _prisma_migrations."""
    ddl = PRISMA_DDL.replace("CREATE TABLE _prisma_migrations", f'CREATE TABLE "{schema}"._prisma_migrations')
    return (f'CREATE SCHEMA "{schema}"; CREATE TABLE "{schema}".accounts (id bigint PRIMARY KEY, name text);'
            f'INSERT INTO "{schema}".accounts SELECT g, \'a\' || g FROM generate_series(1, 20) g; {ddl};')


def make_schemas(url: str, count: int, prefix: str = "tenant_") -> list[str]:
    names = [f"{prefix}{i:03d}" for i in range(1, count + 1)]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("\n".join(tenant_sql(n) for n in names))
    return names


def make_tenant_database(make_database) -> str:
    url = make_database(prefix="gt_fleet_shard")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(tenant_sql("public").replace('CREATE SCHEMA "public";', ""))
    return url


def mark_applied(url: str, schema: str, name: str, sql: str, *, checksum: str | None = None) -> None:
    """Record ``name`` in a tenant's _prisma_migrations as Prisma would after applying it."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f'INSERT INTO "{schema}"._prisma_migrations (id, checksum, migration_name, started_at, finished_at, '
            "applied_steps_count) VALUES (%s, %s, %s, now(), now(), 1)",
            (str(uuid.uuid4()), checksum or hashlib.sha256(sql.encode()).hexdigest(), name))


def applied_names(url: str, schema: str = "public") -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [r[0] for r in conn.execute(
            f'SELECT migration_name FROM "{schema}"._prisma_migrations WHERE finished_at IS NOT NULL '
            "AND rolled_back_at IS NULL ORDER BY migration_name").fetchall()]


def tenant_schemas(harness, make_database, monkeypatch, migrations, count: int = 120) -> tuple[str, list[str]]:
    """A database of ``count`` tenant schemas named by GT_TENANTS_URL, and ``migrations`` committed to the repo."""
    url = make_database(prefix="gt_fleet_tenants")
    monkeypatch.setenv("GT_TENANTS_URL", url)
    schemas = make_schemas(url, count)
    for migration in migrations:
        harness.add_migration(*migration)
    return url, schemas
