"""Slack's rate limits through the real flow: a 45-migration plan, previewed and run on the rate-limited
stand-in, delivers every message (batched, and 429s waited out by slack_sdk's retry handler)."""
from __future__ import annotations

import sys
from pathlib import Path

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "flow"))
from flow_harness import APPROVER_A, CHANNEL, git, harness  # noqa: E402,F401  (pytest fixture)

from bot.models import RequestStatus as S  # noqa: E402
from bot.slack.ids import ActionId  # noqa: E402

MIGRATIONS = 45


def add_many(h, count: int) -> list[str]:
    names = []
    for i in range(count):
        name = f"2024010100{i:04d}_table_{i:02d}"
        folder = h.repo / "prisma" / "migrations" / name
        folder.mkdir(parents=True)
        (folder / "migration.sql").write_text(f"CREATE TABLE t_{i:02d} (id bigint PRIMARY KEY, note text);\n")
        names.append(name)
    git(h.repo, "add", "-A")
    git(h.repo, "commit", "-qm", f"{count} migrations")
    return names


def drain(h) -> None:
    """Spend the channel's burst, as a busy channel would have, so the flow's first posts meet 429s."""
    plain = WebClient(token=h.standin.token, base_url=h.standin.url)  # no retry handler: stops at the first 429
    try:
        while True:
            plain.chat_postMessage(channel=CHANNEL, text="someone else's bot, chatty")
    except SlackApiError as exc:
        assert exc.response.status_code == 429


def test_a_45_migration_plan_completes_on_the_rate_limited_standin_with_every_message_delivered(harness):
    names = add_many(harness, MIGRATIONS)
    drain(harness)
    sent, rid = harness.command("plan staging pending")
    assert sent.status == 200
    assert any("opened" in t for t in harness.replies(rid, timeout=30))  # the card waited out its 429
    request_id = harness.latest_request_id()
    harness.run_jobs()  # analyze: card, SQL and risk preview in the thread
    request = harness.store.get_request(request_id)
    assert request.status is S.AWAITING_APPROVAL and len(request.migrations) == MIGRATIONS

    thread = "\n".join(harness.thread_texts(request_id))
    assert all(n in thread for n in names)  # every migration's SQL and risk reached the thread
    preview = [m for m in harness.standin.messages(CHANNEL) if m.get("thread_ts") == request.thread_ts
               and m["ts"] != request.thread_ts]
    assert len(preview) <= 12, len(preview)  # batched: not 91 messages, one per SQL file and risk summary

    _, reply = harness.click(ActionId.APPROVE.value, request_id, APPROVER_A)
    harness.replies(reply)
    harness.run_jobs()  # backup, apply 45 files, verify, report
    request = harness.store.get_request(request_id)
    assert request.status is S.SUCCEEDED, request.status

    assert harness.standin.throttled("chat.postMessage")  # Slack said 429 along the way...
    posts = harness.standin.calls("chat.postMessage")
    assert posts and all(c.ok for c in posts), [c.response for c in posts if not c.ok]  # ...nothing was lost
    failed = [e for e in harness.store.list_events(request_id=request_id) if e.kind == "slack.post_failed"]
    assert failed == []
    assert "succeeded" in str(harness.card(request_id))


def test_a_thread_post_slack_refuses_is_posted_later_by_a_job(harness, monkeypatch):
    from bot.slack import retries

    monkeypatch.setattr(retries, "LATE_POST_DELAYS", (0, 0))  # due at once, and only two late attempts
    harness.add_migration("20240101000000_t", "CREATE TABLE t (id bigint PRIMARY KEY);\n")
    sent, rid = harness.command("plan staging pending")
    assert any("opened" in t for t in harness.replies(rid, timeout=30))
    request_id = harness.latest_request_id()
    harness.run_jobs()

    harness.standin.fail_next("chat.postMessage", 2)  # the post and the first late attempt meet a 503
    harness.flow.note(request_id, "a note Slack first refused")
    assert "a note Slack first refused" not in "\n".join(harness.thread_texts(request_id))
    assert "The thread is behind: 1 message Slack" in str(harness.card(request_id))  # the card says so
    harness.run_jobs()  # late attempt 1 fails too and queues attempt 2...
    harness.run_jobs()  # ...which posts it
    assert sum("a note Slack first refused" in t for t in harness.thread_texts(request_id)) == 1
    assert "thread is behind" not in str(harness.card(request_id))
    kinds = [(e.kind, e.detail.get("error")) for e in harness.store.list_events(request_id=request_id)
             if e.kind.startswith("slack.post")]
    assert kinds == [("slack.post_failed", "service_unavailable"), ("slack.post_failed", "service_unavailable"),
                     ("slack.post_delivered_late", None)]


def test_a_post_slack_will_never_take_is_recorded_not_retried(harness):
    harness.add_migration("20240101000000_t", "CREATE TABLE t (id bigint PRIMARY KEY);\n")
    sent, rid = harness.command("plan staging pending")
    assert any("opened" in t for t in harness.replies(rid, timeout=30))
    request_id = harness.latest_request_id()
    harness.run_jobs()
    harness.flow.post_in_thread(harness.store.get_request(request_id), {"text": "x" * 40_001})  # msg_too_long
    failed = [e for e in harness.store.list_events(request_id=request_id) if e.kind == "slack.post_failed"]
    assert [(e.detail["error"], e.detail["retry_in"]) for e in failed] == [("msg_too_long", None)]
    assert not [j for j in harness.queued_job_ids() if "slack-post" in j]
    card = str(harness.card(request_id))
    assert "1 thread message could not be posted" in card and "thread is behind" not in card
