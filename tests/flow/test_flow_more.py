"""Idempotency under concurrency, reasons, pasted SQL, long SQL, Slack retries and rehearsal in the thread."""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg

from bot.models import RequestStatus as S
from bot.slack.ids import ActionId, CallbackId
from bot.slack.sender import Forge, SlackUser

from flow_harness import APPROVER_A, APPROVER_B, CHANNEL, REQUESTER, USERS_SQL
from test_flow_approval import ADD_COLUMN, DROP_EMAIL, plan


def test_fifty_concurrent_approve_clicks_from_one_user_record_one_decision_and_one_run(harness):
    harness.add_migration("20240101000000_add_nickname", ADD_COLUMN)
    rid = plan(harness)
    barrier = threading.Barrier(50)

    def click(_: int) -> int:
        barrier.wait()
        sent = harness.sender.block_action(ActionId.APPROVE.value, value=str(rid),
                                           user=SlackUser(id=APPROVER_A, name="a"), channel_id=CHANNEL,
                                           response_url=harness.standin.response_url(f"many{_}"))
        return sent.status

    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(click, range(50)))
    assert statuses == [200] * 50
    harness.standin.wait_for("response_url", lambda c: True, timeout=10)
    for i in range(50):  # every click got an answer
        harness.replies(f"many{i}", timeout=20)
    assert len(harness.store.list_decisions(rid, live_only=False)) == 1
    runs = [j for j in harness.queued_job_ids() if j.startswith(f"guardian-req{rid}-backup")]
    assert runs == [f"guardian-req{rid}-backup-1"]
    queued = [e for e in harness.store.list_events(request_id=rid) if e.kind == "request.queued"]
    assert len(queued) == 1


def test_reject_with_a_reason_from_the_modal(harness):
    harness.add_migration("20240101000000_add_nickname", ADD_COLUMN)
    rid = plan(harness)
    harness.click(ActionId.REJECT.value, rid, APPROVER_B)
    view = harness.standin.wait_for("views.open").params["view"]
    assert view["callback_id"] == CallbackId.REJECT_REASON.value
    sent = harness.sender.view_submission(
        CallbackId.REJECT_REASON.value, private_metadata=view["private_metadata"], user=SlackUser(id=APPROVER_B, name="b"),
        values={"reason_input": {"value": {"type": "plain_text_input", "value": "needs a backfill plan"}}})
    assert sent.status == 200
    harness.standin.wait_for("chat.postEphemeral", lambda c: c.params.get("user") == APPROVER_B)
    assert harness.store.get_request(rid).status is S.REJECTED
    assert any("rejected this request: needs a backfill plan" in t for t in harness.thread_texts(rid))
    assert "Approve" not in json.dumps(harness.card(rid)["blocks"])  # no more buttons to approve


def test_pasted_sql_through_the_modal(harness):
    sent, reply = harness.command("sql staging")
    view = harness.standin.wait_for("views.open").params["view"]
    assert view["callback_id"] == CallbackId.SQL_REQUEST.value
    empty = harness.sender.view_submission(CallbackId.SQL_REQUEST.value, private_metadata=view["private_metadata"],
                                           user=SlackUser(id=REQUESTER, name="r"),
                                           values={"sql_input": {"value": {"type": "plain_text_input", "value": "  "}}})
    assert "Paste at least one statement" in empty.body
    ok = harness.sender.view_submission(CallbackId.SQL_REQUEST.value, private_metadata=view["private_metadata"],
                                        user=SlackUser(id=REQUESTER, name="r"),
                                        values={"sql_input": {"value": {"type": "plain_text_input",
                                                                        "value": "UPDATE users SET email = lower(email);"}}})
    assert ok.status == 200  # acknowledged first; the request is recorded and its card posted after the ack
    harness.standin.wait_for("chat.postMessage", lambda c: "Migration request #" in str(c.params.get("text")))
    deadline = time.monotonic() + 10  # the card's ts and the analysis intent are recorded once Slack answered
    while harness.store.list_requests(limit=1)[0].message_ts is None and time.monotonic() < deadline:
        time.sleep(0.02)
    rid = harness.latest_request_id()
    harness.run_jobs()
    request = harness.store.get_request(rid)
    assert request.source == "adhoc" and request.status is S.AWAITING_APPROVAL
    assert "UPDATE users" in request.migrations[0].sql
    assert any("update" in f["name"] or "where" in f["name"] for f in request.migrations[0].report["findings"])


def test_production_refuses_pasted_sql(harness):
    _, reply = harness.command("sql production")
    assert any("pasted SQL is not allowed on production" in t for t in harness.replies(reply))


def test_long_sql_is_uploaded_as_a_file_in_the_thread(harness):
    long_sql = "".join(f"ALTER TABLE users ADD COLUMN c{i} integer;\n" for i in range(120))
    harness.add_migration("20240101000000_many_columns", long_sql)
    rid = plan(harness)
    request = harness.store.get_request(rid)
    done = harness.standin.wait_for("files.completeUploadExternal")
    assert done.params.get("thread_ts") == request.thread_ts
    uploaded = [harness.standin.file_content(fid) for fid in harness.standin.files]
    assert any(content and content.decode().startswith("ALTER TABLE users ADD COLUMN c0") for content in uploaded)


def test_slack_retries_change_nothing(harness):
    harness.add_migration("20240101000000_add_nickname", ADD_COLUMN)
    harness.sender.slash_command("plan staging pending", user=SlackUser(id=REQUESTER, name="r"),
                                 channel_id=CHANNEL, trigger_id="retried-1",
                                 response_url=harness.standin.response_url("retried"))
    assert any("opened" in t for t in harness.replies("retried"))
    before = len(harness.store.list_requests())
    sent = harness.sender.slash_command("plan staging pending", user=SlackUser(id=REQUESTER, name="r"),
                                        channel_id=CHANNEL, trigger_id="retried-1",
                                        response_url=harness.standin.response_url("retried"),
                                        forge=Forge(retry_num=1, retry_reason="http_timeout"))
    assert sent.status == 200
    assert len(harness.store.list_requests()) == before
    assert len(harness.standin.responses("retried")) == 1


def test_rehearsal_database_result_is_posted(harness, make_database, monkeypatch):
    rehearsal_url = make_database(prefix="gt_rehearse")
    with psycopg.connect(rehearsal_url, autocommit=True) as conn:
        conn.execute(USERS_SQL)
    monkeypatch.setenv("GT_REHEARSAL_URL", rehearsal_url)
    staging = harness.config.environments["staging"].model_copy(update={"rehearsal_database_url_env": "GT_REHEARSAL_URL"})
    harness.flow.config = harness.config.model_copy(update={"environments": {**harness.config.environments, "staging": staging}})
    harness.add_migration("20240101000000_drop_email", DROP_EMAIL)
    rid = harness.flow.start_plan("staging", REQUESTER, CHANNEL).id
    harness.flow.analyze(rid)
    thread = "\n".join(harness.thread_texts(rid))
    assert "Rehearsal" in thread and "ACCESS EXCLUSIVE on `users`" in thread
    with psycopg.connect(rehearsal_url) as conn:  # rolled back: the column is still there
        assert conn.execute("SELECT count(email) FROM users").fetchone()[0] == 2000


def test_rehearsal_on_a_copy_of_the_target_is_posted_with_its_source_and_the_copy_is_dropped(harness, pg_admin_url):
    from bot.config import RehearsalCopyConfig
    from bot.pg.copy import copy_name

    staging = harness.config.environments["staging"].model_copy(
        update={"rehearsal": RehearsalCopyConfig(copy="template")})
    harness.flow.config = harness.config.model_copy(update={"environments": {**harness.config.environments, "staging": staging}})
    harness.add_migration("20240101000000_drop_email", DROP_EMAIL)
    rid = harness.flow.start_plan("staging", REQUESTER, CHANNEL).id
    harness.flow.analyze(rid)
    thread = "\n".join(harness.thread_texts(rid))
    assert "*Rehearsal*: rehearsed on a copy of staging from" in thread and "template of" in thread and "0 data failures" in thread
    assert "ACCESS EXCLUSIVE on `users`" in thread and "postgresql://" not in thread
    copy = next(e for e in harness.store.list_events(request_id=rid) if e.kind == "request.rehearsed").detail["copy"]
    assert copy["kind"] == "template" and copy["size_bytes"] > 0 and copy["stale"] is False
    with psycopg.connect(pg_admin_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (copy_name(rid, harness.store.install_id),)).fetchone()[0] == 0


def test_card_header_is_plain_text_with_an_emoji_code_slack_renders(harness):
    harness.add_migration("20240101000000_add_nickname", ADD_COLUMN)
    rid = plan(harness)
    header, fields = harness.card(rid)["blocks"][:2]
    assert header["type"] == "header" and header["text"]["emoji"] is True
    assert header["text"]["text"] == f":hourglass_flowing_sand: Migration request #{rid} · staging · awaiting approval"
    assert fields["type"] == "section" and "fields" in fields  # no second copy of the title


def test_on_demand_backup_by_an_approver_only(harness):
    _, reply = harness.command("backup staging", user=REQUESTER)
    assert any("only the staging approvers can" in t for t in harness.replies(reply))
    _, reply = harness.command("backup staging", user=APPROVER_A)
    assert any("Backing up staging" in t for t in harness.replies(reply))
    harness.run_jobs()
    backups = harness.store.list_backups()
    assert len(backups) == 1 and backups[0].request_id is None and backups[0].verified
    assert backups[0].size_bytes > 0 and "ondemand" in backups[0].path and "postgres" not in backups[0].path
    posted = harness.standin.wait_for("chat.postMessage", lambda c: "Backup #" in str(c.params.get("text")))
    assert "pg_restore --list" in posted.params["text"]


def test_status_shows_ledger_state_requests_and_freezes(harness, monkeypatch):
    harness.add_migration("20240101000000_add_nickname", ADD_COLUMN)
    rid = plan(harness)
    _, frozen = harness.command("freeze production 1h audit", user=APPROVER_A)
    harness.replies(frozen)
    monkeypatch.setenv("GT_PRODUCTION_URL", "postgresql://u:pw-should-not-show@127.0.0.1:1/x")
    _, reply = harness.command("status")
    text = "\n".join(harness.replies(reply))
    assert "*staging*" in text and "1 pending" in text and f"#{rid}" in text and "awaiting approval" in text
    assert "*production*" in text and "frozen until" in text and "audit" in text
    assert "cannot reach" in text and "pw-should-not-show" not in text
