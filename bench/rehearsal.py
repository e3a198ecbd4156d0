"""What observing each statement costs the rehearsal: a 50-statement file rehearsed vs run plainly; and how well a
rehearsal on a copy predicts the real run (duration, lock hold time) and how long it delays the preview.

Usage::

    .venv/bin/python bench/rehearsal.py                 # 40 tables of 10,000 rows, best of 5
    .venv/bin/python bench/rehearsal.py --tables 200    # the look's cost grows with the relations it reads
    .venv/bin/python bench/rehearsal.py --rows 1000000  # plus predicted vs actual on a 1 M-row table (0: skip)

Predicted vs actual: a table of ``--rows`` rows; for a rewrite (ALTER COLUMN TYPE) and an index build, a
template copy of the target is made and the file rehearsed on it with ``rehearse(commit=True)`` (what the
preview shows), then the file runs on the target itself in one transaction with the environment's timeouts, as
the apply's fast path sends it, timed from the client: duration of the statement, and its locks' hold time
from its start to the commit's end.

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
from bot.risk.parse import split_statements  # noqa: E402

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


ROWS_SCHEMA = ("CREATE TABLE big (id bigint PRIMARY KEY, a int NOT NULL, b text NOT NULL);\n"
               "INSERT INTO big SELECT g, g % 1000, md5(g::text) FROM generate_series(1, {rows}) g;\nANALYZE big;\n")
PREDICTED = (("rewrite", "ALTER TABLE big ALTER COLUMN a TYPE bigint;\n"),
             ("index build", "CREATE INDEX big_b_idx ON big (b);\n"))


def _actual(url: str, sql: str) -> tuple[float, float]:
    """(duration, hold) in ms of the file run on the target in one committed transaction with local timeouts."""
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("SELECT set_config('lock_timeout', '3s', true), set_config('statement_timeout', '15min', true)")
            started = time.perf_counter()
            conn.execute(sql.encode("utf-8"))
            ran = time.perf_counter()
        committed = time.perf_counter()
    return (ran - started) * 1000, (committed - started) * 1000


def _predicted_vs_actual(rows: int) -> None:
    from bot.config import EnvironmentConfig, RehearsalCopyConfig
    from bot.pg.copy import copy_of

    name, url = create_database(ADMIN, "rehearse_bench_big")
    os.environ["GUARDIAN_BENCH_TARGET_URL"] = url
    env = EnvironmentConfig(name="bench", database_url_env="GUARDIAN_BENCH_TARGET_URL",
                            rehearsal=RehearsalCopyConfig(copy="template"))
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(ROWS_SCHEMA.format(rows=rows))
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        print(f"\npredicted (rehearsal on a template copy, committed) vs actual (the target), {rows:,} rows, "
              f"{size / 1e6:.0f} MB")
        print(f"{'migration':<12} {'pred ms':>9} {'act ms':>9} {'err':>6}   {'pred hold':>9} {'act hold':>9} {'err':>6}"
              f"   {'copy s':>6} {'adds s':>6}")
        for label, sql in PREDICTED:
            started = time.perf_counter()
            with copy_of(env, 900_000_000 + os.getpid() % 1_000_000) as copy:
                with psycopg.connect(copy.url.get_secret_value(), autocommit=True) as conn:
                    result = rehearse(conn, [("bench.sql", sql)], lock_timeout="3s", statement_timeout="15min",
                                      commit=True)
            adds = time.perf_counter() - started
            (st,) = result.files[0].statements
            duration, hold = _actual(url, sql)
            print(f"{label:<12} {st.duration_ms:9.0f} {duration:9.0f} {(st.duration_ms / duration - 1) * 100:+5.0f}%"
                  f"   {st.held_ms:9.0f} {hold:9.0f} {(st.held_ms / hold - 1) * 100:+5.0f}%   {copy.made_s:6.1f} {adds:6.1f}")
    finally:
        drop_database(ADMIN, name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the predicted-vs-actual table (0: skip)")
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
    if args.rows:
        _predicted_vs_actual(args.rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
