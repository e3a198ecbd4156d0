"""Warming a fresh copy before its rehearsal (bot/pg/warm.py, issue 19): the tables the migration touches are in
the copy's shared buffers when its statements run, by pg_prewarm created on the copy only and dropped again."""
from __future__ import annotations

import random

import psycopg

from bot.config import EnvironmentConfig, RehearsalCopyConfig
from bot.pg.copy import copy_of
from bot.pg.rehearsal import rehearse
from bot.pg.summary import rehearsal_headline


def _extensions(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT extname FROM pg_extension ORDER BY 1")]


def _cached_blocks(probe: psycopg.Connection, copy_url: str, table: str) -> tuple[int, int]:
    """(blocks of ``table`` in the copy's shared buffers, blocks of its main fork)."""
    with psycopg.connect(copy_url) as conn:
        db, filenode, blocks = conn.execute(
            "SELECT (SELECT oid FROM pg_database WHERE datname = current_database()), pg_relation_filenode(%s::regclass),"
            " pg_relation_size(%s::regclass) / current_setting('block_size')::int", (table, table)).fetchone()
    cached = probe.execute("SELECT count(*) FROM pg_buffercache WHERE reldatabase = %s AND relfilenode = %s "
                           "AND relforknumber = 0", (db, filenode)).fetchone()[0]
    return cached, blocks


def test_the_copy_s_touched_tables_are_warmed_before_the_rehearsal_and_the_target_gets_no_extension(
        populated_db, make_database, monkeypatch):
    monkeypatch.setenv("GT_WARM_TARGET_URL", populated_db)
    env = EnvironmentConfig(name="production", database_url_env="GT_WARM_TARGET_URL", production=True,
                            rehearsal=RehearsalCopyConfig(copy="template"))
    with psycopg.connect(populated_db, autocommit=True) as conn:  # past CREATE DATABASE's 16 MB write ring
        conn.execute("CREATE TABLE big AS SELECT g AS id, md5(g::text) AS b FROM generate_series(1, 400000) g")
    target_extensions = _extensions(populated_db)
    probe_url = make_database(prefix="gt_bufprobe")  # pg_buffercache sees every database's buffers from here
    with psycopg.connect(probe_url, autocommit=True) as probe:
        buffercache = probe.execute(
            "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_buffercache'").fetchone()[0] > 0
        if buffercache:
            probe.execute("CREATE EXTENSION pg_buffercache")
        with copy_of(env, random.randint(10_000_000, 99_999_999)) as copy:
            url = copy.url.get_secret_value()
            if buffercache:  # the copy kept in the buffers only the last pages it wrote
                cold, blocks = _cached_blocks(probe, url, "big")
                assert blocks > 2048 and cold < blocks - 500, (cold, blocks)
            with psycopg.connect(url, autocommit=True) as conn:  # a migration that reads no row of big or items
                result = rehearse(conn, [("001.sql", "ALTER TABLE big ADD COLUMN note text;\n"
                                                     "ALTER TABLE items ADD COLUMN note text;\n")], commit=True)
            warmed = result.warmed
            assert warmed is not None and warmed.method == "pg_prewarm" and warmed.error is None
            assert warmed.relations[:2] == ("big", "items") and "tags" not in warmed.relations  # biggest first
            with psycopg.connect(url) as conn:
                touched = conn.execute("SELECT pg_relation_size('big') + pg_relation_size('items')").fetchone()[0]
            assert touched > 20_000_000 and warmed.bytes >= touched and warmed.bytes <= warmed.budget_bytes
            if buffercache:  # every block of big is in the buffers now, ADD COLUMN having read none
                cached, blocks = _cached_blocks(probe, url, "big")
                assert cached == blocks, (cold, cached, blocks)
            assert "pg_prewarm" not in _extensions(url)  # created for the warming, dropped again
            assert "copy warmed: " in rehearsal_headline(result, copy, None, "production")
    assert _extensions(populated_db) == target_extensions and "pg_prewarm" not in target_extensions


def test_a_rolled_back_rehearsal_warms_nothing(populated_db):
    with psycopg.connect(populated_db, autocommit=True) as conn:
        result = rehearse(conn, [("001.sql", "ALTER TABLE items ADD COLUMN note text;\n")])
    assert result.warmed is None and "pg_prewarm" not in _extensions(populated_db)
