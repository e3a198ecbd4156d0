"""Full pipeline (backup, apply, verify, ledgers) over the documenso corpus vs a raw `psql -1 -f` loop.

Usage::

    .venv/bin/python bench/pipeline.py            # GUARDIAN_CORPUS=/path/to/documenso-prisma to override

Design: ONE request holding all 163 Prisma migrations, the way a new environment is brought up to
date: one backup, 163 transactions (each file with its `_prisma_migrations` and sidecar rows),
one verify. (A backup per migration would dominate and measure pg_dump, not the pipeline.) The
raw baseline runs `psql -X -q -1 -v ON_ERROR_STOP=1 -f migration.sql` once per file into another
fresh database on the same server. Prints both totals, the per-step split and the ratio (target ≤ 1.5x).
Services: GUARDIAN_BENCH_DATABASE_URL / GUARDIAN_BENCH_REDIS_URL, else local ones (or embedded).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from redis import Redis  # noqa: E402
from rq import Queue, SimpleWorker  # noqa: E402

from bench import redis_db  # noqa: E402
from bot.config import BackupConfig, EnvironmentConfig, GuardianConfig, ProjectConfig, Settings  # noqa: E402
from bot.local_services import create_database, drop_database, ensure_postgres, ensure_redis  # noqa: E402
from bot.models import RequestStatus  # noqa: E402
from bot.schema import upgrade  # noqa: E402
from bot.store import NewMigration  # noqa: E402
from workers.enqueue import QUEUE_NAME  # noqa: E402
from workers.pipeline import start_run  # noqa: E402
from workers.runtime import Runtime, install  # noqa: E402
from workers.worker import GuardianSimpleWorker  # noqa: E402

TARGET_RATIO = 1.5
ENV_VAR = "GUARDIAN_BENCH_TARGET_URL"


def corpus() -> Path:
    path = Path(os.environ.get("GUARDIAN_CORPUS") or ROOT.parent / "shared" / "corpus" / "documenso-prisma")
    if not path.is_dir():
        sys.exit(f"corpus not found at {path}; set GUARDIAN_CORPUS to the documenso-prisma folder")
    return path


def psql_binary() -> str:
    found = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    if not os.access(found, os.X_OK):
        sys.exit("psql not found; install postgresql-client")
    return found


def run_guardian(admin: str, redis_url: str, files: list[Path], workdir: Path) -> tuple[float, dict[str, int]]:
    state_name, state_url = create_database(admin, "bench_state")
    target_name, target_url = create_database(admin, "bench_guardian")
    os.environ[ENV_VAR] = target_url
    rt = None
    try:
        upgrade(state_url)
        config = GuardianConfig(
            project=ProjectConfig(layout="prisma"),
            environments={"bench": EnvironmentConfig(name="bench", database_url_env=ENV_VAR)},
            backup=BackupConfig(dir=workdir / "backups"),
        )
        rt = Runtime(settings=Settings(database_url=state_url, redis_url=redis_url), config=config)
        install(rt)
        request = rt.store.create_request(
            "bench", "U0BENCH", [NewMigration(name=f.parent.name, sql=f.read_text(encoding="utf-8"),
                                              path=str(f.relative_to(f.parents[2]))) for f in files],
            source="adhoc", status=RequestStatus.APPROVED, policy_version=rt.flow.policy("bench").version,
        )
        redis = Redis.from_url(redis_url)
        clock = time.perf_counter()
        start_run(rt, request.id, connection=redis)
        GuardianSimpleWorker([Queue(QUEUE_NAME, connection=redis)], connection=redis).work(
            burst=True, logging_level="WARNING")
        total = time.perf_counter() - clock
        done = rt.store.get_request(request.id)
        if done.status is not RequestStatus.SUCCEEDED:
            sys.exit(f"the pipeline did not succeed: {done.status.value} at {done.failed_step}: {done.error}")
        with psycopg.connect(target_url) as conn:
            rows = conn.execute("SELECT count(*) FROM _prisma_migrations WHERE finished_at IS NOT NULL").fetchone()[0]
        if rows != len(files):
            sys.exit(f"expected {len(files)} finished ledger rows, found {rows}")
        steps = {s.step: s.duration_ms or 0 for s in rt.store.list_steps(request.id)}
        return total, steps
    finally:
        install(None)
        drop_database(admin, target_name)
        drop_database(admin, state_name)


def run_raw(admin: str, files: list[Path]) -> float:
    name, url = create_database(admin, "bench_raw")
    psql = psql_binary()
    try:
        clock = time.perf_counter()
        for f in files:
            subprocess.run([psql, "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(f)],
                           check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - clock
    finally:
        drop_database(admin, name)


def main() -> None:
    files = sorted(corpus().glob("*/migration.sql"))
    workdir = Path(tempfile.mkdtemp(prefix="guardian-bench-"))
    admin = ensure_postgres(os.environ.get("GUARDIAN_BENCH_DATABASE_URL"), workdir)
    redis_url = redis_db.reserve(ensure_redis(None, workdir))
    try:
        raw = run_raw(admin, files)
        guardian, steps = run_guardian(admin, redis_url, files, workdir)
    finally:
        redis_db.release(redis_url)
        shutil.rmtree(workdir, ignore_errors=True)
    ratio = guardian / raw
    print(f"corpus: {len(files)} Prisma migrations, one request (one backup, {len(files)} transactions, one verify)")
    print(f"raw psql -1 -f loop : {raw:7.2f} s  ({raw / len(files) * 1000:.0f} ms per file: a psql process and "
          "connection each)")
    print(f"guardian pipeline   : {guardian:7.2f} s  (backup {steps.get('backup', 0) / 1000:.2f} s, "
          f"apply {steps.get('apply', 0) / 1000:.2f} s, verify {steps.get('verify', 0) / 1000:.2f} s)")
    print(f"ratio               : {ratio:7.2f}x  (target <= {TARGET_RATIO}x: {'OK' if ratio <= TARGET_RATIO else 'MISSED'})")


if __name__ == "__main__":
    main()
