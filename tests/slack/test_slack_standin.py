"""The Web API stand-in, driven by the real slack_sdk WebClient over HTTP."""
from __future__ import annotations

import json
import threading
import urllib.request

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.slack.standin import SlackStandIn


@pytest.fixture
def client(standin: SlackStandIn) -> WebClient:
    return WebClient(token=standin.token, base_url=standin.url)


def test_url_is_the_web_api_base(standin):
    assert standin.url == f"http://127.0.0.1:{standin.port}/api/"
    assert standin.port > 0


def test_post_update_replies_round_trip(client, standin):
    root = client.chat_postMessage(channel="C1", text="request #1", blocks=[{"type": "divider"}])
    assert root["ok"] and root["channel"] == "C1" and root["message"]["text"] == "request #1"
    reply = client.chat_postMessage(channel="C1", text="risk: low", thread_ts=root["ts"])
    assert reply["message"]["thread_ts"] == root["ts"]

    updated = client.chat_update(channel="C1", ts=root["ts"], text="request #1: approved")
    assert updated["message"]["text"] == "request #1: approved"

    standin.add_bot_to("C1")  # reading history needs the bot in the channel
    thread = client.conversations_replies(channel="C1", ts=root["ts"])["messages"]
    assert [m["text"] for m in thread] == ["request #1: approved", "risk: low"]
    assert thread[0]["reply_count"] == 1
    assert [m["ts"] for m in standin.messages("C1")] == [root["ts"], reply["ts"]]

    link = client.chat_getPermalink(channel="C1", message_ts=reply["ts"])["permalink"]
    assert link.startswith(standin.root_url) and f"thread_ts={root['ts']}" in link

    call = standin.wait_for("chat.update", lambda c: c.params["ts"] == root["ts"])
    assert call.token == standin.token and call.ok


def test_update_of_unknown_message_fails_like_slack(client):
    client.chat_postMessage(channel="C1", text="x")
    with pytest.raises(SlackApiError) as caught:
        client.chat_update(channel="C1", ts="1.999999", text="y")
    assert caught.value.response["error"] == "message_not_found"


def test_file_upload_sequence_keeps_the_content(client, standin):
    root = client.chat_postMessage(channel="C1", text="request")
    done = client.files_upload_v2(
        channel="C1", thread_ts=root["ts"], content="ALTER TABLE t ADD c int;", filename="m.sql", title="SQL"
    )
    file_id = done["file"]["id"]
    assert standin.file_content(file_id) == b"ALTER TABLE t ADD c int;"
    assert [c.method for c in standin.calls()][-3:] == [
        "files.getUploadURLExternal", "upload", "files.completeUploadExternal",
    ]
    shared = standin.messages("C1")[-1]
    assert shared["thread_ts"] == root["ts"] and shared["files"][0]["id"] == file_id
    request = urllib.request.Request(done["file"]["url_private"], headers={"Authorization": f"Bearer {standin.token}"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.read() == b"ALTER TABLE t ADD c int;"


def test_complete_upload_of_a_file_never_uploaded_fails(client):
    url = client.files_getUploadURLExternal(filename="x.sql", length=3)
    with pytest.raises(SlackApiError) as caught:
        client.files_completeUploadExternal(files=[{"id": url["file_id"], "title": "x"}], channel_id="C1")
    assert caught.value.response["error"] == "file_not_found"


@pytest.mark.parametrize(("token", "error"), [(None, "not_authed"), ("xoxb-forged", "invalid_auth")])
def test_missing_or_invalid_token(standin, token, error):
    with pytest.raises(SlackApiError) as caught:
        WebClient(token=token, base_url=standin.url).chat_postMessage(channel="C1", text="x")
    assert caught.value.response["error"] == error
    assert standin.messages("C1") == []
    assert standin.calls("chat.postMessage")[0].token == token


def test_unknown_method(client):
    with pytest.raises(SlackApiError) as caught:
        client.api_call("chat.frobnicate", json={"channel": "C1"})
    assert caught.value.response["error"] == "unknown_method"


def test_usergroups_users_and_views(standin):
    standin.scopes.add("users:read")  # the bot does not ask for it (bot/slack/manifest.py); this test does
    client = WebClient(token=standin.token, base_url=standin.url)
    standin.usergroups["S0DBAS"] = ["U1", "U2"]
    standin.users["U1"] = {"name": "ada", "real_name": "Ada L."}
    assert client.usergroups_users_list(usergroup="S0DBAS")["users"] == ["U1", "U2"]
    assert client.users_info(user="U1")["user"]["real_name"] == "Ada L."
    with pytest.raises(SlackApiError):
        client.users_info(user="U404")

    view = {"type": "modal", "callback_id": "x", "title": {"type": "plain_text", "text": "One"},
            "blocks": [{"type": "divider"}]}
    opened = client.views_open(trigger_id="1.2.3", view=view)["view"]
    changed = client.views_update(view_id=opened["id"], view={**view, "title": {"type": "plain_text", "text": "Two"}})
    assert changed["view"]["title"]["text"] == "Two"
    assert standin.views[opened["id"]]["title"]["text"] == "Two"


def test_ephemeral_reactions_and_form_encoded_calls(standin):
    standin.scopes.add("reactions:write")
    form = WebClient(token=standin.token, base_url=standin.url)
    posted = form.api_call("chat.postMessage", params={"channel": "C2", "text": "hi", "blocks": json.dumps([])})
    form.reactions_add(channel="C2", timestamp=posted["ts"], name="white_check_mark")
    assert standin.messages("C2")[0]["reactions"][0]["name"] == "white_check_mark"
    form.chat_postEphemeral(channel="C2", user="U1", text="only you")
    assert standin.ephemerals[0]["text"] == "only you"


def test_response_url_posts_are_recorded(standin):
    data = json.dumps({"text": "done", "response_type": "ephemeral"}).encode()
    request = urllib.request.Request(standin.response_url("r-1"), data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        assert resp.status == 200
    assert standin.responses("r-1")[0].params["text"] == "done"


def test_wait_for_sees_calls_from_other_threads_and_times_out(client, standin):
    threading.Timer(0.1, lambda: client.chat_postMessage(channel="C9", text="later")).start()
    assert standin.wait_for("chat.postMessage", lambda c: c.params["channel"] == "C9", timeout=5).ok
    with pytest.raises(TimeoutError):
        standin.wait_for("chat.delete", timeout=0.1)


def test_stop_releases_the_port():
    standin = SlackStandIn().start()
    url = standin.url
    standin.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "auth.test", timeout=1)


def test_recorded_params_are_decoded_whatever_the_encoding(standin):
    client = WebClient(token=standin.token, base_url=standin.url)
    client.api_call("chat.postMessage", params={"channel": "C3", "text": "f", "blocks": json.dumps([{"type": "divider"}])})
    client.chat_postMessage(channel="C3", text="j", blocks=[{"type": "divider"}])
    assert [c.params["blocks"] for c in standin.calls("chat.postMessage")] == [[{"type": "divider"}]] * 2
