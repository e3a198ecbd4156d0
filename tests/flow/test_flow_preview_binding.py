"""An approval binds to the preview its approver was shown; a replayed or retried delivery runs at most once.

Each click here is a signed HTTP request into the real app, carrying what Slack would send back: the
block id of the card's buttons as they were displayed when the person clicked.
"""
from __future__ import annotations

import json
from urllib.parse import urlencode

from bot.models import RequestStatus as S
from bot.slack.ids import ActionId, CallbackId, shown_fingerprint
from bot.slack.modals import ModalState
from bot.slack.sender import FORM, Forge, SlackUser

from flow_harness import APPROVER_A, APPROVER_B, CHANNEL, DBA, REQUESTER
from test_flow_approval import DROP_EMAIL, plan

DROP_USERS = "DROP TABLE users CASCADE;\n"


def _click_payload(harness, rid: int, user: str, block_id: str, response_id: str) -> dict:
    """The exact payload Slack sends for one click (so that it can be delivered again, byte for byte)."""
    return {
        "type": "block_actions", "team": {"id": "T0GUARDIAN"}, "api_app_id": "A0GUARDIAN",
        "user": {"id": user, "username": user, "name": user, "team_id": "T0GUARDIAN"},
        "container": {"type": "message", "message_ts": harness.store.get_request(rid).message_ts,
                      "channel_id": CHANNEL, "is_ephemeral": False},
        "trigger_id": f"trigger-{response_id}", "channel": {"id": CHANNEL, "name": "migrations"},
        "message": {"type": "message", "ts": harness.store.get_request(rid).message_ts, "blocks": []},
        "response_url": harness.standin.response_url(response_id),
        "actions": [{"type": "button", "action_id": ActionId.APPROVE.value, "block_id": block_id,
                     "value": str(rid), "text": {"type": "plain_text", "text": "Approve"},
                     "action_ts": "1764700000.000100"}],
    }


def _live(harness, rid: int) -> list[tuple[str, str | None]]:
    return [(d.user_id, d.preview_fingerprint) for d in harness.store.list_decisions(rid)]


def test_a_click_on_the_old_preview_approves_nothing_after_the_file_changed(harness):
    harness.add_migration("20240101000000_drop_email", DROP_EMAIL)
    rid = plan(harness)
    first_card = harness.card_block_id(rid)
    first = shown_fingerprint(first_card)
    assert first == harness.store.get_request(rid).preview_fingerprint
    a_click = _click_payload(harness, rid, APPROVER_A, first_card, "a-first")
    assert harness.sender.payload(a_click).status == 200
    assert any("(1/2)" in t for t in harness.replies("a-first")), harness.replies("a-first")

    # the file changes on the branch into something far worse; B's click (on the card as shown) voids
    harness.add_migration("20240101000000_drop_email", DROP_USERS, "oops")
    _, reply = harness.click(ActionId.APPROVE.value, rid, APPROVER_B)
    assert any("Nothing was recorded" in t for t in harness.replies(reply))
    card = harness.card(rid)
    labels = [e["text"]["text"] for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert "Approve" not in labels and "Reject" not in labels  # the voided preview's buttons are gone
    harness.run_jobs()  # re-analysis posts the new preview
    request = harness.store.get_request(rid)
    assert request.status is S.AWAITING_APPROVAL and request.preview_fingerprint != first
    assert "DROP TABLE users CASCADE" in "\n".join(harness.thread_texts(rid))

    # late clicks on the old preview, by each approver: refused, said why, nothing recorded
    for user in (APPROVER_A, APPROVER_B, DBA):
        _, reply = harness.click(ActionId.APPROVE.value, rid, user, block_id=first_card)
        text = "\n".join(harness.replies(reply))
        assert "this preview is outdated" in text and "Nothing was recorded" in text, text
        assert "20240101000000_drop_email was edited" in text  # why it changed
        assert f"/archives/{CHANNEL}/p" in text  # a link to the card showing the new preview
    # A's original click, delivered again byte for byte (a replay within the signature window): ignored
    assert harness.sender.payload(a_click).status == 200
    assert _live(harness, rid) == []
    assert harness.store.get_request(rid).status is S.AWAITING_APPROVAL
    assert not [j for j in harness.queued_job_ids() if "backup" in j]
    refused = [e for e in harness.store.list_events(request_id=rid) if e.kind == "decision.refused"]
    assert len(refused) == 3 and {e.detail["shown"] for e in refused} == {first}

    # on the new preview, approvals count again, bound to what was shown
    _, reply = harness.click(ActionId.APPROVE.value, rid, APPROVER_A)
    assert any("(1/2)" in t for t in harness.replies(reply))
    assert _live(harness, rid) == [(APPROVER_A, request.preview_fingerprint)]


def test_a_replayed_click_or_command_does_nothing_twice(harness):
    harness.add_migration("20240101000000_drop_email", DROP_EMAIL)
    before = len(harness.store.list_requests())
    form = {"token": "t", "team_id": "T0GUARDIAN", "channel_id": CHANNEL, "user_id": REQUESTER,
            "user_name": "r", "command": "/migrate", "text": "plan staging pending", "api_app_id": "A0GUARDIAN",
            "response_url": harness.standin.response_url("cmd-replayed"), "trigger_id": "13.1764700000.replayed"}
    for _ in range(5):  # the same signed command, five times within five minutes
        assert harness.sender.post(urlencode(form), FORM).status == 200
    harness.replies("cmd-replayed")
    assert len(harness.store.list_requests()) == before + 1
    assert len(harness.standin.responses("cmd-replayed")) == 1
    rid = harness.latest_request_id()
    harness.run_jobs()
    click = _click_payload(harness, rid, APPROVER_A, harness.card_block_id(rid), "a-replayed")
    for _ in range(5):
        assert harness.sender.payload(click).status == 200
    assert any("(1/2)" in t for t in harness.replies("a-replayed"))
    assert len(harness.standin.responses("a-replayed")) == 1
    decisions = harness.store.list_decisions(rid, live_only=False)
    assert [d.user_id for d in decisions] == [APPROVER_A]
    assert [e.kind for e in harness.store.list_events(request_id=rid)].count("decision.approve") == 1


def test_slack_retries_are_handled_once_even_when_the_first_delivery_was_lost(harness):
    harness.add_migration("20240101000000_drop_email", DROP_EMAIL)
    before = len(harness.store.list_requests())
    user = SlackUser(id=REQUESTER, name="r")

    def command(trigger: str, reply: str, forge: Forge = Forge()) -> None:
        sent = harness.sender.slash_command("plan staging pending", user=user, channel_id=CHANNEL, trigger_id=trigger,
                                            response_url=harness.standin.response_url(reply), forge=forge)
        assert sent.status == 200

    # Slack retries a delivery we already have: nothing happens twice
    command("t-1", "first")
    command("t-1", "first-retried", Forge(retry_num=1, retry_reason="http_timeout"))
    assert any("opened" in t for t in harness.replies("first"))
    # a retry whose first delivery never reached us (a deploy, a restart) is handled, once
    command("t-2", "lost-retried", Forge(retry_num=1, retry_reason="http_error"))
    command("t-2", "lost-retried-again", Forge(retry_num=2, retry_reason="http_error"))
    assert any("opened" in t for t in harness.replies("lost-retried"))
    assert len(harness.store.list_requests()) == before + 2
    assert harness.standin.responses("first-retried") == harness.standin.responses("lost-retried-again") == []


def test_a_card_without_a_fingerprint_counts_only_while_it_is_the_only_preview(harness):
    """Cards posted before buttons carried fingerprints: their clicks can only mean the one preview shown."""
    harness.add_migration("20240101000000_drop_email", DROP_EMAIL)
    rid = plan(harness)
    _, reply = harness.click(ActionId.APPROVE.value, rid, APPROVER_A, block_id="request_actions")
    assert any("(1/2)" in t for t in harness.replies(reply))
    harness.add_migration("20240101000000_drop_email", DROP_USERS, "oops")
    _, reply = harness.click(ActionId.APPROVE.value, rid, APPROVER_B)
    assert any("Nothing was recorded" in t for t in harness.replies(reply))
    harness.run_jobs()
    _, reply = harness.click(ActionId.APPROVE.value, rid, APPROVER_B, block_id="request_actions")
    assert any("this preview is outdated" in t for t in harness.replies(reply))
    assert _live(harness, rid) == []


def test_reject_and_production_confirmation_bind_to_the_preview_they_were_opened_from(harness):
    harness.add_migration("20240101000000_drop_email", DROP_EMAIL)
    rid = plan(harness)
    old = harness.store.get_request(rid).preview_fingerprint
    harness.add_migration("20240101000000_drop_email", DROP_USERS, "oops")
    harness.flow.revalidate(rid)
    harness.run_jobs()
    assert harness.store.get_request(rid).preview_fingerprint != old
    # a Reject modal opened from the old preview, submitted now: refused, the request still awaits approval
    state = ModalState(request_id=rid, environment="staging", preview=old)
    sent = harness.sender.view_submission(
        CallbackId.REJECT_REASON.value, private_metadata=state.model_dump_json(),
        values={"reason_input": {"value": {"type": "plain_text_input", "value": "no"}}},
        user=SlackUser(id=APPROVER_B, name="b"))
    assert sent.status == 200
    dm = harness.standin.wait_for("chat.postEphemeral", lambda c: c.params.get("user") == APPROVER_B)
    assert "this preview is outdated" in json.dumps(dm.params)
    assert harness.store.get_request(rid).status is S.AWAITING_APPROVAL
    assert _live(harness, rid) == []
