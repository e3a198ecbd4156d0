"""The notifier: the domain's one way to Slack, answering (never raising) when Slack refuses."""
from __future__ import annotations

from slack_sdk import WebClient

from bot.slack.notifier import Notifier, Sent
from bot.slack.retries import with_retries


def _notifier(standin) -> Notifier:
    return Notifier(with_retries(WebClient(token=standin.token, base_url=standin.url)))


def test_a_post_into_a_thread_and_an_update_land_where_asked(standin):
    standin.add_bot_to("C1")
    notifier = _notifier(standin)
    root = notifier.post("test", "C1", {"text": "root"})
    reply = notifier.post("test", "C1", {"text": "reply"}, thread_ts=root.ts)
    assert root.error is None and reply.error is None and root.channel == "C1"
    assert notifier.update("test", "C1", root.ts, {"text": "root, updated"}).error is None
    messages = {m["ts"]: m for m in standin.messages("C1")}
    assert messages[root.ts]["text"] == "root, updated"
    assert messages[reply.ts]["thread_ts"] == root.ts
    assert notifier.permalink("test", "C1", root.ts)


def test_slack_refusing_is_an_answer_with_slacks_error_not_an_exception(standin):
    notifier = _notifier(standin)  # a private channel the bot was not invited to
    assert notifier.post("test", "G_PRIVATE", {"text": "hi"}).error == "not_in_channel"
    assert notifier.update("test", "G_PRIVATE", "1.0", {"text": "hi"}).error == "not_in_channel"
    standin.fail_next("chat.postMessage")  # Slack has a bad moment: HTTP 503
    assert notifier.post("test", "C1", {"text": "hi"}).error is not None


def test_user_groups_are_cached_and_names_resolved(standin):
    standin.usergroups["S0DBAS"] = ["U1", "U2"]
    notifier = _notifier(standin)
    assert notifier.group_members("S0DBAS") == ("U1", "U2")
    standin.usergroups["S0DBAS"] = ["U3"]
    assert notifier.group_members("S0DBAS") == ("U1", "U2")  # five minutes of cache
    assert notifier.group_members("S_UNKNOWN") == ()
    assert notifier.names(["S0DBAS", "U_NOBODY"]) == {}  # groups skipped; an unknown id stays an id


def test_without_a_client_nothing_is_sent_and_nothing_fails():
    notifier = Notifier(None)
    assert not notifier.enabled
    assert notifier.post("test", "C1", {"text": "hi"}) == Sent()
    assert notifier.update("test", "C1", "1.0", {"text": "hi"}) == Sent()
    assert notifier.permalink("test", "C1", "1.0") is None and notifier.group_members("S1") == ()
