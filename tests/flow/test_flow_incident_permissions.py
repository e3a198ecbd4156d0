"""Who may add incident notes, publish post-mortems and open incidents on succeeded requests: decided by each
environment's policy, end to end over real HTTP with the real store, worker and Slack stand-in."""
from __future__ import annotations

import json
import time

from bot.models import RequestStatus as S
from bot.slack.ids import ActionId

from flow_harness import APPROVER_A, APPROVER_B, DBA, OUTSIDER, REQUESTER
from test_flow_approval import ADD_COLUMN, plan
from test_flow_incidents import incident_card
from workers import runtime as runtime_module


def succeeded_request(h) -> int:
    h.add_migration("20240101000000_add_nickname", ADD_COLUMN)
    rid = plan(h)
    _, reply = h.click(ActionId.APPROVE.value, rid, APPROVER_A)
    h.replies(reply)
    h.run_jobs()
    assert h.store.get_request(rid).status is S.SUCCEEDED
    return rid


def command_reply(h, text: str, user: str) -> str:
    _, rid = h.command(text, user=user)
    return "\n".join(h.replies(rid))


def set_staging(h, **keys) -> None:
    """Change staging's incident keys for the bot and the worker, as an edited guardian.toml would."""
    staging = h.config.environments["staging"].model_copy(update=keys)
    config = h.config.model_copy(update={"environments": {**h.config.environments, "staging": staging}})
    h.flow.config = runtime_module.runtime().config = config


def wait_notes(h, incident_id: int, count: int) -> list:
    deadline = time.monotonic() + 10  # events are handled after Bolt acknowledges them
    while len(h.store.list_incident_notes(incident_id)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return h.store.list_incident_notes(incident_id)


def told_outsider(h) -> list:
    return [c for c in h.standin.calls("chat.postEphemeral") if c.params.get("user") == OUTSIDER]


def test_outsider_cannot_open_an_incident_on_a_succeeded_request_but_the_requester_can(harness):
    rid = succeeded_request(harness)
    refused = command_reply(harness, f"incident {rid}", OUTSIDER)
    assert f"request #{rid} succeeded" in refused and "only the staging approvers" in refused
    assert "<@U_A>, <@U_B>, <!subteam^S0DBAS>" in refused and f"the requester (<@{REQUESTER}>)" in refused
    assert harness.store.find_incident(request_id=rid) is None  # nothing was opened

    opened = command_reply(harness, f"incident {rid}", REQUESTER)
    incident = harness.store.find_incident(request_id=rid)
    assert incident is not None and f"Incident #{incident.id}" in opened and incident.opened_by == REQUESTER
    card = json.dumps(incident_card(harness, incident))
    assert f"opened by <@{REQUESTER}> on a succeeded request (#{rid})" in card  # says what it means
    assert f"opened by <@{REQUESTER}> on a succeeded request" in incident.summary


def test_an_approver_by_user_group_may_open_one_but_not_the_requester_when_managers_are_approvers(harness):
    rid = succeeded_request(harness)
    set_staging(harness, incident_managers="approvers")
    refused = command_reply(harness, f"incident {rid}", REQUESTER)
    assert "only the staging approvers" in refused and "requester" not in refused
    assert harness.store.find_incident(request_id=rid) is None
    command_reply(harness, f"incident {rid}", DBA)  # a member of the S0DBAS approver group
    assert harness.store.find_incident(request_id=rid).opened_by == DBA


def test_anyone_notes_by_default_attributed_but_only_managers_publish_the_postmortem(harness):
    rid = succeeded_request(harness)
    command_reply(harness, f"incident {rid}", APPROVER_B)
    incident = harness.store.find_incident(request_id=rid)

    # an outsider's note, by command and by thread reply, is recorded under their name
    assert "Added to the timeline" in command_reply(harness, f"note {incident.id} users report slow logins", OUTSIDER)
    reply = harness.standin.workspace.chat_post_message({"channel": incident.channel, "thread_ts": incident.thread_ts,
                                                         "text": "seeing it on eu-west too"})
    harness.sender.event({"type": "message", "channel": incident.channel, "user": OUTSIDER,
                          "text": "seeing it on eu-west too", "ts": reply["ts"], "thread_ts": incident.thread_ts})
    notes = wait_notes(harness, incident.id, 2)
    assert sorted((n.author, n.source) for n in notes) == [(OUTSIDER, "command"), (OUTSIDER, "thread")]

    refused = command_reply(harness, f"postmortem {incident.id}", OUTSIDER)
    assert "only the staging approvers" in refused and "publish the post-mortem" in refused
    assert f"the requester (<@{REQUESTER}>)" in refused
    assert harness.store.get_incident(incident.id).postmortem is None
    assert not harness.standin.calls("files.completeUploadExternal")

    for user in (REQUESTER, APPROVER_A):
        assert "post-mortem draft" in command_reply(harness, f"postmortem {incident.id}", user)
    markdown = harness.store.get_incident(incident.id).postmortem
    assert f"<@{OUTSIDER}>: 📝 users report slow logins" in markdown  # attributed in the timeline
    assert f"<@{OUTSIDER}>: 💬 seeing it on eu-west too" in markdown
    assert len(harness.standin.calls("files.completeUploadExternal")) == 2


def test_notes_restricted_to_approvers_refuse_an_outsider_by_command_reply_and_pin(harness):
    rid = succeeded_request(harness)
    command_reply(harness, f"incident {rid}", APPROVER_A)
    incident = harness.store.find_incident(request_id=rid)
    set_staging(harness, incident_notes="approvers")
    channel, thread = incident.channel, incident.thread_ts

    refused = command_reply(harness, f"note {incident.id} I think it is the index", OUTSIDER)
    assert "only the staging approvers" in refused and "can add notes" in refused

    reply = harness.standin.workspace.chat_post_message({"channel": channel, "thread_ts": thread, "text": "me too"})
    harness.sender.event({"type": "message", "channel": channel, "user": OUTSIDER, "text": "me too",
                          "ts": reply["ts"], "thread_ts": thread})
    told = harness.standin.wait_for("chat.postEphemeral", lambda c: c.params.get("user") == OUTSIDER, timeout=10)
    assert "Not added to the timeline" in str(told.params.get("text")) and told.params.get("thread_ts") == thread

    # an approver's message pinned by the outsider stays out too: the pinner decides what enters the timeline
    pinned = harness.standin.workspace.chat_post_message({"channel": channel, "thread_ts": thread,
                                                          "text": "action: add an index check"})
    harness.standin.workspace.channels[channel][pinned["ts"]]["user"] = APPROVER_B
    harness.sender.event({"type": "reaction_added", "user": OUTSIDER, "reaction": "pushpin",
                          "item": {"type": "message", "channel": channel, "ts": pinned["ts"]}})
    deadline = time.monotonic() + 10
    while len(told_outsider(harness)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [c.params.get("thread_ts") for c in told_outsider(harness)] == [thread, thread]
    assert "can add notes" in str(told_outsider(harness)[1].params.get("text"))
    assert harness.store.list_incident_notes(incident.id) == []

    # the same pin by an approver is recorded, attributed to the message's author
    harness.sender.event({"type": "reaction_added", "user": APPROVER_A, "reaction": "pushpin",
                          "item": {"type": "message", "channel": channel, "ts": pinned["ts"]}})
    assert "Added to the timeline" in command_reply(harness, f"note {incident.id} checking the index", APPROVER_A)
    notes = wait_notes(harness, incident.id, 2)
    assert sorted((n.author, n.source) for n in notes) == [(APPROVER_A, "command"), (APPROVER_B, "pin")]


def test_help_says_who_may_note_publish_and_open_by_default():
    from bot.slack.blocks import build_help_message

    text = build_help_message()["text"].replace("&lt;", "<").replace("&gt;", ">")  # mrkdwn-escaped placeholders
    assert "`/migrate note <incident> <text>` — add a note, under your name, to an incident's timeline (by default anyone may)" in text
    assert "(on one that succeeded: by default its requester or approvers)" in text
    assert "`/migrate postmortem <incident>` — post the post-mortem draft" in text and text.count("its requester or approvers") == 2
