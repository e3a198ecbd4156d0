"""bot/pg/datafail.py: the rows that make a statement fail, found from the statement itself on real data."""
from __future__ import annotations

import psycopg
import pytest

from bot.pg.datafail import offending_rows


@pytest.fixture
def conn(make_database):
    with psycopg.connect(make_database(prefix="gt_datafail"), autocommit=True) as c:
        c.execute("CREATE TABLE orgs (id int PRIMARY KEY)")
        c.execute("INSERT INTO orgs SELECT generate_series(1, 3)")
        c.execute("CREATE TABLE u (id int, email text, age int, org int)")
        c.execute("INSERT INTO u SELECT g, CASE WHEN g % 3 = 0 THEN 'dup@x' WHEN g % 5 = 0 THEN NULL ELSE 'e' || g END, "
                  "g - 5, g % 4 FROM generate_series(1, 20) g")
        yield c


@pytest.mark.parametrize("statement, summary, example", [
    ("CREATE UNIQUE INDEX i ON u (email)", "1 duplicated (email) in u, 6 rows", "email=dup@x ×6"),
    ("CREATE UNIQUE INDEX i ON u (lower(email)) WHERE id > 10", "1 duplicated (lower(email)) in u, 3 rows", "lower=dup@x ×3"),
    ("ALTER TABLE u ALTER COLUMN email SET NOT NULL", "3 rows of u with email NULL", "id=5, email=NULL, age=0, org=1"),
    ("ALTER TABLE u ADD CONSTRAINT c CHECK (age > 0)", "5 rows of u violate CHECK (age > 0)", "id=1, email=e1, age=-4, org=1"),
    ("ALTER TABLE u ADD CONSTRAINT u_key UNIQUE (org)", "4 duplicated (org) in u, 20 rows", "×5"),
    ("ALTER TABLE u ADD CONSTRAINT f FOREIGN KEY (org) REFERENCES orgs (id)", "5 rows of u whose (org) match no referenced row",
     "org=0"),
])
def test_offending_rows_are_counted_and_shown(conn, statement, summary, example):
    with pytest.raises(psycopg.errors.IntegrityError):  # PostgreSQL agrees the statement fails on this data
        with conn.transaction(force_rollback=True):
            conn.execute(statement)
    (found,) = offending_rows(conn, statement)
    assert found.summary == summary and any(example in e for e in found.examples) and len(found.examples) <= 3


def test_clean_data_and_other_statements_find_nothing(conn):
    assert offending_rows(conn, "CREATE UNIQUE INDEX i ON u (id)") == ()
    assert offending_rows(conn, "ALTER TABLE u ADD COLUMN x int") == ()
    assert offending_rows(conn, "CREATE UNIQUE INDEX i ON missing_table (id)") == ()


def test_long_values_are_clipped(conn):
    conn.execute("INSERT INTO u (id, email) SELECT 99, repeat('z', 500) FROM generate_series(1, 2)")
    (found,) = offending_rows(conn, "CREATE UNIQUE INDEX i ON u (email) WHERE id = 99")
    assert found.examples[0].startswith("email=zzz") and len(found.examples[0]) < 60
