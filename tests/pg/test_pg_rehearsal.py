"""Lock rehearsal on a real populated database: observed locks, rewrites, always rolled back; guardian plan."""
from __future__ import annotations

import json

import psycopg
import pytest

from bot.cli import main
from bot.pg.connect import connect_target
from bot.pg.rehearsal import rehearse
from bot.pg.snapshot import take_snapshot


def _state(url):
    """Everything a rehearsal must leave untouched: schema, rows, storage of every relation."""
    with psycopg.connect(url) as conn:
        snap = take_snapshot(conn, "rehearsal")
        rows = conn.execute("SELECT count(*), sum(price) FROM items").fetchone()
        storage = conn.execute(
            "SELECT relname, relfilenode FROM pg_class WHERE relnamespace = 'public'::regnamespace ORDER BY 1"
        ).fetchall()
    return snap.fingerprint(), rows, storage


def _locks(statement):
    return {(lk.relation, lk.mode) for lk in statement.observed_locks}


def test_create_index_and_volatile_default_are_observed_and_rolled_back(populated_db):
    before = _state(populated_db)
    sql = (
        "CREATE INDEX items_sku_idx ON items (sku);\n"
        "ALTER TABLE items ADD COLUMN token uuid DEFAULT gen_random_uuid();\n"
        "ALTER TABLE items ADD COLUMN note text DEFAULT 'n/a';\n"
        "UPDATE tags SET tag = 'x' WHERE item_id < 10;\n"
        "CREATE INDEX CONCURRENTLY items_price_idx ON items (price);\n"
        "VACUUM items;\n"
    )
    with connect_target(populated_db, "rehearsal") as conn:
        result = rehearse(conn, [("001.sql", sql)], lock_timeout="2s")
    index, volatile, constant, update, concurrent, vacuum = result.files[0].statements
    assert ("items", "SHARE") in _locks(index) and index.rewrites == () and index.rehearsed
    assert index.duration_ms > 0 and index.line == 1
    assert ("items", "ACCESS EXCLUSIVE") in _locks(volatile) and volatile.rewrites == ("items",)
    assert ("items", "ACCESS EXCLUSIVE") in _locks(constant) and constant.rewrites == ()  # PG 11+: no rewrite
    assert _locks(update) == {("tags", "ROW EXCLUSIVE")} and update.line == 4
    assert not concurrent.rehearsed and "CREATE INDEX CONCURRENTLY" in concurrent.reason
    assert not concurrent.transactional and concurrent.observed_locks == ()
    assert not vacuum.rehearsed and "VACUUM" in vacuum.reason
    assert not result.failed
    assert _state(populated_db) == before  # the rehearsal database is unchanged


def test_a_failing_statement_stops_the_rehearsal_and_is_reported(populated_db):
    sql = "ALTER TABLE items ADD COLUMN a int;\nALTER TABLE nope ADD COLUMN b int;\nDROP TABLE items CASCADE;\n"
    with connect_target(populated_db, "rehearsal") as conn:
        result = rehearse(conn, [("a.sql", sql), ("b.sql", "DROP TABLE tags;")])
    first, bad, after = result.files[0].statements
    assert first.rehearsed and bad.error and "42P01" in bad.error and "nope" in bad.error
    assert not after.rehearsed and "earlier statement (a.sql:2) failed" in after.reason
    assert not result.files[1].statements[0].rehearsed and result.failed
    with psycopg.connect(populated_db) as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (20000,)


def test_lock_timeout_applies_during_rehearsal(populated_db):
    with psycopg.connect(populated_db) as blocker:
        blocker.execute("LOCK TABLE items IN ACCESS SHARE MODE")  # held until this transaction ends
        with connect_target(populated_db, "rehearsal") as conn:
            result = rehearse(conn, [("x.sql", "ALTER TABLE items ADD COLUMN z int;")], lock_timeout="200ms")
        blocker.rollback()
    (stmt,) = result.files[0].statements
    assert "55P03" in stmt.error and "lock_timeout" in stmt.error


def test_guardian_plan_json_merges_lint_and_rehearsal(populated_db, tmp_path, capsys):
    path = tmp_path / "001_index.sql"
    path.write_text("-- add an index\nCREATE INDEX items_sku_idx ON items (sku);\n"
                    "ALTER TABLE items ADD COLUMN token uuid DEFAULT gen_random_uuid();\n")
    assert main(["plan", "--target-url", populated_db, "--format", "json", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    (entry,) = doc["files"]
    assert entry["path"] == str(path) and entry["risk"] in ("low", "medium", "high", "critical")
    assert isinstance(entry["findings"], list)
    index, alter = entry["statements"]
    assert index["line"] == 2 and index["transactional"] is True and {"relation": "items", "mode": "SHARE"} in index["locks"]
    assert {"relation": "items", "mode": "SHARE"} in index["observed_locks"] and index["rewrites"] == []
    assert isinstance(index["duration_ms"], float) and index["rehearsed"] is True
    assert {"relation": "items", "mode": "ACCESS EXCLUSIVE"} in alter["observed_locks"] and alter["rewrites"] == ["items"]
    assert doc["rehearsal"]["rolled_back"] is True and doc["rehearsal"]["scans_counted"] is True
    assert doc["rehearsal"]["timezone"]
    with psycopg.connect(populated_db) as conn:
        assert conn.execute("SELECT to_regclass('items_sku_idx')").fetchone() == (None,)


def _config(tmp_path, monkeypatch, env_body: str) -> None:
    path = tmp_path / "guardian.toml"
    path.write_text(f"[project]\nrepo = \"{tmp_path}\"\n\n[environments.prod]\n{env_body}\n")
    monkeypatch.setenv("GUARDIAN_CONFIG", str(path))


def test_plan_refuses_production_without_a_rehearsal_database(populated_db, tmp_path, monkeypatch, capsys):
    sql = tmp_path / "1.sql"
    sql.write_text("CREATE INDEX i ON items (sku);")
    monkeypatch.setenv("GT_PROD_URL", populated_db)
    _config(tmp_path, monkeypatch, 'database_url_env = "GT_PROD_URL"\nproduction = true')
    assert main(["plan", "--env", "prod", str(sql)]) == 1
    err = capsys.readouterr().err
    assert "production" in err and "rehearsal_database_url_env" in err
    _config(tmp_path, monkeypatch, 'database_url_env = "GT_PROD_URL"\nproduction = true\nallow_rehearsal = true')
    assert main(["plan", "--env", "prod", str(sql)]) == 0
    assert "items SHARE" in capsys.readouterr().out
    monkeypatch.setenv("GT_PROD_COPY_URL", populated_db)
    _config(tmp_path, monkeypatch, 'database_url_env = "GT_PROD_URL"\nproduction = true\n'
                                   'rehearsal_database_url_env = "GT_PROD_COPY_URL"')
    monkeypatch.setenv("GT_PROD_URL", "postgresql://nobody:x@127.0.0.1:1/never")  # never touched
    assert main(["plan", "--env", "prod", "--format", "json", str(sql)]) == 0
    assert json.loads(capsys.readouterr().out)["files"][0]["statements"][0]["observed_locks"]


def test_plan_usage_and_unreadable_input(populated_db, tmp_path, capsys):
    assert main(["plan", str(tmp_path / "missing.sql"), "--target-url", populated_db]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "latin.sql"
    bad.write_bytes("SELECT 'café';".encode("latin-1"))
    assert main(["plan", "--target-url", populated_db, str(bad)]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    assert main(["plan", str(bad)]) == 2


@pytest.mark.parametrize("secret", ["Plan-S3cret-pw"])
def test_plan_unreachable_target_hides_the_password(tmp_path, capsys, secret):
    sql = tmp_path / "1.sql"
    sql.write_text("SELECT 1;")
    assert main(["plan", "--target-url", f"postgresql://u:{secret}@127.0.0.1:1/db", str(sql)]) == 1
    out = capsys.readouterr()
    assert "cannot reach" in out.err and secret not in out.err + out.out


def test_statements_sharing_a_line_keep_their_own_lint_and_observations(populated_db, tmp_path, capsys):
    path = tmp_path / "one_line.sql"
    path.write_text("UPDATE tags SET tag = 'y'; CREATE INDEX tags_tag_idx ON tags (tag);\n")
    assert main(["plan", "--target-url", populated_db, "--format", "json", str(path)]) == 0
    update, index = json.loads(capsys.readouterr().out)["files"][0]["statements"]
    assert update["index"] == 0 and update["kind"] == "UPDATE"
    assert update["observed_locks"] == [{"relation": "tags", "mode": "ROW EXCLUSIVE"}]
    assert index["index"] == 1 and index["kind"] == "CREATE INDEX"
    assert {"relation": "tags", "mode": "SHARE"} in index["observed_locks"]


# A body PostgreSQL cannot fold into a constant (SELECT 1 would be inlined, and the DEFAULT not rewrite)
_VOLATILE_CODE = "CREATE FUNCTION next_code() RETURNS int LANGUAGE sql VOLATILE AS $$ SELECT (random() * 100)::int $$;\n"


def _planned(url, tmp_path, capsys, sql: str) -> dict:
    """`guardian plan --format json` of one file: its entry."""
    path = tmp_path / "002_code.sql"
    path.write_text(sql)
    assert main(["plan", "--target-url", url, "--format", "json", str(path)]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["files"]
    return entry


def test_plan_reports_a_rewrite_only_the_rehearsal_saw(populated_db, tmp_path, capsys):
    """Hazard #62: the analysis cannot know that a function defined in the file is volatile, so it cannot
    say the new column's DEFAULT rewrites items; the rehearsal sees it (MG941). A rewrite the analysis
    already reported (gen_random_uuid) gets no second finding."""
    entry = _planned(populated_db, tmp_path, capsys, _VOLATILE_CODE + "ALTER TABLE items ADD COLUMN code int DEFAULT next_code();\n"
                     "ALTER TABLE items ADD COLUMN token uuid DEFAULT gen_random_uuid();\n")
    traced = [f for f in entry["findings"] if f["code"] == "MG941"]
    # items has 20,000 rows (the introspected context): the engine's size scale makes that low risk
    assert [(f["line"], f["statement"], f["severity"], f["accepted"]) for f in traced] == [(2, 1, "low", False)]
    assert "items" in traced[0]["message"] and "ACCESS EXCLUSIVE" in traced[0]["message"]
    assert "~20,000 rows" in traced[0]["message"]
    assert traced[0]["excerpt"].startswith("ALTER TABLE items ADD COLUMN code")
    codes = [(f["statement"], f["code"]) for f in entry["findings"]]
    assert codes.index((1, "MG941")) < min(i for i, (s, _) in enumerate(codes) if s == 2)  # in statement order
    assert entry["statements"][2]["rewrites"] == ["items"] and entry["statements"][2]["rewrite"] is True


def test_a_traced_rewrite_can_be_accepted_in_the_file(populated_db, tmp_path, capsys):
    entry = _planned(populated_db, tmp_path, capsys, _VOLATILE_CODE +
                     "-- guardian: accept MG941 because items is rewritten in the Sunday maintenance window\n"
                     "ALTER TABLE items ADD COLUMN code int DEFAULT next_code();\n")
    (traced,) = [f for f in entry["findings"] if f["code"] == "MG941"]
    assert traced["accepted"] is True and traced["accept_reason"] == "items is rewritten in the Sunday maintenance window"
    assert not [f for f in entry["findings"] if f["code"] == "MG004"]  # the comment now matches a finding
    assert "rewrite-observed-under-lock" not in " ".join(entry["reasons"])


def test_plan_env_judges_files_as_guardian_applies_them(populated_db, tmp_path, monkeypatch, capsys):
    """--env: Guardian's apply sets lock_timeout/statement_timeout and [lint] holds, as in the Slack preview;
    --target-url: whoever applies the file may not, so the missing lock_timeout stays a finding."""
    sql = tmp_path / "1.sql"
    sql.write_text("ALTER TABLE items ADD COLUMN note text;\nCREATE INDEX items_sku_idx ON items (sku);\n")

    def codes(argv):
        main(["plan", "--format", "json", *argv, str(sql)])
        return {f["code"] for f in json.loads(capsys.readouterr().out)["files"][0]["findings"]}

    monkeypatch.setenv("GT_STAGING_URL", populated_db)
    _config(tmp_path, monkeypatch, 'database_url_env = "GT_STAGING_URL"')
    assert "MG601" in codes(["--target-url", populated_db])
    by_env = codes(["--env", "prod"])
    assert "MG601" not in by_env and by_env
    disabled = sorted(by_env)[0]
    (tmp_path / "guardian.toml").write_text((tmp_path / "guardian.toml").read_text()
                                            + f'\n[lint]\ndisabled = ["{disabled}"]\n')
    assert disabled not in codes(["--env", "prod"])


def test_on_a_copy_statements_that_cannot_run_in_a_transaction_run_alone_as_the_apply_runs_them(populated_db):
    sql = ("ALTER TABLE items ADD COLUMN note text;\n"
           "CREATE INDEX CONCURRENTLY items_price_idx ON items (price);\n"
           "VACUUM items;\n"
           "ALTER TABLE items ADD COLUMN flag bool;\n")
    with connect_target(populated_db, "copy") as conn:  # commit=True: a throwaway copy, changed for good
        result = rehearse(conn, [("001.sql", sql)], lock_timeout="2s", commit=True)
    add, concurrent, vacuum, after = result.files[0].statements
    assert concurrent.rehearsed and not concurrent.transactional and concurrent.error is None
    assert concurrent.held_ms == concurrent.duration_ms > 0  # autocommit: its locks last as long as it runs
    assert [(i.index, i.table) for i in concurrent.built_indexes] == [("items_price_idx", "items")]
    assert ("items", "SHARE UPDATE EXCLUSIVE") in _locks(concurrent)  # watched from a second session while it ran
    assert vacuum.rehearsed and not vacuum.transactional and vacuum.held_ms == vacuum.duration_ms
    assert after.rehearsed and not after.after_skip and ("items", "ACCESS EXCLUSIVE") in _locks(after)
    assert add.held_ms < concurrent.duration_ms + add.duration_ms + 50  # its transaction committed before the index
    with psycopg.connect(populated_db) as check:
        assert check.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_price_idx'::regclass"
                             ).fetchone() == (True,)


def test_on_a_copy_a_unique_index_built_concurrently_over_duplicates_is_a_data_failure_and_its_invalid_index_reported(
        populated_db):
    with psycopg.connect(populated_db, autocommit=True) as conn:
        conn.execute("UPDATE items SET sku = 'same' WHERE id IN (3, 4, 5)")
    sql = "CREATE UNIQUE INDEX CONCURRENTLY items_sku_key ON items (sku);\nALTER TABLE items ADD COLUMN z int;\n"
    with connect_target(populated_db, "copy") as conn:
        result = rehearse(conn, [("001.sql", sql)], commit=True)
    unique, after = result.files[0].statements
    assert unique.sqlstate == "23505" and not unique.transactional and unique.invalid_indexes == ("items_sku_key",)
    assert "INVALID index items_sku_key" in unique.reason
    (found,) = unique.offending
    assert found.summary == "1 duplicated (sku) in items, 3 rows" and found.examples == ("sku=same ×3",)
    assert not after.rehearsed and "failed" in after.reason
    with connect_target(populated_db, "rehearsal") as conn:  # not a copy: rolled back, still not run
        (skipped, _) = rehearse(conn, [("001.sql", sql)]).files[0].statements
    assert not skipped.rehearsed and "CREATE UNIQUE INDEX CONCURRENTLY cannot run inside" in skipped.reason


def test_on_a_copy_a_subscription_is_still_never_run(populated_db):
    sql = ("CREATE SUBSCRIPTION gt_sub CONNECTION 'host=127.0.0.1 dbname=nowhere' PUBLICATION p;\n"  # makes a slot there
           "ALTER TABLE items ADD COLUMN q int;\n")
    with connect_target(populated_db, "copy") as conn:
        sub, add = rehearse(conn, [("001.sql", sql)], commit=True).files[0].statements
    assert not sub.rehearsed and "publisher" in sub.reason and sub.error is None and add.rehearsed
    with psycopg.connect(populated_db) as conn:
        assert conn.execute("SELECT count(*) FROM pg_subscription WHERE subname = 'gt_sub'").fetchone() == (0,)


@pytest.mark.parametrize("commit", [False, True])
def test_our_own_looks_are_not_counted_in_the_hold_time(populated_db, commit):
    """Issue 19: the look after each statement (locks, relfilenodes, scan counters: slow over many relations) is
    ours, not the apply's; the first statement's locks are held as long as the statements after it really ran."""
    with psycopg.connect(populated_db, autocommit=True) as conn:  # 600 relations make every look slow
        conn.execute("DO $$ BEGIN FOR i IN 1..300 LOOP EXECUTE format('CREATE TABLE pad%s (id int PRIMARY KEY)', i); "
                     "END LOOP; END $$")
    sql = "".join(f"COMMENT ON TABLE items IS 'c{i}';\n" for i in range(40)) + "SELECT pg_sleep(0.2);\n"
    with connect_target(populated_db, "copy") as conn:
        result = rehearse(conn, [("001.sql", sql)], lock_timeout="2s", commit=commit)
    statements = result.files[0].statements
    assert len(statements) == 41 and all(s.rehearsed for s in statements)
    ran = sum(s.duration_ms for s in statements)  # what the apply would spend from the first statement's start
    first = statements[0]
    assert ran >= 200 and first.held_ms >= ran * 0.99
    assert first.held_ms <= ran * 1.2 + 15, (first.held_ms, ran, result.observed_ms)
    # counted, the 41 looks (and WAL readings) would put it out of that bound
    assert first.held_ms + result.observed_ms > ran * 1.2 + 15, (first.held_ms, ran, result.observed_ms)
    assert statements[-1].held_ms <= statements[-1].duration_ms + 15
