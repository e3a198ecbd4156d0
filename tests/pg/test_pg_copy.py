"""Rehearsal copies (bot/pg/copy.py) on the real server: template, backup and command copies are made, hold the
target's data, are dropped afterwards (and swept when their worker died), and never show a URL."""
from __future__ import annotations

import random
import re
import subprocess
import threading
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from psycopg import conninfo

from bot.config import EnvironmentConfig, RehearsalCopyConfig
from bot.models import Backup
from bot.pg.copy import ADHOC_INSTALL, CopyError, CopyLock, copy_name, copy_of, sweep_copies
from bot.pg.summary import copy_line
from bot.pg.tools import find_pg_dump, libpq_env
from bot.store import Store


def _env(monkeypatch, url: str, **rehearsal) -> EnvironmentConfig:
    monkeypatch.setenv("GT_COPY_TARGET_URL", url)
    return EnvironmentConfig(name="production", database_url_env="GT_COPY_TARGET_URL", production=True,
                             rehearsal=RehearsalCopyConfig(**rehearsal))


def _rid() -> int:
    return random.randint(10_000_000, 99_999_999)


def _exists(admin_url: str, name: str) -> bool:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone()[0] == 1


def _count(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM items").fetchone()[0]


def test_template_copy_holds_the_data_is_dropped_and_leaves_the_target_unchanged(populated_db, pg_admin_url, monkeypatch):
    env = _env(monkeypatch, populated_db, copy="template")
    rid = _rid()
    with copy_of(env, rid) as copy:
        url = copy.url.get_secret_value()
        assert copy.name == copy_name(rid, ADHOC_INSTALL) and copy.kind == "template" and copy.source.startswith("template of gt_target")
        assert copy.size_bytes > 1_000_000 and not copy.stale
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 20000
            conn.execute("DELETE FROM tags")
            conn.execute("DELETE FROM items WHERE id > 10")
    assert not _exists(pg_admin_url, copy.name)
    assert _count(populated_db) == 20000
    shown = copy_line(copy, "production") + str(copy.summary())
    assert "production from" in shown and "template of" in shown and url not in shown and "postgresql://" not in shown


def test_template_copy_refused_while_another_session_uses_the_target_says_why(populated_db, pg_admin_url, monkeypatch):
    env = _env(monkeypatch, populated_db, copy="template")
    rid = _rid()
    with psycopg.connect(populated_db):  # the app, connected
        with pytest.raises(CopyError) as err:
            with copy_of(env, rid):
                pass
    assert err.value.code == "copy-template-busy"
    assert "other sessions are connected" in err.value.message and "copy = \"backup\"" in err.value.message
    assert not _exists(pg_admin_url, copy_name(rid, ADHOC_INSTALL))


def _dump(url: str, tmp_path) -> Backup:
    with psycopg.connect(url) as conn:
        major = conn.info.server_version // 10000
    path = tmp_path / "production-ondemand.dump"
    subprocess.run([find_pg_dump(major)[0], "--format=custom", f"--file={path}"], env=libpq_env(url, "gt-dump"),
                   check=True, capture_output=True)
    return Backup(id=41, environment="production", path=str(path), scope="full", format="custom", verified=True,
                  created_at=datetime.now(timezone.utc) - timedelta(hours=30))


def test_backup_copy_restores_the_latest_verified_backup_in_parallel_and_flags_it_stale(populated_db, pg_admin_url,
                                                                                        monkeypatch, tmp_path):
    backup = _dump(populated_db, tmp_path)
    env = _env(monkeypatch, populated_db, copy="backup", jobs=2, max_age="24h")
    unverified = backup.model_copy(update={"id": 42, "verified": False, "created_at": datetime.now(timezone.utc)})
    with psycopg.connect(populated_db, autocommit=True) as app:  # a busy target does not stop a backup copy
        app.execute("DELETE FROM tags")
        with copy_of(env, _rid(), backups=[backup, unverified]) as copy:
            assert copy.source == "backup #41" and copy.stale
            assert _count(copy.url.get_secret_value()) == 20000
            with psycopg.connect(copy.url.get_secret_value()) as conn:  # the backup's data, not today's
                assert conn.execute("SELECT count(*) FROM tags").fetchone()[0] == 50
    assert not _exists(pg_admin_url, copy.name)
    assert "stale: older than max_age" in copy_line(copy, "production")


def test_backup_copy_without_a_backup_says_what_to_do(populated_db, monkeypatch):
    env = _env(monkeypatch, populated_db, copy="backup")
    with pytest.raises(CopyError) as err:
        with copy_of(env, _rid(), backups=[]):
            pass
    assert err.value.code == "copy-no-backup" and "/migrate backup production" in err.value.message


def test_command_copy_uses_the_printed_url_and_its_drop_command(populated_db, pg_admin_url, monkeypatch):
    target = conninfo.conninfo_to_dict(populated_db)["dbname"]
    monkeypatch.setenv("GT_ADMIN", pg_admin_url)
    make = (f'psql "$GT_ADMIN" -qc "CREATE DATABASE $GUARDIAN_COPY_NAME TEMPLATE {target}" >/dev/null '
            f'&& echo "creating branch..." && echo "${{GT_ADMIN%/*}}/$GUARDIAN_COPY_NAME"')
    drop = 'psql "$GT_ADMIN" -qc "DROP DATABASE $GUARDIAN_COPY_NAME" >/dev/null'
    env = _env(monkeypatch, populated_db, copy="command", command=make, drop_command=drop)
    with copy_of(env, _rid()) as copy:
        assert copy.source == "command" and _count(copy.url.get_secret_value()) == 20000
    assert not _exists(pg_admin_url, copy.name)


def test_command_copy_that_fails_shows_its_error_without_secrets(populated_db, monkeypatch):
    env = _env(monkeypatch, populated_db, copy="command", command="echo 'no branch for postgresql://u:s3cret@h/db' >&2; exit 3",
               drop_command="true")
    with pytest.raises(CopyError) as err:
        with copy_of(env, _rid()):
            pass
    assert "exited 3" in err.value.message and "s3cret" not in err.value.message


def test_sweep_drops_copies_whose_worker_died_and_keeps_live_ones(populated_db, pg_admin_url, monkeypatch):
    env = _env(monkeypatch, populated_db, copy="template")
    dead, live = copy_name(_rid(), ADHOC_INSTALL), copy_name(_rid(), ADHOC_INSTALL)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        for name in (dead, live):
            conn.execute(f"CREATE DATABASE {name}")
    try:
        holder = psycopg.connect(conninfo.make_conninfo(pg_admin_url, dbname="postgres"), autocommit=True)
        CopyLock(live, int(live.rsplit("req", 1)[1])).take(holder)  # the live copy's worker
        assert dead in sweep_copies(env, ADHOC_INSTALL)
        assert not _exists(pg_admin_url, dead) and _exists(pg_admin_url, live)
        holder.close()  # that worker dies too
        assert sweep_copies(env, ADHOC_INSTALL) == [live]
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            for name in (dead, live):
                conn.execute(f"DROP DATABASE IF EXISTS {name}")


def test_two_installations_copy_the_same_request_at_once_and_each_sweeps_only_its_own(
        populated_db, pg_admin_url, state_db_url, monkeypatch):
    """Two Guardians on one server, each with a request of the same number: neither waits for the other's copy,
    and a sweep drops its own dead copies and those named before installations, never the other's."""
    env = _env(monkeypatch, populated_db, copy="template")
    rid = _rid()
    store = Store(state_db_url, max_size=2)
    mine = store.install_id
    assert re.fullmatch(r"[0-9a-f]{8}", mine) and store.install_id == mine
    dead = {"mine": copy_name(_rid(), mine), "theirs": copy_name(_rid(), "0ther1d5"),
            "unnamed": f"guardian_copy_req{_rid()}"}  # as a worker of an earlier version left it
    try:
        with copy_of(env, rid, registry=store) as first:
            assert first.name == copy_name(rid, mine) and [r.name for r in store.list_copies()] == [first.name]
            seen: list[tuple[str, bool]] = []

            def other_installation() -> None:
                with copy_of(env, rid) as second:  # the same request number, made while the first copy lives
                    seen.append((second.name, _exists(pg_admin_url, first.name)))

            worker = threading.Thread(target=other_installation, daemon=True)
            worker.start()
            worker.join(timeout=60)
            assert seen == [(copy_name(rid, ADHOC_INSTALL), True)], "the second installation waited for the first"
        assert store.list_copies() == []

        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            for name in dead.values():
                conn.execute(f"CREATE DATABASE {name}")
        assert sorted(sweep_copies(env, mine)) == sorted([dead["mine"], dead["unnamed"]])
        assert _exists(pg_admin_url, dead["theirs"]) and not _exists(pg_admin_url, dead["mine"])
        assert sweep_copies(env, "0ther1d5") == [dead["theirs"]]
    finally:
        store.close()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            for name in [copy_name(rid, mine), copy_name(rid, ADHOC_INSTALL), *dead.values()]:
                conn.execute(f"DROP DATABASE IF EXISTS {name}")


def test_copy_names_refuse_an_installation_id_that_is_not_a_plain_word():
    assert copy_name(7, "ab12cd34") == "guardian_copy_ab12cd34_req7"
    for bad in ("", "AB", "a-b", "x" * 17, 'a"; DROP DATABASE x; --'):
        with pytest.raises(ValueError, match="installation id"):
            copy_name(7, bad)


def test_copy_config_checks_its_keys():
    with pytest.raises(ValueError, match="drop_command"):
        RehearsalCopyConfig(copy="command", command="make-branch")
    with pytest.raises(ValueError, match="duration"):
        RehearsalCopyConfig(copy="template", max_age="soon")
