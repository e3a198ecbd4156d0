"""`/migrate plan` → preview with risk → hash-bound approvals → exactly one run, over real HTTP."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bot.models import RequestStatus as S
from bot.slack.ids import ActionId, CallbackId
from bot.slack.sender import Forge, SlackUser

from flow_harness import APPROVER_A, APPROVER_B, DBA, OUTSIDER, REQUESTER

ADD_COLUMN = "ALTER TABLE users ADD COLUMN nickname text;\n"
DROP_EMAIL = "ALTER TABLE users DROP COLUMN email;\n"


def plan(h, env="staging", text=None) -> int:
    sent, rid = h.command(text or f"plan {env} pending")
    assert sent.status == 200
    assert any("opened" in t for t in h.replies(rid))
    request_id = h.latest_request_id()
    h.run_jobs()  # analyze
    return request_id


def test_plan_posts_card_and_thread_then_one_approval_enqueues_one_run(harness):
    commit = harness.add_migration("20240101000000_add_nickname", ADD_COLUMN)
    rid = plan(harness)
    request = harness.store.get_request(rid)
    assert request.status is S.AWAITING_APPROVAL
    assert request.git_commit == commit and request.risk == "low"
    assert [m.name for m in request.migrations] == ["20240101000000_add_nickname"]
    card = str(harness.card(rid))
    assert "awaiting approval" in card and request.migrations[0].sha256[:12] in card
    assert "Approve" in card and "Reject" in card and request.target["database"] in card
    thread = "\n".join(harness.thread_texts(rid))
    assert "ADD COLUMN nickname" in thread  # the SQL
    assert "Risk of" in thread and "ACCESS EXCLUSIVE" in thread  # the risk summary with lock modes

    sent, reply = harness.click(ActionId.APPROVE.value, rid, APPROVER_A)
    assert sent.status == 200
    assert any("You approved" in t for t in harness.replies(reply))
    request = harness.store.get_request(rid)
    assert request.status in (S.QUEUED, S.BACKING_UP, S.APPLYING, S.VERIFYING, S.SUCCEEDED, S.FAILED)
    backup_jobs = [j for j in harness.queued_job_ids() if j.startswith(f"guardian-req{rid}-backup")]
    assert backup_jobs == [f"guardian-req{rid}-backup-1"]
    # a second click by the same approver changes nothing
    _, reply2 = harness.click(ActionId.APPROVE.value, rid, APPROVER_A)
    assert any("only a request awaiting approval can be approved" in t for t in harness.replies(reply2))
    assert len(harness.store.list_decisions(rid)) == 1
    assert "queued" in str(harness.card(rid)) or "backing up" in str(harness.card(rid))


def test_refusals_change_nothing_and_explain(harness):
    harness.add_migration("20240101000000_add_nickname", ADD_COLUMN)
    rid = plan(harness)
    _, reply = harness.click(ActionId.APPROVE.value, rid, REQUESTER)
    assert any("you requested" in t for t in harness.replies(reply))
    _, reply = harness.click(ActionId.APPROVE.value, rid, OUTSIDER)
    assert any("not an approver" in t for t in harness.replies(reply))
    assert harness.store.list_decisions(rid) == []
    # forged signature: 401, nothing recorded
    forged = harness.sender.block_action(ActionId.APPROVE.value, value=str(rid),
                                         user=SlackUser(id=APPROVER_A, name="a"), forge=Forge(secret="wrong"))
    assert forged.status == 401
    assert harness.store.list_decisions(rid) == []
    # the requester cancels; an Approve afterwards is refused
    _, reply = harness.click(ActionId.CANCEL.value, rid, REQUESTER)
    assert any("cancelled" in t for t in harness.replies(reply))
    _, reply = harness.click(ActionId.APPROVE.value, rid, APPROVER_A)
    assert any("cancelled; only a request awaiting approval" in t for t in harness.replies(reply))
    assert harness.store.get_request(rid).status is S.CANCELLED
    assert harness.store.list_decisions(rid) == []


def test_high_risk_needs_two_approvals_group_member_counts(harness):
    harness.add_migration("20240101000000_drop_email", DROP_EMAIL)
    rid = plan(harness)
    assert harness.store.get_request(rid).risk in ("high", "critical")
    _, reply = harness.click(ActionId.APPROVE.value, rid, APPROVER_A)
    harness.replies(reply)
    _, reply = harness.click(ActionId.APPROVE.value, rid, APPROVER_A)
    harness.replies(reply)
    assert harness.store.get_request(rid).status is S.AWAITING_APPROVAL
    assert "1/2" in str(harness.card(rid))
    _, reply = harness.click(ActionId.APPROVE.value, rid, DBA)  # member of S0DBAS
    assert any("2/2" in t for t in harness.replies(reply))
    assert harness.store.get_request(rid).status is not S.AWAITING_APPROVAL
    assert sum(j.startswith(f"guardian-req{rid}-backup") for j in harness.queued_job_ids()) == 1


def test_production_refused_until_same_sha_succeeded_on_staging(harness):
    harness.add_migration("20240101000000_add_nickname", ADD_COLUMN)
    prod = plan(harness, "production")
    assert harness.store.get_request(prod).status is S.AWAITING_APPROVAL
    assert "Requires the same SQL to succeed first on" in str(harness.card(prod))
    # production asks the approver to type the environment's name first
    sent, _ = harness.click(ActionId.APPROVE.value, prod, APPROVER_A)
    view = harness.standin.wait_for("views.open").params["view"]
    assert "Type `production` to confirm" in str(view)
    meta = view["private_metadata"] if isinstance(view, dict) else None
    wrong = harness.sender.view_submission(CallbackId.CONFIRM_APPROVAL.value, private_metadata=meta,
                                           user=SlackUser(id=APPROVER_A, name="a"),
                                           values={"confirm_input": {"value": {"type": "plain_text_input", "value": "prod"}}})
    assert wrong.status == 200 and "Type production exactly" in wrong.body
    ok = harness.sender.view_submission(CallbackId.CONFIRM_APPROVAL.value, private_metadata=meta,
                                        user=SlackUser(id=APPROVER_A, name="a"),
                                        values={"confirm_input": {"value": {"type": "plain_text_input", "value": "production"}}})
    assert ok.status == 200
    eph = harness.standin.wait_for("chat.postEphemeral", lambda c: c.params.get("user") == APPROVER_A)
    assert "requires the same SQL (same sha256) to succeed on staging first" in eph.params["text"]
    assert harness.store.list_decisions(prod) == []
    # once the same sha256 succeeded on staging, the approval goes through
    staging = plan(harness, "staging")
    for a, b in [(S.AWAITING_APPROVAL, S.APPROVED), (S.APPROVED, S.QUEUED), (S.QUEUED, S.BACKING_UP),
                 (S.BACKING_UP, S.APPLYING), (S.APPLYING, S.VERIFYING), (S.VERIFYING, S.SUCCEEDED)]:
        harness.store.transition(staging, a, b, actor="test")
    text = harness.flow.decide(prod, APPROVER_A, "approve", confirmed_environment="production")
    assert "You approved" in text
    assert "Already succeeded on: staging" in str(harness.card(prod))


def test_frozen_environment_holds_the_run_and_says_until_when(harness):
    harness.add_migration("20240101000000_add_nickname", ADD_COLUMN)
    rid = plan(harness)
    sent, reply = harness.command("freeze staging 2h release day", user=APPROVER_B)
    assert any("frozen until" in t for t in harness.replies(reply))
    _, reply = harness.click(ActionId.APPROVE.value, rid, APPROVER_A)
    assert any("You approved" in t for t in harness.replies(reply))
    request = harness.store.get_request(rid)
    assert request.status is S.APPROVED and request.run_after is not None
    assert not any(j.startswith(f"guardian-req{rid}-backup") for j in harness.queued_job_ids())
    thread = "\n".join(harness.thread_texts(rid))
    assert "Not running yet: staging is frozen until" in thread and "release day" in thread
    assert request.run_after > datetime.now(timezone.utc) + timedelta(minutes=100)
    # unfreezing starts it
    _, reply = harness.command("unfreeze staging", user=APPROVER_B)
    assert any("no longer frozen" in t for t in harness.replies(reply))
    assert harness.store.get_request(rid).status is not S.APPROVED


def test_editing_the_file_after_one_approval_voids_it_visibly(harness):
    harness.add_migration("20240101000000_drop_email", DROP_EMAIL)
    rid = plan(harness)
    _, reply = harness.click(ActionId.APPROVE.value, rid, APPROVER_A)
    assert any("(1/2)" in t for t in harness.replies(reply))
    old_sha = harness.store.get_request(rid).migrations[0].sha256
    harness.add_migration("20240101000000_drop_email",
                          "ALTER TABLE users DROP COLUMN IF EXISTS email;\n", "make it idempotent")
    _, reply = harness.click(ActionId.APPROVE.value, rid, APPROVER_B)
    assert any("voided" in t for t in harness.replies(reply))
    thread = "\n".join(harness.thread_texts(rid))
    assert "1 approval voided: 20240101000000_drop_email was edited" in thread
    assert harness.store.list_decisions(rid) == []
    assert harness.store.get_request(rid).status is S.ANALYZING
    harness.run_jobs()  # re-analysis
    request = harness.store.get_request(rid)
    assert request.status is S.AWAITING_APPROVAL and request.migrations[0].sha256 != old_sha
    assert "Approvals voided" in str(harness.card(rid)) or "voided" in thread


def test_unknown_environment_and_bad_arguments_get_usage(harness):
    _, reply = harness.command("plan qa pending")
    assert any("unknown environment 'qa'; known: production, staging" in t for t in harness.replies(reply))
    sent, _ = harness.command("plan")
    assert sent.status == 200 and "usage" in sent.body.lower()


def test_nothing_pending_says_so(harness):
    rid = None
    harness.add_migration("20240101000000_add_nickname", ADD_COLUMN)
    rid = plan(harness)
    from bot.sources.apply import apply_migration
    from bot.sources.layouts import load_snapshot
    import psycopg

    snap = load_snapshot(harness.config.project)
    with psycopg.connect(harness.targets["staging"], autocommit=True) as conn:
        apply_migration(conn, "prisma", snap.migrations[0])
    rid2 = plan(harness)
    assert harness.store.get_request(rid2).status is S.CANCELLED
    assert any("Nothing to do" in t for t in harness.thread_texts(rid2))


def test_the_card_and_thread_name_who_must_approve_before_and_after_the_first_approval(harness):
    harness.add_migration("20240101000000_drop_email", DROP_EMAIL)  # high: two approvals
    rid = plan(harness)
    card = str(harness.card(rid))
    assert f"0/2 — waiting for 2 of <@{APPROVER_A}>, <@{APPROVER_B}>, <!subteam^S0DBAS>" in card
    thread = harness.thread_texts(rid)
    asked = [t.split("\n", 1)[0] for t in thread if "Needs 2 approvals" in t]
    assert asked == [f":raised_hand: Needs 2 approvals (0/2 so far). Waiting for 2 more of <@{APPROVER_A}>, "
                     f"<@{APPROVER_B}>, <!subteam^S0DBAS>."]  # the mentions notify, once
    _, reply = harness.click(ActionId.APPROVE.value, rid, APPROVER_A)
    assert any("You approved" in t for t in harness.replies(reply))  # the click is handled after its ack
    card = str(harness.card(rid))
    assert f"1/2 — waiting for <@{APPROVER_B}> or <!subteam^S0DBAS>" in card and f"approved by <@{APPROVER_A}>" in card
    assert f":white_check_mark: <@{APPROVER_A}> approved (1/2). Waiting for <@{APPROVER_B}> or <!subteam^S0DBAS>." \
        in [t.split("\n", 1)[0] for t in harness.thread_texts(rid)]
    assert f"<@{REQUESTER}> or" not in card  # the requester cannot approve their own request


def test_reminders_then_escalation_for_a_request_nobody_approves(harness):
    import types

    from bot.config import RemindersConfig
    from workers.reminders import remind
    from workers.runtime import runtime

    harness.add_migration("20240101000000_drop_email", DROP_EMAIL)
    rid = plan(harness)
    rt = runtime()
    now = datetime.now(timezone.utc)
    assert remind(rt, now=now) == []  # defaults: after 4 h
    quiet = types.SimpleNamespace(store=rt.store, flow=rt.flow, config=rt.config.model_copy(update={
        "reminders": RemindersConfig(quiet_hours=f"{(now + timedelta(hours=5)).hour:02d}:00-"
                                                 f"{(now + timedelta(hours=7)).hour:02d}:00")}))
    assert remind(quiet, now=now + timedelta(hours=5, minutes=30)) == []  # quiet hours: it waits
    assert remind(rt, now=now + timedelta(hours=5)) == [f"request {rid}: reminder 1 sent"]
    assert remind(rt, now=now + timedelta(hours=1)) == []  # the next one only after another 4 h
    reminder = [t for t in harness.thread_texts(rid) if t.startswith(":bell: Reminder")]
    assert len(reminder) == 1 and f"has waited 5 hours for approval (0/2). Waiting for 2 more of <@{APPROVER_A}>, " \
        f"<@{APPROVER_B}>, <!subteam^S0DBAS>." in reminder[0]
    for user in (APPROVER_A, APPROVER_B):  # a DM to each person still needed, linking the card
        dm = [m.get("text") or "" for m in harness.standin.messages(user)]
        assert len(dm) == 1 and f"request #{rid}" in dm[0] and "waiting for your review" in dm[0]
    assert harness.standin.messages(REQUESTER) == []
    once = types.SimpleNamespace(store=rt.store, flow=rt.flow, config=rt.config.model_copy(update={
        "reminders": RemindersConfig(max_reminders=1, escalate_after="1h")}))
    assert remind(once, now=now + timedelta(hours=6)) == [f"request {rid}: escalated"]
    assert remind(once, now=now + timedelta(hours=9)) == []  # once
    escalation = [t for t in harness.thread_texts(rid) if t.startswith(":rotating_light: Escalation")]
    assert len(escalation) == 1 and "<!subteam^S0DBAS>" in escalation[0] and "still needs 2 approvals" in escalation[0]
    # an approval restarts the clock: the next reminder names only who is still needed
    _, reply = harness.click(ActionId.APPROVE.value, rid, APPROVER_A)
    harness.replies(reply)
    assert remind(rt, now=now + timedelta(hours=2)) == []
    assert remind(rt, now=now + timedelta(hours=5)) == [f"request {rid}: reminder 1 sent"]
    latest = [t for t in harness.thread_texts(rid) if t.startswith(":bell: Reminder")][-1]
    assert f"(1/2). Waiting for <@{APPROVER_B}> or <!subteam^S0DBAS>." in latest


def test_a_request_nobody_approves_within_approval_expiry_expires_and_says_so(harness):
    from workers.reminders import remind
    from workers.runtime import runtime

    harness.add_migration("20240101000000_add_nickname", ADD_COLUMN)
    rid = plan(harness)
    rt = runtime()
    now = datetime.now(timezone.utc)
    assert remind(rt, now=now + timedelta(hours=23)) == [f"request {rid}: reminder 1 sent"]  # not yet
    assert harness.store.get_request(rid).status is S.AWAITING_APPROVAL
    assert remind(rt, now=now + timedelta(hours=24, minutes=1)) == [f"request {rid}: expired"]  # approval_expiry 24h
    assert harness.store.get_request(rid).status is S.EXPIRED
    said = [t for t in harness.thread_texts(rid) if t.startswith(f":hourglass: Request #{rid} expired")]
    assert len(said) == 1 and "within 24h" in said[0] and "`/migrate plan staging`" in said[0]
    card = str(harness.card(rid))
    assert "expired" in card and "Approve" not in card
    assert remind(rt, now=now + timedelta(hours=30)) == []
