"""`guardian snapshot` and `plan --snapshot-out` write the target's catalog; `lint --context` on it judges as plan does."""
from __future__ import annotations

import json

import psycopg

from bot.cli import main
from bot.config import load_config
from bot.pg.connect import connect_target
from bot.pg.introspect import gather_facts
from bot.pg.plan import applied_context
from bot.risk import analyze

SCHEMA = """
CREATE TABLE members (id bigserial PRIMARY KEY, email varchar(50) NOT NULL, nick varchar(20), bal numeric(10, 2),
                      created timestamp, note varchar(10) CHECK (length(note) > 0));
CREATE INDEX members_lower_email_idx ON members (lower(email));
ALTER TABLE members ADD CONSTRAINT members_nick_nn CHECK (nick IS NOT NULL);
CREATE VIEW member_notes AS SELECT id, note FROM members;
INSERT INTO members (email, nick, bal, created, note)
SELECT 'm' || g || '@x', 'n' || g, g, now(), 'x' FROM generate_series(1, 3000) g;
ANALYZE members;
"""
MIGRATION = """ALTER TABLE members ALTER COLUMN email TYPE varchar(100);
ALTER TABLE members ALTER COLUMN bal TYPE numeric(12, 2);
ALTER TABLE members ALTER COLUMN note TYPE varchar(20);
ALTER TABLE members ALTER COLUMN nick SET NOT NULL;
ALTER TABLE members ALTER COLUMN created TYPE timestamptz;
"""


def _config(tmp_path, monkeypatch, url: str) -> None:
    path = tmp_path / "guardian.toml"
    path.write_text(f'[project]\nrepo = "{tmp_path}"\n\n[environments.prod]\ndatabase_url_env = "GT_SNAP_URL"\n')
    monkeypatch.setenv("GT_SNAP_URL", url)
    monkeypatch.setenv("GUARDIAN_CONFIG", str(path))


def test_lint_on_a_snapshot_gives_plans_static_verdicts_without_the_database(target_db_url, tmp_path, monkeypatch,
                                                                            capsys):
    with psycopg.connect(target_db_url, autocommit=True) as conn:
        conn.execute(SCHEMA)
    _config(tmp_path, monkeypatch, target_db_url)
    sql = tmp_path / "001.sql"
    sql.write_text(MIGRATION)
    snap = tmp_path / "prod.json"
    assert main(["snapshot", "--env", "prod", "-o", str(snap)]) == 0
    assert "1 table," in capsys.readouterr().err
    doc = json.loads(snap.read_text())
    assert doc["runner_lock_timeout"] is True and doc["tables"]["public.members"]["rows"] == 3000

    with connect_target(target_db_url, "prod") as conn:  # plan --env's static analysis, from the database
        expected = analyze(MIGRATION, applied_context(gather_facts(conn, "prod"), load_config(tmp_path / "guardian.toml")))
    monkeypatch.setenv("GT_SNAP_URL", "postgresql://nobody:x@127.0.0.1:1/never")  # lint never connects
    main(["lint", "--format", "json", "--context", str(snap), str(sql)])
    linted = json.loads(capsys.readouterr().out)["files"][0]
    assert [(f["code"], f["severity"], f["line"], f["message"]) for f in linted["findings"]] == [
        (f.code, f.severity.value, f.line, f.message) for f in expected.findings]
    assert linted["risk"] == expected.risk.value and expected.findings

    monkeypatch.setenv("GT_SNAP_URL", target_db_url)
    out = tmp_path / "from-plan.json"
    main(["plan", "--env", "prod", "--format", "json", "--snapshot-out", str(out), str(sql)])
    assert json.loads(out.read_text()) == doc


def test_snapshot_says_what_is_wrong(tmp_path, target_db_url, monkeypatch, capsys):
    _config(tmp_path, monkeypatch, target_db_url)
    assert main(["snapshot"]) == 2
    assert "exactly one of --target-url URL or --env NAME" in capsys.readouterr().err
    assert main(["snapshot", "--target-url", target_db_url, "-o", str(tmp_path / "no" / "dir.json")]) == 2
    assert "cannot write the snapshot" in capsys.readouterr().err
    assert main(["snapshot", "--target-url", target_db_url]) == 0
    assert json.loads(capsys.readouterr().out)["snapshot"] == 1
