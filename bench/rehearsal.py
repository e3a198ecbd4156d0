"""What observing each statement costs the rehearsal: a 50-statement file rehearsed vs run plainly.

Usage::

    .venv/bin/python bench/rehearsal.py                 # 40 tables of 10,000 rows, best of 5
    .venv/bin/python bench/rehearsal.py --tables 200    # the look's cost grows with the relations it reads

A throwaway database (dropped at the end) on GUARDIAN_TEST_DATABASE_URL's server, else 127.0.0.1:5432, gets
`--tables` tables with two indexes each. The file: 50 cheap statements over them (ADD COLUMN, SET DEFAULT,
small UPDATEs, CREATE INDEX, COMMENT, SET NOT NULL), so the observation, not the work, shows. It runs
plainly in a transaction that is rolled back, then through `rehearse()` (one look after each statement, the
previous one serving as its before: locks, relfilenodes, scan counters); the difference per statement is the
overhead. Best (minimum) times, since the machine is usually shared.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from bot.local_services import create_database, drop_database  # noqa: E402
from bot.pg.locks import look  # noqa: E402
from bot.pg.rehearsal import rehearse  # noqa: E402
from bot.sources.statements import split_statements  # noqa: E402

ADMIN = os.environ.get("GUARDIAN_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _schema(tables: int) -> str:
    return "".join(
        f"CREATE TABLE t{i} (id bigint PRIMARY KEY, a int, b text);\n"
        f"INSERT INTO t{i} SELECT g, g, 'x' FROM generate_series(1, 10000) g;\n"
        f"CREATE INDEX t{i}_a_idx ON t{i} (a);\n" for i in range(tables)) + "ANALYZE;\n"


def _file(tables: int) -> str:
    kinds = ("ALTER TABLE t{i} ADD COLUMN c{k} int;", "ALTER TABLE t{i} ALTER COLUMN b SET DEFAULT 'y';",
             "UPDATE t{i} SET a = a WHERE id = {k};", "COMMENT ON TABLE t{i} IS 'bench {k}';",
             "CREATE INDEX t{i}_b{k}_idx ON t{i} (b);")
    return "\n".join(kinds[k % len(kinds)].format(i=k % tables, k=k) for k in range(50)) + "\n"


def _plain(conn: psycopg.Connection, sql: str) -> float:
    started = time.perf_counter()
    with conn.transaction(force_rollback=True):
        for piece in split_statements(sql):
            conn.execute(piece.text.encode("utf-8"))
    return time.perf_counter() - started


def _rehearsed(conn: psycopg.Connection, sql: str) -> float:
    started = time.perf_counter()
    rehearse(conn, [("bench.sql", sql)], reports=[None])
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    name, url = create_database(ADMIN, "rehearse_bench")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(_schema(args.tables))
            sql = _file(args.tables)
            relations = conn.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace").fetchone()[0]
            plain = min(_plain(conn, sql) for _ in range(args.repeat))
            rehearsed = min(_rehearsed(conn, sql) for _ in range(args.repeat))
            with conn.transaction(force_rollback=True):
                looks = []
                for _ in range(200):
                    started = time.perf_counter()
                    look(conn)
                    looks.append(time.perf_counter() - started)
    finally:
        drop_database(ADMIN, name)
    per_statement = (rehearsed - plain) / 50 * 1000
    print(f"50 statements over {args.tables} tables ({relations} relations), best of {args.repeat}")
    print(f"plain run        {plain * 1000:8.1f} ms")
    print(f"rehearse()       {rehearsed * 1000:8.1f} ms   (+{per_statement:.2f} ms per statement)")
    print(f"one look         {min(looks) * 1000:8.2f} ms best, {statistics.median(looks) * 1000:.2f} ms median of 200 "
          "(one per statement)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
