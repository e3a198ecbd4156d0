"""The stand-in refuses what Slack refuses: invalid Block Kit and views, missing scopes, channels the bot is not
in, bursts over a method's rate limit; and it pages conversations.replies parent-first like Slack."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.slack import standin_rules as rules
from bot.slack.manifest import BOT_EVENTS, BOT_SCOPES
from bot.slack.retries import with_retries
from bot.slack.standin import SlackStandIn
from bot.slack.standin_limits import RateLimits

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def client(standin: SlackStandIn) -> WebClient:
    return WebClient(token=standin.token, base_url=standin.url)  # no retry handler: a 429 is raised


def refused(call) -> dict:
    with pytest.raises(SlackApiError) as caught:
        call()
    return caught.value.response.data


def section(text: str, **extra) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


@pytest.mark.parametrize(("blocks", "pointer"), [
    ([section("x" * 3001)], "/blocks/0/text"),
    ([{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}], "/blocks/0"),
    ([{"type": "actions", "elements": [{"type": "button", "action_id": "a", "text": {"type": "plain_text",
                                                                                    "text": "b" * 76}}]}], "/blocks/0"),
    ([{"type": "actions", "elements": [{"type": "button", "action_id": "a" * 256, "text": {"type": "plain_text",
                                                                                          "text": "ok"}}]}], "/blocks/0"),
    ([section("x", block_id="b" * 256)], "/blocks/0"),
    ([{"type": "divider"}] * 51, "/blocks"),
    ([section("x", fields=[{"type": "mrkdwn", "text": "f"}] * 11)], "/blocks/0"),
    ([section("x", fields=[{"type": "mrkdwn", "text": "f" * 2001}])], "/blocks/0/fields/0/text"),
    ([{"type": "sectoin", "text": {"type": "mrkdwn", "text": "typo"}}], "/blocks/0/type"),
    ([section("x", colour="red")], "/blocks/0/colour"),
    ([section("a", block_id="same"), section("b", block_id="same")], "/blocks/1/block_id"),
])
def test_invalid_blocks_are_refused_with_a_json_pointer(client, standin, blocks, pointer):
    body = refused(lambda: client.chat_postMessage(channel="C1", text="t", blocks=blocks))
    assert body["error"] == "invalid_blocks"
    assert any(f"[json-pointer:{pointer}" in m for m in body["response_metadata"]["messages"]), body
    assert standin.messages("C1") == []


def test_valid_blocks_at_the_limits_pass_and_too_long_text_does_not(client, standin):
    fine = [section("x" * 3000, fields=[{"type": "mrkdwn", "text": "f" * 2000}] * 10, block_id="b" * 255),
            {"type": "header", "text": {"type": "plain_text", "text": "h" * 150}},
            {"type": "actions", "elements": [{"type": "button", "action_id": "a" * 255,
                                              "text": {"type": "plain_text", "text": "b" * 75}, "value": "1"}]}]
    fine += [{"type": "divider"}] * (50 - len(fine))
    assert client.chat_postMessage(channel="C1", text="t", blocks=fine)["ok"]
    posted = client.chat_postMessage(channel="C1", text="t")
    assert refused(lambda: client.chat_update(channel="C1", ts=posted["ts"], text="t", blocks=[section("")]))[
        "error"] == "invalid_blocks"
    assert refused(lambda: client.chat_postMessage(channel="C1", text="x" * 40_001))["error"] == "msg_too_long"


def test_views_are_validated_like_slack(client):
    view = {"type": "modal", "callback_id": "x", "title": {"type": "plain_text", "text": "Fine"},
            "blocks": [{"type": "divider"}]}
    assert client.views_open(trigger_id="1.2.3", view=view)["ok"]
    assert refused(lambda: client.views_open(trigger_id="1.2.3", view={**view, "blocks": [{"type": "divider"}] * 101})
                   )["error"] == "invalid_arguments"
    body = refused(lambda: client.views_open(trigger_id="1.2.3", view={
        **view, "title": {"type": "plain_text", "text": "t" * 25}}))
    assert body["error"] == "invalid_arguments" and "title" in str(body["response_metadata"])


def test_scopes_come_from_the_manifest_and_are_enforced(client, standin):
    assert standin.scopes == set(BOT_SCOPES) and standin.events == set(BOT_EVENTS)
    standin.users["U1"] = {"name": "ada"}
    assert client.users_info(user="U1")["user"]["name"] == "ada"  # users:read: names in the post-mortem
    root = client.chat_postMessage(channel="C1", text="root")
    body = refused(lambda: client.reactions_add(channel="C1", name="pushpin", timestamp=root["ts"]))
    assert body["error"] == "missing_scope" and body["needed"] == "reactions:write"  # the bot never reacts
    assert "chat:write" in body["provided"].split(",")
    standin.scopes.discard("usergroups:read")
    assert refused(lambda: client.usergroups_users_list(usergroup="S1"))["needed"] == "usergroups:read"


def test_not_in_channel_unless_invited_and_chat_write_public_only_posts(client, standin):
    assert client.chat_postMessage(channel="C1", text="public: chat:write.public lets the bot post")["ok"]
    root = client.chat_postMessage(channel="C1", text="root")
    assert refused(lambda: client.conversations_replies(channel="C1", ts=root["ts"]))["error"] == "not_in_channel"
    assert refused(lambda: client.chat_postMessage(channel="G1", text="private"))["error"] == "not_in_channel"
    assert refused(lambda: client.chat_postMessage(channel="D1", text="someone's DM"))["error"] == "not_in_channel"
    standin.private_channels.add("C9")
    assert refused(lambda: client.chat_postMessage(channel="C9", text="private"))["error"] == "not_in_channel"
    standin.add_bot_to("C1", "C9")
    assert client.conversations_replies(channel="C1", ts=root["ts"])["ok"]
    assert client.chat_postMessage(channel="C9", text="invited")["ok"]
    standin.scopes.discard("chat:write.public")
    assert refused(lambda: client.chat_postMessage(channel="C2", text="x"))["error"] == "not_in_channel"


def test_replies_are_parent_first_limited_and_bounded_like_slack(client, standin):
    standin.add_bot_to("C1")
    root = client.chat_postMessage(channel="C1", text="root")["ts"]
    replies = [client.chat_postMessage(channel="C1", text=f"r{i}", thread_ts=root)["ts"] for i in range(4)]
    one = client.conversations_replies(channel="C1", ts=replies[2], limit=1)
    assert [m["text"] for m in one["messages"]] == ["root"] and one["has_more"]  # the bug pins had
    exact = client.conversations_replies(channel="C1", ts=replies[2], oldest=replies[2], latest=replies[2],
                                         inclusive=True, limit=2)
    assert [m["text"] for m in exact["messages"]] == ["root", "r2"]
    exclusive = client.conversations_replies(channel="C1", ts=root, oldest=replies[0], latest=replies[3])
    assert [m["text"] for m in exclusive["messages"]] == ["root", "r1", "r2"]
    page = client.conversations_replies(channel="C1", ts=root, limit=3)
    assert [m["text"] for m in page["messages"]] == ["root", "r0", "r1"] and page["has_more"]
    rest = client.conversations_replies(channel="C1", ts=root, limit=3,
                                        cursor=page["response_metadata"]["next_cursor"])
    assert [m["text"] for m in rest["messages"]] == ["root", "r2", "r3"] and not rest["has_more"]
    history = client.conversations_history(channel="C1", latest=root, inclusive=True, limit=1)
    assert [m["text"] for m in history["messages"]] == ["root"]


def test_bursts_get_429_with_retry_after_per_channel(client, standin):
    results = []
    for i in range(15):
        try:
            results.append(client.chat_postMessage(channel="C1", text=f"m{i}")["ok"])
        except SlackApiError as exc:
            assert exc.response.status_code == 429 and exc.response["error"] == "ratelimited"
            assert int(exc.response.headers["retry-after"]) >= 1
            results.append(False)
    assert results[:10] == [True] * 10 and not all(results)  # a short burst, then about one a second
    assert client.chat_postMessage(channel="C2", text="another channel has its own allowance")["ok"]
    assert standin.throttled("chat.postMessage")
    assert len(standin.messages("C1")) == results.count(True)


def test_tier_limits_apply_to_other_methods(standin):
    client = WebClient(token=standin.token, base_url=standin.url)
    standin.usergroups["S1"] = ["U1"]
    outcomes = []
    for _ in range(25):  # Tier 2: about 20 a minute
        try:
            outcomes.append(client.usergroups_users_list(usergroup="S1")["ok"])
        except SlackApiError as exc:
            outcomes.append(exc.response.status_code)
    assert outcomes[:20] == [True] * 20 and 429 in outcomes[20:]


def test_limits_can_be_shortened_but_not_switched_off():
    with pytest.raises(ValueError):
        RateLimits(window=0)
    fast = RateLimits(window=0.6)  # posts refill ten times a second here
    waits = [fast.take("chat.postMessage", "C1") for _ in range(11)]
    assert waits[:10] == [0.0] * 10 and 0 < waits[10] <= 0.02


def test_the_retry_handler_delivers_every_message_of_a_burst(standin):
    client = with_retries(WebClient(token=standin.token, base_url=standin.url))
    for i in range(13):
        assert client.chat_postMessage(channel="C1", text=f"m{i}")["ok"]
    assert [m["text"] for m in standin.messages("C1")] == [f"m{i}" for i in range(13)]
    assert standin.throttled("chat.postMessage")  # it was throttled, and waited


def test_events_need_a_subscription_a_scope_and_the_bot_in_the_channel(standin):
    reply = {"type": "message", "channel": "C1", "user": "U1", "text": "hi", "ts": "1.2", "thread_ts": "1.1"}
    pin = {"type": "reaction_added", "user": "U1", "reaction": "pushpin", "item": {"type": "message",
                                                                                   "channel": "C1", "ts": "1.2"}}
    assert "not in C1" in standin.undeliverable(reply)
    standin.add_bot_to("C1", "G1")
    assert standin.undeliverable(reply) is None and standin.undeliverable(pin) is None
    assert standin.undeliverable({**reply, "channel": "G1"}) is None  # message.groups: private channels
    assert "im" in standin.undeliverable({**reply, "channel": "D1"})  # not subscribed to message.im
    standin.scopes.discard("reactions:read")
    assert "reactions:read" in standin.undeliverable(pin)
    envelope = standin.socket_envelope(reply, event_id="Ev1")
    assert envelope["retry_attempt"] == 0 and envelope["type"] == "events_api"
    assert envelope["payload"]["event"] == reply and envelope["payload"]["event_id"] == "Ev1"
    assert standin.socket_envelope(pin, event_id="Ev2") is None


SDK_CALL = re.compile(r"\.(chat_\w+|views_\w+|users_\w+|usergroups_\w+|conversations_\w+|reactions_\w+|files_\w+)\(")
SDK_METHODS = {"files_upload_v2": ("files.getUploadURLExternal", "files.completeUploadExternal"),
               "usergroups_users_list": ("usergroups.users.list",)}


def test_the_manifest_asks_exactly_for_the_scopes_the_bot_uses():
    used: set[str] = set()
    for path in [*ROOT.joinpath("bot").rglob("*.py"), *ROOT.joinpath("workers").rglob("*.py")]:
        if path.name.startswith("standin") or path.name == "sender.py":
            continue
        for name in SDK_CALL.findall(path.read_text()):
            parts = name.split("_", 1)
            used.update(SDK_METHODS.get(name, (f"{parts[0]}.{parts[1]}",)))
    needed = {rules.needed_scope(m, {}, kind=kind) for m in used for kind in ("public", "private")}
    needed |= {rules.EVENT_SCOPES[e] for e in BOT_EVENTS}
    needed |= {"commands", "chat:write.public"}  # the slash command; posting where the bot was not invited
    assert set(BOT_SCOPES) == needed - {None}, used


def test_response_url_messages_are_validated_too(standin):
    import json
    import urllib.error
    import urllib.request

    def post(message: dict) -> int:
        request = urllib.request.Request(standin.response_url("r1"), data=json.dumps(message).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert post({"text": "fine", "blocks": [section("fine")]}) == 200
    assert post({"text": "t", "blocks": [section("x" * 3001)]}) == 400
    assert [c.ok for c in standin.responses("r1")] == [True, False]
