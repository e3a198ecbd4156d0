"""Fleet rollouts: N tenant schemas and M tenant databases, a three-statement migration, 1/2/4 workers, vs psql.

Usage::

    .venv/bin/python bench/fleet.py                          # 500 schemas, 50 databases, 1, 2 and 4 workers
    .venv/bin/python bench/fleet.py --schemas 200 --databases 20 --workers 1,2

Design: two fleet environments on the local server (schema-per-tenant: N schemas of one database;
database-per-tenant: M databases named by url_envs), one Prisma migration of three statements. Per worker count,
both fleets are planned and approved in-process (risk, target set), then `guardian worker` processes (real ones:
forked work horses, the outbox pump, the reconciler) roll both out at once; the clock runs from the approval to
both requests succeeded (backup, canary, waves, verify), and from the first target's start to the last one's end.
Between runs the tenants are reset (the migration's objects dropped, the ledgers emptied). The baseline is a
sequential `psql -X -q -1 -f` loop over the same targets (search_path set per schema). Halt latency: a tenant in
wave 2 is broken, 4 workers roll out, and the targets started after its failure are counted (must be 0).
Services: GUARDIAN_BENCH_DATABASE_URL / GUARDIAN_BENCH_REDIS_URL, else local ones.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import conninfo  # noqa: E402

from bench import redis_db  # noqa: E402
from bot.config import FleetConfig, Settings, load_config  # noqa: E402
from bot.local_services import create_database, drop_database, ensure_postgres, ensure_redis  # noqa: E402
from bot.schema import upgrade  # noqa: E402
from bot.sources.ledgers import PRISMA_DDL  # noqa: E402
from workers.runtime import Runtime, install  # noqa: E402

MIGRATION = ("20240101000000_fleet_bench",
             "CREATE TABLE audit_log (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now());\n"
             "ALTER TABLE accounts ADD COLUMN plan text;\n"
             "CREATE INDEX accounts_plan_idx ON accounts (plan);\n")
RESET = ("DROP TABLE IF EXISTS audit_log; ALTER TABLE accounts DROP COLUMN IF EXISTS plan; "
         "DELETE FROM _prisma_migrations;")
APPROVER, REQUESTER = "U0APPROVER", "U0BENCH"
WORKER = "import sys; from bot.cli import main; sys.exit(main(['worker']))"


def tenant_sql(schema: str) -> str:
    ddl = PRISMA_DDL.replace("CREATE TABLE _prisma_migrations", f'CREATE TABLE "{schema}"._prisma_migrations')
    return (f'CREATE SCHEMA IF NOT EXISTS "{schema}"; CREATE TABLE "{schema}".accounts (id bigint PRIMARY KEY, '
            f'name text); INSERT INTO "{schema}".accounts SELECT g, \'a\' || g FROM generate_series(1, 100) g; {ddl};')


def psql_binary() -> str:
    found = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    if not os.access(found, os.X_OK):
        sys.exit("psql not found; install postgresql-client")
    return found


class Fleet:
    """The bench's databases, repository, config and state."""

    def __init__(self, admin: str, workdir: Path, schemas: int, databases: int, redis_url: str) -> None:
        self.admin, self.workdir, self.redis_url = admin, workdir, redis_url
        self.made: list[str] = []
        name, self.tenants_url = create_database(admin, "bench_fleet_tenants")
        self.made.append(name)
        self.schemas = [f"tenant_{i:04d}" for i in range(1, schemas + 1)]
        with psycopg.connect(self.tenants_url, autocommit=True) as conn:
            for chunk in range(0, schemas, 100):
                conn.execute("\n".join(tenant_sql(s) for s in self.schemas[chunk:chunk + 100]))
        self.shards: dict[str, str] = {}
        for i in range(1, databases + 1):
            name, url = create_database(admin, "bench_fleet_shard")
            self.made.append(name)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(tenant_sql("public"))
            self.shards[f"BENCH_SHARD_{i}_URL"] = url
        name, self.state_url = create_database(admin, "bench_fleet_state")
        self.made.append(name)
        upgrade(self.state_url)
        self.repo = workdir / "app"
        folder = self.repo / "prisma" / "migrations" / MIGRATION[0]
        folder.mkdir(parents=True)
        (folder / "migration.sql").write_text(MIGRATION[1])
        for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                     ["-c", "user.email=b@example.com", "-c", "user.name=bench", "commit", "-qm", "bench"]):
            subprocess.run(["git", "-C", str(self.repo), *args], check=True)
        self.env = {"BENCH_TENANTS_URL": self.tenants_url, **self.shards}
        os.environ.update(self.env)

    def configure(self, halt_after: int = 1) -> Path:
        path = self.workdir / "guardian.toml"
        fleet = ('canary = 1\nwave = "10%"\nparallel = 8\nper_server = 8\n'
                 f'halt_after_failures = {halt_after}\npause = "0s"\n')
        path.write_text(f"""
[project]
repo = "{self.repo}"
layout = "prisma"
path = "prisma/migrations"
[backup]
dir = "{self.workdir / 'backups'}"
[environments.tenants]
database_url_env = "BENCH_TENANTS_URL"
approvers = ["{APPROVER}"]
[environments.tenants.fleet]
schemas = "tenant_*"
{fleet}
[environments.shards]
database_url_env = "BENCH_TENANTS_URL"
approvers = ["{APPROVER}"]
[environments.shards.fleet]
url_envs = {list(self.shards)!r}
{fleet}
""".replace("'", '"'))
        return path

    def reset(self) -> None:
        with psycopg.connect(self.tenants_url, autocommit=True) as conn:
            conn.execute("\n".join(f'SET search_path = "{s}"; {RESET}' for s in self.schemas))
            conn.execute("DROP SCHEMA IF EXISTS guardian CASCADE")  # the sidecar ledger
        for url in self.shards.values():
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(RESET + " DROP SCHEMA IF EXISTS guardian CASCADE")

    def targets(self) -> list[tuple[str, str]]:
        """(url, search_path or '') of every target, for the psql baseline."""
        return [(self.tenants_url, s) for s in self.schemas] + [(u, "") for u in self.shards.values()]

    def drop(self) -> None:
        for name in self.made:
            drop_database(self.admin, name)


def plan_and_approve(rt: Runtime, env: str) -> int:
    request = rt.flow.start_plan(env, REQUESTER, None)
    rt.flow.analyze(request.id)
    request = rt.store.get_request(request.id)
    if request.status.value != "awaiting_approval":
        sys.exit(f"{env}: the plan did not reach approval: {request.status.value}: {request.error}")
    rt.flow.decide(request.id, APPROVER, "approve", shown=request.preview_fingerprint)
    return request.id


def roll_out(fleet: Fleet, config_path: Path, workers: int, break_schema: str | None = None
             ) -> tuple[float, float, list[int], Runtime]:
    """Plan and approve both fleets, run ``workers`` guardian workers until both end; (wall s, targets span s, ids)."""
    settings = Settings(database_url=fleet.state_url, redis_url=fleet.redis_url, guardian_config=config_path)
    rt = Runtime(settings=settings, config=load_config(config_path))
    install(rt)
    ids = []
    clock = time.perf_counter()
    envs = ["tenants"] if break_schema else ["tenants", "shards"]
    for env in envs:
        ids.append(plan_and_approve(rt, env))
    if break_schema:
        with psycopg.connect(fleet.tenants_url, autocommit=True) as conn:
            conn.execute(f'ALTER TABLE "{break_schema}".accounts RENAME TO accounts_moved')
    clock = time.perf_counter()
    env = {**os.environ, **fleet.env, "DATABASE_URL": fleet.state_url, "REDIS_URL": fleet.redis_url,
           "GUARDIAN_CONFIG": str(config_path), "GUARDIAN_LOG_LEVEL": "WARNING"}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER], cwd=ROOT, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(workers)]
    try:
        while True:
            states = [rt.store.get_request(i).status.value for i in ids]
            rollouts = [rt.store.get_rollout(i) for i in ids]
            if all(s in ("succeeded", "failed") for s in states):
                break
            if break_schema and rollouts[0] is not None and rollouts[0].state == "halted" and not any(
                    t.state in ("queued", "running") for t in rt.store.list_fleet_targets(ids[0])):
                break
            time.sleep(0.2)
        wall = time.perf_counter() - clock
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
    rows = [t for i in ids for t in rt.store.list_fleet_targets(i) if t.started_at]
    span = (max(t.finished_at for t in rows if t.finished_at) - min(t.started_at for t in rows)).total_seconds()
    return wall, span, ids, rt


def raw_loop(fleet: Fleet, workdir: Path) -> float:
    script = workdir / "migration.sql"
    script.write_text(MIGRATION[1])
    psql = psql_binary()
    clock = time.perf_counter()
    for url, schema in fleet.targets():
        env = {**os.environ, "PGOPTIONS": f"-c search_path={schema}"} if schema else os.environ
        subprocess.run([psql, "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-d", conninfo.make_conninfo(url),
                        "-f", str(script)], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schemas", type=int, default=500)
    parser.add_argument("--databases", type=int, default=50)
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="guardian-bench-fleet-"))
    admin = ensure_postgres(os.environ.get("GUARDIAN_BENCH_DATABASE_URL"), workdir)
    redis_url = redis_db.reserve(os.environ.get("GUARDIAN_BENCH_REDIS_URL") or ensure_redis(None, workdir))
    fleet = Fleet(admin, workdir, args.schemas, args.databases, redis_url)
    total = args.schemas + args.databases
    results: dict[int, tuple[float, float]] = {}
    try:
        raw = raw_loop(fleet, workdir)
        fleet.reset()
        config = fleet.configure()
        for n in counts:
            wall, span, ids, rt = roll_out(fleet, config, n)
            bad = [i for i in ids if rt.store.get_request(i).status.value != "succeeded"]
            if bad:
                sys.exit(f"{n} worker(s): request(s) {bad} did not succeed")
            results[n] = (wall, span)
            fleet.reset()
            install(None)
        wave = FleetConfig(schemas="tenant_*", wave="10%").wave_size(args.schemas - 1)
        broken = fleet.schemas[min(args.schemas - 1, 1 + wave + 2)]  # a few targets into wave 2
        wall, span, ids, rt = roll_out(fleet, config, max(counts), break_schema=broken)
        rows = rt.store.list_fleet_targets(ids[0])
        failed = next(t for t in rows if t.state == "failed")
        after = [t for t in rows if t.started_at and t.started_at > failed.finished_at]
        in_flight = [t for t in rows if t.started_at and t.started_at <= failed.finished_at
                     and t.finished_at and t.finished_at > failed.finished_at]
        settle = max([(t.finished_at - failed.finished_at).total_seconds() for t in in_flight] or [0.0])
        install(None)
    finally:
        redis_db.release(redis_url)
        fleet.drop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"fleet: {args.schemas} tenant schemas + {args.databases} tenant databases = {total} targets; migration of "
          "3 statements (CREATE TABLE, ADD COLUMN, CREATE INDEX); canary 1, waves of 10%, parallel 8, per_server 8")
    print(f"raw sequential psql -1 -f loop : {raw:7.2f} s  ({total / raw:6.1f} targets/s)")
    base = results[counts[0]][0]
    for n, (wall, span) in results.items():
        print(f"guardian, {n} worker{'s' if n != 1 else ' '}            : {wall:7.2f} s  ({total / wall:6.1f} targets/s; "
              f"targets {span:6.2f} s; {base / wall:4.2f}x vs {counts[0]} worker; {wall / raw:4.2f}x the psql loop)")
    print(f"halt latency ({max(counts)} workers, {failed.target} broken in wave {failed.wave}): {len(after)} "
          f"target(s) started after the failure (must be 0); {len(in_flight)} in flight finished within "
          f"{settle:.2f} s")


if __name__ == "__main__":
    main()
