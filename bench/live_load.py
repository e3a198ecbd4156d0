"""Worst application stall while a table-locking migration runs: raw `psql -1 -f` vs Guardian's pipeline.

Usage::

    .venv/bin/python bench/live_load.py                       # --migration add-column|create-index|volatile-default

Each run gets a fresh database with a 200k-row `accounts` table, 4 application threads doing short
point reads and updates (latency of each one recorded), and a "report" session that keeps a 2 s
transaction open on the table every 3 s, the usual cause of lock-queue pile-ups. After a second of
traffic the migration is applied raw (psql, no lock_timeout: it queues behind the report and every
application query queues behind it) or through Guardian (backup, apply with lock_timeout 200ms and
retries with backoff, verify). Prints the worst and p99 application latency while the migration ran.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from redis import Redis  # noqa: E402
from rq import Queue, SimpleWorker  # noqa: E402

from bot.config import BackupConfig, EnvironmentConfig, GuardianConfig, ProjectConfig, Settings  # noqa: E402
from bot.local_services import create_database, drop_database, ensure_postgres, ensure_redis, with_redis_db  # noqa: E402
from bot.models import RequestStatus  # noqa: E402
from bot.schema import upgrade  # noqa: E402
from bot.store import NewMigration  # noqa: E402
from workers.enqueue import QUEUE_NAME  # noqa: E402
from workers.pipeline import start_run  # noqa: E402
from workers.runtime import Runtime, install  # noqa: E402
from workers.worker import GuardianSimpleWorker  # noqa: E402

ROWS = 200_000
ENV_VAR = "GUARDIAN_LIVE_TARGET_URL"
MIGRATIONS = {
    "add-column": "ALTER TABLE accounts ADD COLUMN note text;",
    "create-index": "CREATE INDEX accounts_balance ON accounts (balance);",
    "volatile-default": "ALTER TABLE accounts ADD COLUMN touched_at timestamptz DEFAULT clock_timestamp();",
}


class Load:
    """Application threads (short queries, latencies kept with their start time) and the long report session."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url = url
        self.samples: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._app, daemon=True) for _ in range(threads)]
        self._threads.append(threading.Thread(target=self._report, daemon=True))

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def _app(self) -> None:
        with psycopg.connect(self.url, autocommit=True, application_name="bench-app") as conn:
            while not self._stop.is_set():
                key = random.randint(1, ROWS)
                start = time.monotonic()
                if random.random() < 0.5:
                    conn.execute("SELECT balance FROM accounts WHERE id = %s", (key,)).fetchone()
                else:
                    conn.execute("UPDATE accounts SET balance = balance + 1 WHERE id = %s", (key,))
                with self._lock:
                    self.samples.append((start, time.monotonic() - start))
                time.sleep(0.005)

    def _report(self) -> None:
        with psycopg.connect(self.url, application_name="bench-report") as conn:
            while not self._stop.wait(1.0):
                conn.execute("SELECT sum(balance) FROM accounts").fetchone()
                self._stop.wait(2.0)  # the transaction stays open, holding ACCESS SHARE
                conn.commit()

    def window(self, start: float, end: float) -> list[float]:
        with self._lock:
            return sorted(lat for t, lat in self.samples if start <= t <= end)


def populate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE accounts (id bigint PRIMARY KEY, balance int NOT NULL)")
        conn.execute("INSERT INTO accounts SELECT g, 0 FROM generate_series(1, %s) g", (ROWS,))
        conn.execute("VACUUM ANALYZE accounts")


def apply_raw(url: str, sql: str, workdir: Path) -> None:
    path = workdir / "migration.sql"
    path.write_text(sql)
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    subprocess.run([psql, "-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(path)], check=True)


def apply_guardian(admin: str, url: str, redis_url: str, sql: str, workdir: Path) -> str:
    state_name, state_url = create_database(admin, "live_state")
    os.environ[ENV_VAR] = url
    try:
        upgrade(state_url)
        config = GuardianConfig(
            project=ProjectConfig(layout="sql"),
            environments={"live": EnvironmentConfig(name="live", database_url_env=ENV_VAR, lock_timeout="200ms",
                                                    apply_retries=10)},
            backup=BackupConfig(dir=workdir / "backups", mode="schema"),
        )
        rt = Runtime(settings=Settings(database_url=state_url, redis_url=redis_url), config=config)
        install(rt)
        request = rt.store.create_request("live", "U0BENCH", [NewMigration(name="001_live", sql=sql)],
                                          source="adhoc", status=RequestStatus.APPROVED,
                                          policy_version=rt.flow.policy("live").version)
        redis = Redis.from_url(redis_url)
        start_run(rt, request.id, connection=redis)
        GuardianSimpleWorker([Queue(QUEUE_NAME, connection=redis)], connection=redis).work(
            burst=True, logging_level="WARNING")
        done = rt.store.get_request(request.id)
        retries = sum(s.outcome.get("lock_retries", 0) for s in rt.store.list_steps(request.id))
        return f"{done.status.value}, {retries} lock-timeout retr{'y' if retries == 1 else 'ies'}"
    finally:
        install(None)
        drop_database(admin, state_name)


def run(mode: str, admin: str, redis_url: str, sql: str, workdir: Path) -> tuple[float, float, float, int, str]:
    name, url = create_database(admin, f"live_{mode}")
    try:
        populate(url)
        with Load(url) as load:
            time.sleep(1.5)
            start = time.monotonic()
            note = "applied" if mode == "raw" else apply_guardian(admin, url, redis_url, sql, workdir)
            if mode == "raw":
                apply_raw(url, sql, workdir)
            end = time.monotonic()
            time.sleep(0.5)
        lat = load.window(start, end)
        p99 = lat[int(len(lat) * 0.99) - 1] if lat else 0.0
        return end - start, lat[-1] if lat else 0.0, p99, len(lat), note
    finally:
        drop_database(admin, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--migration", choices=sorted(MIGRATIONS), default="add-column")
    args = parser.parse_args()
    sql = MIGRATIONS[args.migration]
    workdir = Path(tempfile.mkdtemp(prefix="guardian-live-"))
    admin = ensure_postgres(os.environ.get("GUARDIAN_BENCH_DATABASE_URL"), workdir)
    redis_url = os.environ.get("GUARDIAN_BENCH_REDIS_URL") or with_redis_db(ensure_redis(None, workdir), 14)
    try:
        results = {mode: run(mode, admin, redis_url, sql, workdir) for mode in ("raw", "guardian")}
    finally:
        Redis.from_url(redis_url).flushdb()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"migration: {sql}  ({ROWS} rows; 4 app threads; a 2 s report transaction every 3 s)")
    for mode, (took, worst, p99, n, note) in results.items():
        print(f"{mode:9s}: migration took {took:5.2f} s ({note}); app queries during it: {n}, "
              f"worst stall {worst * 1000:7.0f} ms, p99 {p99 * 1000:6.0f} ms")
    raw_worst, g_worst = results["raw"][1], results["guardian"][1]
    print(f"worst-stall ratio raw/guardian: {raw_worst / g_worst if g_worst else float('inf'):.1f}x "
          "(lock_timeout bounds how long the application queues behind a waiting DDL; the DDL's own lock "
          "hold time, e.g. an index build or a rewrite, is the same both ways)")


if __name__ == "__main__":
    main()
