"""Issue 19's done-when: rehearsed on a copy of the populated target before approval, a data-dependent failure
(duplicates under a UNIQUE index, NULLs under SET NOT NULL) is in the preview with its count and examples and
makes the request critical; the copy is dropped and the target unchanged."""
from __future__ import annotations

import os
import time

import psycopg

from bot.config import RehearsalCopyConfig
from bot.pg.copy import copy_name
from bot.slack.ids import ActionId
from bot.slack.sender import SlackUser

from flow_harness import APPROVER_A, APPROVER_B, CHANNEL, REQUESTER


def _on_copy(harness) -> None:
    staging = harness.config.environments["staging"].model_copy(update={"rehearsal": RehearsalCopyConfig(copy="template")})
    harness.flow.config = harness.config.model_copy(update={"environments": {**harness.config.environments, "staging": staging}})


def _plan(harness, name: str, sql: str, dirty: str) -> tuple[int, str]:
    with psycopg.connect(os.environ["GT_STAGING_URL"], autocommit=True) as conn:
        conn.execute("ALTER TABLE users ALTER COLUMN email DROP NOT NULL")
        conn.execute(dirty)
    _on_copy(harness)
    harness.add_migration(name, sql)
    rid = harness.flow.start_plan("staging", REQUESTER, CHANNEL).id
    harness.flow.analyze(rid)
    return rid, "\n".join(harness.thread_texts(rid))


def _copy_gone(harness, pg_admin_url: str, rid: int) -> bool:
    name = copy_name(rid, harness.store.install_id)
    with psycopg.connect(pg_admin_url) as conn:
        return conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone()[0] == 0


def _approve_and_run(harness, rid: int) -> None:
    """As many approvals as the request's risk needs, then its jobs; the request must succeed."""
    needed = harness.store.get_request(rid).risk
    for approver in [APPROVER_A, APPROVER_B][: 2 if needed in ("high", "critical") else 1]:
        _, reply = harness.click(ActionId.APPROVE.value, rid, approver)
        harness.replies(reply)
    harness.run_jobs()
    done = harness.store.get_request(rid)
    assert done.status.value == "succeeded", done.error


def test_duplicates_fail_a_unique_index_on_the_copy_and_the_preview_says_so_before_approval(harness, pg_admin_url):
    rid, thread = _plan(harness, "20240101000000_unique_email", "CREATE UNIQUE INDEX users_email_key ON users (email);\n",
                        "UPDATE users SET email = 'shared@example.com' WHERE id % 500 = 0")  # 4 rows share one email
    assert "data failure* at line 1: 1 duplicated (email) in users, 4 rows" in thread
    assert "e.g. `email=shared@example.com " in thread and "could not create unique index" in thread and "on a copy of staging from" in thread
    request = harness.store.get_request(rid)
    assert request.status.value == "awaiting_approval" and request.risk == "critical"
    assert request.risk_reasons[0].startswith("rehearsal: 20240101000000_unique_email")
    assert _copy_gone(harness, pg_admin_url, rid)
    with psycopg.connect(os.environ["GT_STAGING_URL"]) as conn:  # the target never saw the index
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname = 'users_email_key'").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM users WHERE email = 'shared@example.com'").fetchone()[0] == 4
    harness.sender.block_action(ActionId.APPROVE.value, value=str(rid), user=SlackUser(id=APPROVER_A, name="a"),
                                channel_id=CHANNEL, response_url=harness.standin.response_url("dup"))
    harness.replies("dup")
    assert len(harness.store.list_decisions(rid)) == 1  # recorded, yet critical needs two
    assert harness.store.get_request(rid).status.value == "awaiting_approval"


def test_nulls_fail_set_not_null_on_the_copy_the_same_way(harness, pg_admin_url):
    rid, thread = _plan(harness, "20240101000000_email_required", "ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n",
                        "UPDATE users SET email = NULL WHERE id IN (7, 8, 9)")
    assert "data failure* at line 1: 3 rows of users with email NULL" in thread and "`id=7, email=NULL`" in thread
    assert harness.store.get_request(rid).risk == "critical"
    assert _copy_gone(harness, pg_admin_url, rid)
    with psycopg.connect(os.environ["GT_STAGING_URL"]) as conn:
        assert conn.execute("SELECT count(*) FROM users WHERE email IS NULL").fetchone()[0] == 3
        assert conn.execute("SELECT is_nullable FROM information_schema.columns WHERE table_name = 'users' "
                            "AND column_name = 'email'").fetchone()[0] == "YES"


def test_clean_data_keeps_the_static_risk(harness):
    rid, thread = _plan(harness, "20240101000000_unique_email", "CREATE UNIQUE INDEX users_email_key ON users (email);\n",
                        "SELECT 1")
    assert "*data failure*" not in thread and "0 data failures" in thread
    assert harness.store.get_request(rid).risk != "critical"


def test_after_the_apply_the_thread_compares_actual_with_the_rehearsal(harness):
    _on_copy(harness)
    harness.add_migration("20240101000000_email_bigger", "ALTER TABLE users ALTER COLUMN id TYPE numeric;\n")
    rid = harness.flow.start_plan("staging", REQUESTER, CHANNEL).id
    harness.flow.analyze(rid)
    predicted = next(e for e in harness.store.list_events(request_id=rid) if e.kind == "request.rehearsed")
    (st,) = predicted.detail["statements"]
    assert st["held_ms"] >= st["duration_ms"] > 0 and st["rewrites"] == ["users"]
    _approve_and_run(harness, rid)
    (apply,) = [s for s in harness.store.list_steps(rid) if s.step == "apply"]
    (row,) = apply.outcome["prediction"]
    assert row["file"] == "20240101000000_email_bigger" and row["predicted_ms"] == round(st["duration_ms"], 1)
    assert row["actual_ms"] > 0 and row["predicted_hold_ms"] > 0
    thread = "\n".join(harness.thread_texts(rid))
    assert "predicted vs actual: 20240101000000_email_bigger: rehearsed" in thread and "locks held" in thread


def test_the_apply_records_each_statement_and_the_thread_names_the_slowest_against_its_rehearsal(harness):
    _on_copy(harness)
    harness.add_migration("20240101000000_three", "ALTER TABLE users ADD COLUMN nick text;\nSELECT pg_sleep(0.3);\n"
                                                  "CREATE INDEX users_nick_idx ON users (nick);\n")
    rid = harness.flow.start_plan("staging", REQUESTER, CHANNEL).id
    harness.flow.analyze(rid)
    _approve_and_run(harness, rid)
    (apply,) = [s for s in harness.store.list_steps(rid) if s.step == "apply"]
    (applied,) = apply.outcome["files"]
    actual = applied["statements"]  # one entry per statement, in order, each held until the file's commit
    assert [s["index"] for s in actual] == [0, 1, 2] and actual[1]["duration_ms"] >= 300
    assert actual[0]["held_ms"] >= 300 and all(s["held_ms"] >= s["duration_ms"] for s in actual)
    (row,) = apply.outcome["prediction"]
    assert [s["index"] for s in row["statements"]] == [0, 1, 2] and row["statements"][1]["predicted_ms"] >= 300
    assert row["actual_hold_ms"] == round(actual[0]["held_ms"], 1)
    thread = "\n".join(harness.thread_texts(rid))
    assert "slowest statement, predicted vs actual: 20240101000000_three #2 (line 2, SelectStmt): rehearsed 0.3" in thread
    assert ", took 0.3" in thread


def test_approval_binds_the_rehearsal_a_copy_past_max_age_means_a_new_rehearsal_and_new_approvals(harness):
    staging = harness.config.environments["staging"].model_copy(
        update={"rehearsal": RehearsalCopyConfig(copy="template", max_age="1s")})
    harness.flow.config = harness.config.model_copy(update={"environments": {**harness.config.environments, "staging": staging}})
    harness.add_migration("20240101000000_nick", "ALTER TABLE users ADD COLUMN nick text;\n")
    rid = harness.flow.start_plan("staging", REQUESTER, CHANNEL).id
    harness.flow.analyze(rid)
    time.sleep(1.2)  # the copy's data is now older than max_age
    text = harness.flow.decide(rid, APPROVER_A, "approve")
    assert "voided" in text and "older than max_age (1s)" in text
    assert harness.store.list_decisions(rid) == [] and harness.store.get_request(rid).status.value == "analyzing"
    harness.flow.analyze(rid)  # rehearsed again on a fresh copy
    assert len([e for e in harness.store.list_events(request_id=rid) if e.kind == "request.rehearsed"]) == 2
    relaxed = staging.model_copy(update={"rehearsal": RehearsalCopyConfig(copy="template", max_age="1h")})
    harness.flow.config = harness.config.model_copy(update={"environments": {**harness.config.environments, "staging": relaxed}})
    assert "You approved" in harness.flow.decide(rid, APPROVER_A, "approve")  # within max_age it binds


def test_a_unique_index_built_concurrently_over_duplicates_fails_on_the_copy_and_the_preview_says_so(harness, pg_admin_url):
    rid, thread = _plan(harness, "20240101000000_unique_email",
                        "CREATE UNIQUE INDEX CONCURRENTLY users_email_key ON users (email);\n",
                        "UPDATE users SET email = 'shared@example.com' WHERE id % 500 = 0")
    assert "data failure* at line 1: 1 duplicated (email) in users, 4 rows" in thread
    assert "it left the INVALID index users_email_key (the apply drops it)" in thread
    assert harness.store.get_request(rid).risk == "critical" and _copy_gone(harness, pg_admin_url, rid)
    with psycopg.connect(os.environ["GT_STAGING_URL"]) as conn:  # the target never saw the index
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname = 'users_email_key'").fetchone()[0] == 0


def test_a_cast_that_fails_on_the_copy_shows_the_rows_in_the_preview(harness):
    rid, thread = _plan(harness, "20240101000000_email_int", "ALTER TABLE users ALTER COLUMN email TYPE integer "
                        "USING email::integer;\n", "UPDATE users SET email = id::text WHERE id > 3")
    assert "data failure* at line 1: 3 rows of users whose email cannot become integer" in thread, thread
    assert "`id=1, email=" in thread and harness.store.get_request(rid).risk == "critical"
