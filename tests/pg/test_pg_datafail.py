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


@pytest.fixture
def casts(make_database):
    with psycopg.connect(make_database(prefix="gt_datafail_cast"), autocommit=True) as c:
        c.execute("CREATE TABLE p (id int PRIMARY KEY, code text, big bigint, born text, nick text)")
        c.execute("INSERT INTO p SELECT g, CASE WHEN g % 7 = 0 THEN 'x' || g ELSE g::text END, "
                  "CASE WHEN g % 10 = 0 THEN 3000000000 + g ELSE g END, "
                  "CASE WHEN g % 25 = 0 THEN '2024-02-30' ELSE '2024-01-' || (1 + g % 28) END, "
                  "CASE WHEN g % 8 = 0 THEN repeat('n', 12) ELSE 'nk' END FROM generate_series(1, 100) g")
        c.execute("CREATE TABLE nokey (v text)")
        c.execute("INSERT INTO nokey VALUES ('1'), ('two'), ('3')")
        yield c


@pytest.mark.parametrize("statement, sqlstate, summary, example", [
    ("ALTER TABLE p ALTER COLUMN code TYPE integer USING code::integer", "22P02",
     "14 rows of p whose code cannot become integer", "id=7, code=x7"),
    ("ALTER TABLE p ALTER COLUMN big TYPE integer", "22003", "10 rows of p whose big cannot become integer",
     "id=10, big=3000000010"),
    ("ALTER TABLE p ALTER COLUMN born TYPE date USING born::date", "22008", "4 rows of p whose born cannot become date",
     "id=25, born=2024-02-30"),
    ("ALTER TABLE p ALTER COLUMN nick TYPE varchar(5)", "22001", "12 rows of p whose nick cannot become varchar(5)",
     "id=8, nick=nnnnnnnnnnnn"),
    ("ALTER TABLE p ALTER COLUMN code TYPE bigint USING (code || big)::bigint * 2", "22P02",
     "14 rows of p whose code cannot become bigint", "id=7, code=x7"),
])
def test_a_failing_cast_counts_the_rows_that_cannot_be_converted_and_shows_five(casts, statement, sqlstate, summary,
                                                                                 example):
    with pytest.raises(psycopg.errors.DataError) as failed:  # PostgreSQL agrees the ALTER fails on this data
        with casts.transaction(force_rollback=True):
            casts.execute(statement)
    assert failed.value.diag.sqlstate == sqlstate
    (found,) = offending_rows(casts, statement)
    assert found.problem == "cast" and found.summary == summary, found
    assert found.examples[0] == example and len(found.examples) == min(5, found.count)
    assert casts.execute("SELECT data_type FROM information_schema.columns WHERE table_name = 'p' AND column_name = %s",
                         (found.columns[0],)).fetchone()[0] in ("text", "bigint")  # nothing changed


def test_a_cast_on_a_table_without_a_key_shows_the_row_by_ctid_and_clean_casts_find_nothing(casts):
    (found,) = offending_rows(casts, "ALTER TABLE nokey ALTER COLUMN v TYPE int USING v::int")
    assert found.count == 1 and found.examples == ("ctid=(0,2), v=two",)
    assert offending_rows(casts, "ALTER TABLE p ALTER COLUMN id TYPE bigint") == ()
    assert offending_rows(casts, "ALTER TABLE p ALTER COLUMN code TYPE text USING upper(code)") == ()


def test_the_rehearsal_reports_a_failing_cast_with_its_rows_as_a_data_failure(casts):
    from bot.pg.connect import connect_target
    from bot.pg.rehearsal import rehearse

    url = casts.info.dsn
    with connect_target(url, "rehearsal") as conn:
        result = rehearse(conn, [("001_code.sql", "ALTER TABLE p ALTER COLUMN code TYPE integer USING code::integer;")])
    ((path, statement),) = result.data_failures
    assert statement.sqlstate == "22P02" and "invalid input syntax for type integer" in statement.error
    (found,) = statement.offending
    assert found.summary == "14 rows of p whose code cannot become integer" and len(found.examples) == 5
