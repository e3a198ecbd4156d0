"""📌 on incident messages, delivered as Slack delivers them: over HTTP and as Socket Mode envelopes."""
from __future__ import annotations

import time

from slack_bolt.adapter.socket_mode.internals import run_bolt_app
from slack_sdk.socket_mode.request import SocketModeRequest

from bot.models import RequestStatus as S
from bot.slack.app import build_app

from flow_harness import APPROVER_A, APPROVER_B
from test_flow_approval import plan
from test_flow_incidents import FLAG, FLAG_DOWN, FLAG_VERIFY, add_with_companions, approve_and_run


def open_incident(h):
    add_with_companions(h, "20240101000000_add_flag", FLAG, down=FLAG_DOWN, verify=FLAG_VERIFY)
    rid = plan(h)
    assert approve_and_run(h, rid, APPROVER_A).status is S.FAILED
    return h.store.find_incident(request_id=rid)


def human_reply(h, incident, text, user):
    """Someone answers in the incident thread (as a person, not the bot)."""
    posted = h.standin.workspace.chat_post_message({"channel": incident.channel, "thread_ts": incident.thread_ts,
                                                    "text": text})
    with h.standin.workspace.lock:
        stored = h.standin.workspace.channels[incident.channel][posted["ts"]]
        stored["user"] = user
        stored.pop("bot_id", None)
    return posted["ts"]


def pin(ts, incident, user=APPROVER_A):
    return {"type": "reaction_added", "user": user, "reaction": "pushpin", "item_user": APPROVER_B,
            "item": {"type": "message", "channel": incident.channel, "ts": ts}, "event_ts": f"{time.time():.6f}"}


def wait_notes(h, incident_id, count, timeout=10.0):
    deadline = time.monotonic() + timeout  # events are handled after Bolt acknowledges them
    while len(h.store.list_incident_notes(incident_id)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return h.store.list_incident_notes(incident_id)


def test_a_pin_on_a_thread_reply_lands_in_the_timeline(harness):
    incident = open_incident(harness)
    # later replies too, so "the first message after the parent" is not the pinned one by luck
    harness.standin.workspace.chat_post_message({"channel": incident.channel, "thread_ts": incident.thread_ts,
                                                 "text": "an earlier reply"})
    ts = human_reply(harness, incident, "root cause: the verify query expects an empty table", APPROVER_B)
    human_reply(harness, incident, "a later reply", APPROVER_A)
    sent = harness.standin.deliver_event(harness.sender, pin(ts, incident))
    assert sent is not None and sent.status == 200  # subscribed, scoped (reactions:read) and the bot is there
    notes = wait_notes(harness, incident.id, 1)
    assert [(n.source, n.author, n.text) for n in notes] == [
        ("pin", APPROVER_B, "root cause: the verify query expects an empty table")]
    reads = harness.standin.calls("conversations.replies")
    assert reads and all(c.ok for c in reads)


def test_a_pin_in_a_channel_the_bot_is_not_in_is_never_delivered(harness):
    incident = open_incident(harness)
    ts = human_reply(harness, incident, "note", APPROVER_B)
    harness.standin.member_of.discard(incident.channel)
    assert harness.standin.deliver_event(harness.sender, pin(ts, incident)) is None
    harness.standin.member_of.add(incident.channel)
    harness.standin.scopes.discard("reactions:read")  # the manifest once asked reactions:write instead
    assert "reactions:read" in (harness.standin.undeliverable(pin(ts, incident)) or "")
    assert harness.store.list_incident_notes(incident.id) == []


def test_socket_mode_first_delivery_is_processed_and_its_retry_is_not(harness):
    """Slack's Socket Mode envelope carries retry_attempt 0 on the first delivery; bolt turns it into
    x-slack-retry-num "0". It is processed; the same event retried (attempt 1) is acknowledged once more only."""
    incident = open_incident(harness)
    app = build_app(harness.settings, harness.config, harness.flow.notifier.client, socket_mode=True, flow=harness.flow)
    reply_ts = human_reply(harness, incident, "checking the index now", APPROVER_B)
    message = {"type": "message", "channel": incident.channel, "channel_type": "channel", "user": APPROVER_B,
               "text": "checking the index now", "ts": reply_ts, "thread_ts": incident.thread_ts}
    first = harness.standin.socket_envelope(message, event_id="Ev0SOCKET01")
    assert first is not None and first["retry_attempt"] == 0
    assert run_bolt_app(app, SocketModeRequest.from_dict(first)).status == 200
    assert [n.text for n in wait_notes(harness, incident.id, 1)] == ["checking the index now"]

    retried = harness.standin.socket_envelope(message, event_id="Ev0SOCKET01", retry_attempt=1)
    assert run_bolt_app(app, SocketModeRequest.from_dict(retried)).status == 200
    other_ts = human_reply(harness, incident, "action: check indexes before verify", APPROVER_B)
    pinned = harness.standin.socket_envelope(pin(other_ts, incident), event_id="Ev0SOCKET02")
    assert run_bolt_app(app, SocketModeRequest.from_dict(pinned)).status == 200
    notes = wait_notes(harness, incident.id, 2)
    time.sleep(0.3)  # give a wrongly re-processed retry the time to show up
    assert sorted(n.source for n in harness.store.list_incident_notes(incident.id)) == ["pin", "thread"]
    assert len(notes) == 2


def test_app_rate_limited_is_answered_200(harness):
    body = {"token": "legacy-verification-token", "type": "app_rate_limited", "team_id": "T0GUARDIAN",
            "minute_rate_limited": 1518467820, "api_app_id": "A0GUARDIAN"}
    import json

    sent = harness.sender.post(json.dumps(body), "application/json")
    assert sent.status == 200


def test_an_http_event_whose_first_delivery_was_lost_is_processed_once_from_its_retries(harness):
    """Slack retries an event it could not deliver (a deploy, a restart): the first retry that reaches us
    is handled, and later retries of the same event_id are acknowledged and do nothing."""
    from bot.slack.sender import Forge

    incident = open_incident(harness)
    reply_ts = human_reply(harness, incident, "the backfill is still running on replica 2", APPROVER_B)
    message = {"type": "message", "channel": incident.channel, "channel_type": "channel", "user": APPROVER_B,
               "text": "the backfill is still running on replica 2", "ts": reply_ts,
               "thread_ts": incident.thread_ts, "event_ts": reply_ts}
    for attempt in (1, 2, 3):  # delivery 0 never arrived
        sent = harness.sender.event(message, event_id="Ev0LOSTFIRST",
                                    forge=Forge(retry_num=attempt, retry_reason="http_error"))
        assert sent.status == 200
    notes = wait_notes(harness, incident.id, 1)
    time.sleep(0.3)  # give a wrongly re-processed retry the time to show up
    assert [n.text for n in harness.store.list_incident_notes(incident.id)] == [
        "the backfill is still running on replica 2"]
    assert len(notes) == 1
