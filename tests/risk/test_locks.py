"""Statement facts: kind, lock mode per relation (strongest wins), rewrite/scan, transactionality."""
from bot.risk import Context, analyze

from risk_helpers import locks


def test_lock_modes_use_postgres_names():
    r = analyze("""
        CREATE INDEX i ON users (email);
        CREATE INDEX CONCURRENTLY IF NOT EXISTS j ON users (name);
        ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;
        ALTER TABLE orders VALIDATE CONSTRAINT fk;
        REFRESH MATERIALIZED VIEW CONCURRENTLY mv;
        REFRESH MATERIALIZED VIEW mv;
        LOCK TABLE accounts IN SHARE MODE;
        UPDATE users SET a = 1 WHERE id = 2;
        CREATE TRIGGER trg AFTER INSERT ON users FOR EACH ROW EXECUTE FUNCTION f();
    """)
    assert locks(r, 0) == {"users": "SHARE"}
    assert locks(r, 1) == {"users": "SHARE UPDATE EXCLUSIVE"}
    assert locks(r, 2) == {"orders": "SHARE ROW EXCLUSIVE", "users": "SHARE ROW EXCLUSIVE"}
    assert locks(r, 3) == {"orders": "SHARE UPDATE EXCLUSIVE"}
    assert locks(r, 4) == {"mv": "EXCLUSIVE"}
    assert locks(r, 5) == {"mv": "ACCESS EXCLUSIVE"}
    assert locks(r, 6) == {"accounts": "SHARE"}
    assert locks(r, 7) == {"users": "ROW EXCLUSIVE"}
    assert locks(r, 8) == {"users": "SHARE ROW EXCLUSIVE"}


def test_strongest_lock_per_relation_wins():
    r = analyze("ALTER TABLE t VALIDATE CONSTRAINT c, ADD COLUMN x int, SET (fillfactor = 70);")
    assert locks(r, 0) == {"t": "ACCESS EXCLUSIVE"}


def test_attach_partition_lock_depends_on_version():
    sql = "ALTER TABLE p ATTACH PARTITION p2 FOR VALUES FROM (1) TO (10);"
    assert locks(analyze(sql, Context(pg_version=16)), 0) == {"p": "SHARE UPDATE EXCLUSIVE", "p2": "ACCESS EXCLUSIVE"}
    assert locks(analyze(sql, Context(pg_version=11)), 0) == {"p": "ACCESS EXCLUSIVE", "p2": "ACCESS EXCLUSIVE"}


def test_partition_locks_as_observed_on_postgres_15():
    """pg_locks on PostgreSQL 15: PARTITION OF takes ACCESS EXCLUSIVE on the parent; DETACH takes it on
    both; DETACH CONCURRENTLY holds SHARE UPDATE EXCLUSIVE on the parent and its second transaction
    waits for ACCESS EXCLUSIVE on the partition; an index ON ONLY the parent takes SHARE on it alone."""
    r = analyze("""
        CREATE TABLE ev_p2 PARTITION OF ev FOR VALUES FROM (100) TO (200);
        ALTER TABLE ev DETACH PARTITION ev_p1;
        ALTER TABLE ev DETACH PARTITION ev_p1 CONCURRENTLY;
        CREATE INDEX ev_v_idx ON ONLY ev (v);
    """, Context(pg_version=15))
    assert locks(r, 0) == {"ev_p2": "ACCESS EXCLUSIVE", "ev": "ACCESS EXCLUSIVE"}
    assert locks(r, 1) == {"ev": "ACCESS EXCLUSIVE", "ev_p1": "ACCESS EXCLUSIVE"}
    assert locks(r, 2) == {"ev": "SHARE UPDATE EXCLUSIVE", "ev_p1": "ACCESS EXCLUSIVE"}
    assert r.statements[2].transactional is False
    assert locks(r, 3) == {"ev": "SHARE"}


def test_enum_add_value_locks_no_table():
    r = analyze("ALTER TYPE mood ADD VALUE 'meh';", Context(pg_version=15))
    assert locks(r, 0) == {}


def test_transactional_flags():
    r = analyze("""
        CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);
        DROP INDEX CONCURRENTLY IF EXISTS i;
        REINDEX TABLE CONCURRENTLY t;
        VACUUM t;
        ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY;
        ALTER TYPE mood ADD VALUE 'meh';
        ANALYZE t;
    """)
    assert [s.transactional for s in r.statements] == [False, False, False, False, False, True, True]
    pg11 = analyze("ALTER TYPE mood ADD VALUE 'meh';", Context(pg_version=11))
    assert pg11.statements[0].transactional is False


def test_rewrite_scan_destructive_and_data_flags():
    r = analyze("""
        ALTER TABLE t ADD COLUMN u uuid DEFAULT gen_random_uuid();
        ALTER TABLE t ADD COLUMN c int DEFAULT 0;
        ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0);
        ALTER TABLE t DROP COLUMN old;
        DELETE FROM t WHERE id = 1;
        VACUUM FULL t;
    """)
    s = r.statements
    assert s[0].rewrite and not s[1].rewrite
    assert s[2].scan and not s[2].rewrite
    assert s[3].destructive and s[3].incompatible
    assert s[4].data_changing and s[4].kind == "DELETE"
    assert s[5].rewrite and s[5].kind == "VACUUM FULL"


def test_positions_are_one_based_in_the_original_file():
    sql = "-- héader comment\n\n  /* x */ SELECT 1;\nSELECT 'é'; ALTER TABLE t ADD COLUMN c int;\n"
    r = analyze(sql)
    assert [(s.line, s.column) for s in r.statements] == [(3, 11), (4, 1), (4, 13)]


def test_queries_take_access_share_on_what_they_read():
    r = analyze("INSERT INTO a (x) SELECT y FROM b JOIN c ON true;\n"
                "WITH w AS (SELECT * FROM e) UPDATE f SET x = w.x FROM w WHERE f.id = w.id;")
    assert locks(r, 0) == {"a": "ROW EXCLUSIVE", "b": "ACCESS SHARE", "c": "ACCESS SHARE"}
    assert locks(r, 1) == {"f": "ROW EXCLUSIVE", "e": "ACCESS SHARE"}


def test_dml_reading_no_other_table_is_not_searched_and_every_read_is_still_found():
    """An INSERT ... VALUES names no table besides its target, and the engine skips searching its tree
    (parse marks it from the parser's JSON); every kind of read elsewhere must still be found."""
    from bot.risk.parse import parse

    sql = ("INSERT INTO a VALUES (1), (2);\n"
           "INSERT INTO a VALUES ('\"RangeVar\":', 'RangeVar');\n"  # the marker's text as SQL strings
           "INSERT INTO a VALUES ((SELECT max(x) FROM c));\n"
           "UPDATE a SET x = b.y FROM b WHERE a.id = b.id;\n"
           "DELETE FROM a WHERE id IN (SELECT id FROM d);\n"
           "UPDATE a SET x = 1 WHERE id = 2;\n")
    assert [s.other_tables for s in parse(sql)] == [False, False, True, True, True, False]
    r = analyze(sql)
    assert [locks(r, i) for i in range(6)] == [
        {"a": "ROW EXCLUSIVE"}, {"a": "ROW EXCLUSIVE"}, {"a": "ROW EXCLUSIVE", "c": "ACCESS SHARE"},
        {"a": "ROW EXCLUSIVE", "b": "ACCESS SHARE"}, {"a": "ROW EXCLUSIVE", "d": "ACCESS SHARE"},
        {"a": "ROW EXCLUSIVE"}]


def test_the_one_classifier_knows_what_postgresql_refuses_in_a_transaction_block():
    """bot.risk.transaction_refusal: the rehearsal's reasons and the reports' transactional flag, one answer."""
    from bot.risk import transaction_refusal
    from bot.risk.parse import split_statements

    refused = {
        "CREATE INDEX CONCURRENTLY i ON t (a)": "CREATE INDEX CONCURRENTLY",
        "REINDEX SYSTEM d": "REINDEX", "VACUUM t": "VACUUM", "CLUSTER": "CLUSTER",
        "CREATE DATABASE d": "CREATE DATABASE", "ALTER SYSTEM SET work_mem = '1MB'": "ALTER SYSTEM",
        "ALTER TABLE p DETACH PARTITION c CONCURRENTLY": "ALTER TABLE",
        # a subscription's replication slot, and moving a database (issue 19)
        "CREATE SUBSCRIPTION s CONNECTION 'host=p' PUBLICATION pub": "CREATE SUBSCRIPTION",
        "CREATE SUBSCRIPTION s CONNECTION 'host=p' PUBLICATION pub WITH (create_slot = true)": "CREATE SUBSCRIPTION",
        "ALTER SUBSCRIPTION s REFRESH PUBLICATION": "ALTER SUBSCRIPTION",
        "ALTER SUBSCRIPTION s ADD PUBLICATION pub": "ALTER SUBSCRIPTION",
        "ALTER SUBSCRIPTION s SET PUBLICATION pub WITH (refresh = on)": "ALTER SUBSCRIPTION",
        "DROP SUBSCRIPTION s": "DROP SUBSCRIPTION",
        "ALTER DATABASE d SET TABLESPACE fast": "ALTER DATABASE SET TABLESPACE",
    }
    allowed = ["CLUSTER t USING i", "ANALYZE t", "REINDEX TABLE t", "CREATE INDEX i ON t (a)",
               "CREATE SUBSCRIPTION s CONNECTION 'host=p' PUBLICATION pub WITH (connect = false)",
               "CREATE SUBSCRIPTION s CONNECTION 'host=p' PUBLICATION pub WITH (create_slot = off)",
               "ALTER SUBSCRIPTION s SET PUBLICATION pub WITH (refresh = false)", "ALTER SUBSCRIPTION s DISABLE",
               "ALTER DATABASE d CONNECTION LIMIT 3", "ALTER DATABASE d SET work_mem = '7MB'"]
    for sql, kind in refused.items():
        (p,) = split_statements(sql)
        assert transaction_refusal(p.node_type, p.node, 16) == f"{kind} cannot run inside a transaction block", sql
        assert analyze(sql).statements[0].transactional is False, sql
    for sql in allowed:
        (p,) = split_statements(sql)
        assert transaction_refusal(p.node_type, p.node, 16) is None, sql
        assert analyze(sql).statements[0].transactional is True, sql
    (p,) = split_statements("ALTER TYPE mood ADD VALUE 'meh'")
    assert transaction_refusal(p.node_type, p.node, 11) and not transaction_refusal(p.node_type, p.node, 12)
