"""A plan typed where the bot cannot post leaves no request in flight, and the person is told what to do."""
from __future__ import annotations

import json

from bot.models import TERMINAL
from bot.models import RequestStatus as S
from bot.slack.ids import CallbackId
from bot.slack.modals import ModalState
from bot.slack.sender import SlackUser

from flow_harness import REQUESTER
from test_flow_approval import ADD_COLUMN

PRIVATE = "G0NOTINVITED"  # a private channel the bot was never invited to
DIRECT = "D0REQUESTER"    # a direct message between two people


def _plan_from(harness, channel: str, reply: str) -> str:
    sent = harness.sender.slash_command("plan staging pending", user=SlackUser(id=REQUESTER, name="r"),
                                        channel_id=channel, response_url=harness.standin.response_url(reply))
    assert sent.status == 200
    return "\n".join(harness.replies(reply))


def test_plan_in_a_channel_the_bot_is_not_in_cancels_the_request_and_says_invite_it(harness):
    harness.add_migration("20240101000000_add_nickname", ADD_COLUMN)
    text = _plan_from(harness, PRIVATE, "private")
    assert "invite it with `/invite @Guardian`" in text and f"<#{PRIVATE}>" in text, text
    assert "nothing was analysed or run" in text
    requests = harness.store.list_requests()
    assert [r.status for r in requests] == [S.CANCELLED]
    assert all(r.status in TERMINAL for r in requests)
    assert harness.queued_job_ids() == []  # no analysis was queued for it
    cancelled = [e for e in harness.store.list_events(request_id=requests[0].id) if e.kind == "request.cancelled"]
    assert cancelled and "not_in_channel" in json.dumps(cancelled[0].detail)


def test_plan_in_a_direct_message_says_use_a_channel(harness):
    harness.add_migration("20240101000000_add_nickname", ADD_COLUMN)
    text = _plan_from(harness, DIRECT, "dm")
    assert "not in a direct message" in text and "migrations channel" in text, text
    assert all(r.status in TERMINAL for r in harness.store.list_requests())


def test_pasted_sql_from_a_channel_the_bot_is_not_in_is_answered_by_direct_message(harness):
    state = ModalState(environment="staging", channel=PRIVATE).model_dump_json()
    sent = harness.sender.view_submission(
        CallbackId.SQL_REQUEST.value, private_metadata=state, user=SlackUser(id=REQUESTER, name="r"),
        values={"sql_input": {"value": {"type": "plain_text_input", "value": "ALTER TABLE users ADD COLUMN x int;"}}})
    assert sent.status == 200 and sent.body in ("", "{}")  # acknowledged at once: the card is posted after
    dm = harness.standin.wait_for("chat.postMessage", lambda c: c.params.get("channel") == REQUESTER, timeout=10)
    assert "invite it with `/invite @Guardian`" in str(dm.params.get("text")), dm.params
    assert all(r.status in TERMINAL for r in harness.store.list_requests())
