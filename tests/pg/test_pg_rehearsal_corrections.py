"""`guardian plan`: what the rehearsal saw raises or lowers the static verdict, on tables of 150,000 rows
(the engine's size scale: at least 100,000 rows keeps a rule's severity), and its locks join the statement's."""
from __future__ import annotations

import json

import psycopg
import pytest

from bot.cli import main
from bot.local_services import create_database, drop_database

ROWS = 150_000
_SCHEMA = f"""
CREATE TABLE members (id bigint PRIMARY KEY, email varchar(50) NOT NULL, nick varchar(50), handle varchar(50));
INSERT INTO members SELECT g, 'm' || g || '@example.com', 'n' || g, 'h' || g FROM generate_series(1, {ROWS}) g;
CREATE INDEX members_lower_email_idx ON members (lower(email));
CREATE INDEX members_nick_idx ON members (nick);
CREATE VIEW member_handles AS SELECT id, handle FROM members;
CREATE TABLE orders (id bigint PRIMARY KEY, x int, y int, note text);
INSERT INTO orders SELECT g, g, g, 'n' FROM generate_series(1, {ROWS}) g;
ALTER TABLE orders ADD CONSTRAINT orders_x_not_null CHECK (x IS NOT NULL);
ALTER TABLE orders ADD CONSTRAINT orders_y_not_null CHECK (y IS NOT NULL) NOT VALID;
CREATE FUNCTION index_orders_note() RETURNS void LANGUAGE plpgsql AS $$
BEGIN CREATE INDEX orders_note_idx ON orders (note); END $$;
CREATE FUNCTION widen_member_email() RETURNS void LANGUAGE plpgsql AS $$
BEGIN ALTER TABLE members ALTER COLUMN email TYPE varchar(200); END $$;
ANALYZE;
"""


@pytest.fixture(scope="module")
def big_db(pg_admin_url):
    """Every test rehearses (always rolled back), so one populated database serves the module."""
    name, url = create_database(pg_admin_url, "rehearse_corr")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(_SCHEMA)
        yield url
    finally:
        drop_database(pg_admin_url, name)


@pytest.fixture
def plan(big_db, tmp_path, monkeypatch, capsys):
    """`guardian plan --env staging --format json` of files in order, judged as Guardian applies them:
    (exit, entry per file)."""
    monkeypatch.setenv("RC_STAGING_URL", big_db)
    config = tmp_path / "guardian.toml"
    config.write_text(f'[project]\nrepo = "{tmp_path}"\n\n[environments.staging]\ndatabase_url_env = "RC_STAGING_URL"\n')
    monkeypatch.setenv("GUARDIAN_CONFIG", str(config))

    def run(*files: str) -> tuple:
        paths = []
        for n, sql in enumerate(files, 1):
            paths.append(tmp_path / f"{n:03}_change.sql")
            paths[-1].write_text(sql)
        code = main(["plan", "--env", "staging", "--format", "json", *map(str, paths)])
        return code, *json.loads(capsys.readouterr().out)["files"]
    return run


def _found(entry: dict, code: str) -> list[dict]:
    return [f for f in entry["findings"] if f["code"] == code]


def test_an_expression_index_rebuilt_by_a_widening_is_raised_and_its_plain_twin_is_low(plan):
    _, entry = plan("ALTER TABLE members ALTER COLUMN email TYPE varchar(200);\n")
    (stmt,) = entry["statements"]
    assert stmt["rebuilt_indexes"] == [{"index": "members_lower_email_idx", "table": "members", "lock": "ACCESS EXCLUSIVE"}]
    assert stmt["rewrites"] == [] and stmt["scans"][0]["relation"] == "members" and stmt["scans"][0]["seq_scans"] >= 1
    # the catalog facts may already name the rebuild; if not, the rehearsal does (MG942): once, and high
    (named,) = [f for f in entry["findings"] if "members_lower_email_idx" in f["message"]]
    assert named["severity"] == "high" and entry["risk"] in ("high", "critical") and "~150,000 rows" in named["message"]

    _, twin = plan("ALTER TABLE members ALTER COLUMN nick TYPE varchar(200);\n")  # a plain index keeps its storage
    assert not _found(twin, "MG942") and twin["statements"][0]["rebuilt_indexes"] == []
    assert twin["statements"][0]["scans"] == [] and twin["risk"] == "low"


def test_a_rebuild_only_the_rehearsal_sees_is_raised(plan):
    _, entry = plan("SELECT widen_member_email();\n")  # the analysis cannot read the function's ALTER TABLE
    (rebuilt,) = _found(entry, "MG942")
    assert rebuilt["severity"] == "high" and rebuilt["statement"] == 0 and "~150,000 rows" in rebuilt["message"]
    assert "members_lower_email_idx on members" in rebuilt["message"] and "ACCESS EXCLUSIVE" in rebuilt["message"]


def test_set_not_null_after_the_check_is_validated_is_lowered_with_the_observation(plan):
    """The recipe: VALIDATE the NOT VALID CHECK in one migration, SET NOT NULL in the next. Each file is
    analysed alone (the catalog still says NOT VALID, so MG208 is high); the rehearsal runs them in order and
    sees SET NOT NULL read nothing."""
    _, validate, entry = plan("ALTER TABLE orders VALIDATE CONSTRAINT orders_y_not_null;\n",
                              "ALTER TABLE orders ALTER COLUMN y SET NOT NULL;\n")
    assert validate["statements"][0]["scans"][0]["lock"] == "SHARE UPDATE EXCLUSIVE"  # writes go on: no MG943
    assert not _found(validate, "MG943")
    assert entry["statements"][0]["scans"] == [] and entry["risk"] == "low"
    (lowered,) = _found(entry, "MG208")
    assert lowered["severity"] == "low" and "lowered from high to low" in lowered["message"]
    assert lowered["message"].startswith("rehearsal: no rewrite, no index build and no scan of orders (~150,000 rows)")

    _, twin = plan("ALTER TABLE orders ALTER COLUMN y SET NOT NULL;\n")  # still NOT VALID: PostgreSQL scans
    (scan,) = twin["statements"][0]["scans"]
    assert scan["relation"] == "orders" and scan["seq_scans"] == 1 and scan["lock"] == "ACCESS EXCLUSIVE"
    assert [f["severity"] for f in _found(twin, "MG208")] == ["high"] and twin["risk"] == "high"


def test_a_failing_statement_is_critical_with_postgresqls_message(plan):
    code, entry = plan("ALTER TABLE orders ADD CONSTRAINT orders_x_small CHECK (x < 1000);\n")  # rows break it
    (failed,) = _found(entry, "MG945")
    assert failed["severity"] == "critical" and entry["risk"] == "critical" and code == 1
    assert 'check constraint "orders_x_small" of relation "orders" is violated by some row' in failed["message"]
    assert "SQLSTATE 23514" in failed["message"] and failed["statement"] == 0
    assert [f["severity"] for f in _found(entry, "MG202")] == ["high"]  # what the SQL alone says: a scan

    code, view = plan("ALTER TABLE members ALTER COLUMN handle TYPE varchar(200);\n")  # member_handles selects it
    assert view["risk"] == "critical" and code == 1 and "used by a view" in view["statements"][0]["error"]
    assert len([f for f in view["findings"] if f["severity"] == "critical"]) == 1  # the facts' or MG945, not both


def test_drop_index_concurrently_is_probed_for_its_failure(plan, big_db):
    code, entry = plan("DROP INDEX CONCURRENTLY orders_note_x_idx;\n")  # no such index on the target
    (failed,) = _found(entry, "MG945")
    assert failed["severity"] == "critical" and code == 1 and 'index "orders_note_x_idx" does not exist' in failed["message"]
    stmt = entry["statements"][0]
    assert not stmt["rehearsed"] and "its plain twin failed" in stmt["reason"] and "42704" in stmt["error"]
    code, pkey = plan("DROP INDEX CONCURRENTLY orders_pkey;\n")  # backs the primary key
    assert code == 1 and "because constraint orders_pkey on table orders requires it" in pkey["statements"][0]["error"]
    assert len([f for f in pkey["findings"] if f["severity"] == "critical"]) == 1  # the catalog's or MG945, not both
    code, twin = plan("DROP INDEX CONCURRENTLY members_nick_idx;\n")
    assert code == 0 and twin["statements"][0]["error"] is None and not _found(twin, "MG945")
    with psycopg.connect(big_db) as conn:  # the probe's drop was rolled back with its savepoint
        assert conn.execute("SELECT to_regclass('members_nick_idx') IS NOT NULL").fetchone() == (True,)


def test_every_observed_lock_joins_the_statements_locks_marked_observed(plan):
    _, entry = plan("ALTER TABLE members ALTER COLUMN email TYPE varchar(200); SELECT count(*) FROM orders;\n")
    alter, select = entry["statements"]
    assert (alter["index"], select["index"]) == (0, 1) and alter["line"] == select["line"] == 1
    for stmt in (alter, select):
        listed = {(lk["relation"], lk["mode"]) for lk in stmt["locks"]}
        assert {(lk["relation"], lk["mode"]) for lk in stmt["observed_locks"]} <= listed
    predicted = [lk for lk in alter["locks"] if not lk.get("observed")]
    assert {"relation": "members", "mode": "ACCESS EXCLUSIVE"} in predicted
    extra = [lk for lk in alter["locks"] if lk.get("observed")]
    assert {"relation": "members_lower_email_idx", "mode": "ACCESS EXCLUSIVE", "observed": True} in extra
    assert {(lk["relation"], lk["mode"]) for lk in extra}.isdisjoint({(lk["relation"], lk["mode"]) for lk in predicted})
    assert select["scans"][0]["relation"] == "orders" and not _found(entry, "MG943")  # ACCESS SHARE only: no finding


def test_a_data_loss_finding_is_never_lowered(plan):
    _, entry = plan("ALTER TABLE orders DROP COLUMN note;\n")
    stmt = entry["statements"][0]
    assert stmt["rehearsed"] and stmt["scans"] == [] and stmt["rewrites"] == []  # nothing observable happened
    (dropped,) = _found(entry, "MG502")
    assert dropped["severity"] == "high" and not dropped["message"].startswith("rehearsal:")


def test_a_scan_under_a_lock_taken_earlier_is_raised(plan):
    _, entry = plan("ALTER TABLE orders ADD COLUMN z int;\nSELECT count(*) FROM orders WHERE z IS NULL;\n")
    (scan,) = _found(entry, "MG943")
    assert scan["statement"] == 1 and scan["severity"] == "high"
    assert "orders read in full (1 sequential scan" in scan["message"] and "ACCESS EXCLUSIVE on orders" in scan["message"]


def test_an_index_built_by_a_function_is_raised_and_can_be_accepted(plan):
    _, entry = plan("SELECT index_orders_note();\n")
    (built,) = _found(entry, "MG944")
    assert "orders_note_idx on orders" in built["message"] and built["severity"] == "high"
    assert entry["statements"][0]["built_indexes"] == [{"index": "orders_note_idx", "table": "orders", "lock": "SHARE"}]
    _, accepted = plan("-- guardian: accept MG944 because the function runs in the maintenance window\n"
                       "SELECT index_orders_note();\n")
    (built,) = _found(accepted, "MG944")
    assert built["accepted"] and built["accept_reason"] == "the function runs in the maintenance window"
    assert not _found(accepted, "MG004")
