"""Time of `gather_facts` (the catalog facts the Slack preview and `guardian plan` read) on a schema of many tables.

Usage::

    .venv/bin/python bench/facts.py              # --tables 300 --runs 10

Creates a throwaway database with --tables tables (each: 8 columns with defaults and a domain, a primary key, an
expression and a partial index, CHECKs, a foreign key to the previous table, a view on two columns; every tenth a
partitioned table with two partitions, one DEFAULT), then times --runs calls of gather_facts on one connection and
prints the median and max, the number of round trips (one query per kind of fact, whatever the table count) and
the snapshot JSON's size.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from bot.local_services import create_database, drop_database, ensure_postgres  # noqa: E402
from bot.pg.introspect import gather_facts  # noqa: E402


def _schema(tables: int) -> str:
    parts = ["CREATE DOMAIN score AS int CHECK (VALUE >= 0);", "CREATE TYPE mood AS ENUM ('a', 'b');"]
    for i in range(tables):
        fk = f", parent bigint REFERENCES t{i - 1} (id)" if i else ""
        parts.append(
            f"CREATE TABLE t{i} (id bigserial PRIMARY KEY, email varchar(50) NOT NULL, nick text, "
            f"bal numeric(10,2) CHECK (bal >= 0), created timestamptz DEFAULT now(), rating score, "
            f"feeling mood DEFAULT 'a', token uuid DEFAULT gen_random_uuid(){fk});"
            f"CREATE INDEX t{i}_lower_email ON t{i} (lower(email));"
            f"CREATE INDEX t{i}_nick ON t{i} (nick) WHERE nick IS NOT NULL;"
            f"ALTER TABLE t{i} ADD CONSTRAINT t{i}_nick_nn CHECK (nick IS NOT NULL) NOT VALID;"
            f"CREATE VIEW v{i} AS SELECT id, email FROM t{i};")
        if i % 10 == 0:
            parts.append(f"CREATE TABLE p{i} (id int, at date) PARTITION BY RANGE (at);"
                         f"CREATE TABLE p{i}_a PARTITION OF p{i} FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');"
                         f"CREATE TABLE p{i}_rest PARTITION OF p{i} DEFAULT;")
    return "\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=300)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    admin = ensure_postgres(None, Path(tempfile.mkdtemp(prefix="guardian-bench-facts-")))
    name, url = create_database(admin, "guardian_bench_facts")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(_schema(args.tables))
            conn.execute("ANALYZE")
            relations = conn.execute("SELECT count(*) FROM pg_class WHERE relkind IN ('r', 'p', 'm') "
                                     "AND relnamespace = 'public'::regnamespace").fetchone()[0]
            times, facts = [], None
            for _ in range(args.runs):
                start = time.perf_counter()
                facts = gather_facts(conn, "bench")
                times.append(time.perf_counter() - start)
        size = len(json.dumps(facts.to_snapshot()))
        print(f"gather_facts on {relations} tables ({args.tables} plain + partitions), {args.runs} runs: "
              f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms; "
              f"9 queries whatever the table count; snapshot JSON {size / 1024:.0f} KiB")
    finally:
        drop_database(admin, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
