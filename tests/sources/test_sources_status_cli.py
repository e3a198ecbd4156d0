"""`guardian status` end to end: a config file, env vars naming the URLs, real targets, text and JSON."""
from __future__ import annotations

import json

import psycopg
from psycopg.conninfo import conninfo_to_dict

from bot.cli import main
from bot.sources.apply import apply_migration
from bot.sources.layouts import load_snapshot


def _config(tmp_path, repo, monkeypatch, envs: dict[str, str]) -> None:
    lines = ["[project]", f'repo = "{repo.path}"', 'layout = "sql"', 'path = "db/migrations"', ""]
    for name, url in envs.items():
        var = f"GT_{name.upper()}_URL"
        monkeypatch.setenv(var, url)
        lines += [f"[environments.{name}]", f'database_url_env = "{var}"', ""]
    path = tmp_path / "guardian.toml"
    path.write_text("\n".join(lines))
    monkeypatch.setenv("GUARDIAN_CONFIG", str(path))


def test_status_json_and_text(sql_repo, project, target_db_url, make_database, tmp_path, monkeypatch, capsys):
    snap = load_snapshot(project(sql_repo, "sql", "db/migrations"))
    with psycopg.connect(target_db_url, autocommit=True) as conn:
        apply_migration(conn, "sql", snap.migrations[0])
    staging = make_database(prefix="gt_target")
    with psycopg.connect(staging, autocommit=True) as conn:
        for m in snap.migrations:
            apply_migration(conn, "sql", m)
    _config(tmp_path, sql_repo, monkeypatch, {"prod": target_db_url, "staging": staging})

    assert main(["status", "staging", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (env,) = doc["environments"]
    assert env["name"] == "staging" and env["target"]["host"] == conninfo_to_dict(staging)["host"]
    assert env["target"]["database"] == conninfo_to_dict(staging)["dbname"] and env["target"]["server_version"].startswith("1")
    assert [m["state"] for m in env["migrations"]] == ["applied"] * 3
    assert env["migrations"][0]["sha256"] == snap.migrations[0].sha256 and env["migrations"][0]["applied_at"]
    assert env["summary"]["applied"] == 3 and env["summary"]["pending"] == 0

    assert main(["status"]) == 1  # prod has pending migrations
    text = capsys.readouterr().out
    assert "prod:" in text and "staging:" in text and "2 pending" in text and "3 applied" in text

    old = sql_repo.git("rev-parse", "HEAD")
    sql_repo.write("db/migrations/20_new.sql", "SELECT 1;\n")
    sql_repo.commit("new migration")
    assert main(["status", "staging", "--format", "json"]) == 1
    assert json.loads(capsys.readouterr().out)["environments"][0]["summary"]["pending"] == 1
    assert main(["status", "staging", "--format", "json", "--ref", old]) == 0
    assert json.loads(capsys.readouterr().out)["environments"][0]["commit"] == old


def test_status_reports_an_unreachable_environment_without_its_password(sql_repo, tmp_path, monkeypatch, capsys):
    _config(tmp_path, sql_repo, monkeypatch, {"prod": "postgresql://app:Hunter2Secret@127.0.0.1:1/appdb"})
    assert main(["status", "--format", "json"]) == 1
    out = capsys.readouterr()
    doc = json.loads(out.out)
    error = doc["environments"][0]["error"]
    assert error["code"] == "target-unreachable" and "'prod'" in error["message"]
    assert "Hunter2Secret" not in out.out + out.err and "postgresql://" not in out.out + out.err
