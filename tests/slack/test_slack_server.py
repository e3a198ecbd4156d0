"""Signed Slack traffic over real HTTP into `guardian serve`, with the Web API stand-in behind it."""
from __future__ import annotations

import json
import time
import urllib.request

import pytest

from bot.config import GuardianConfig, Settings
from bot.errors import ConfigError
from bot.slack.commands_grammar import SUBCOMMANDS
from bot.slack.ids import ActionId, CallbackId
from bot.slack.mrkdwn import escape
from bot.slack.sender import Forge, SlackSender
from bot.slack.server import make_server
from bot.slack.standin import SlackStandIn


def test_healthz(server):
    with urllib.request.urlopen(server.base_url + "/healthz", timeout=5) as resp:
        assert resp.status == 200
        assert json.loads(resp.read()) == {"ok": True}


def test_signed_migrate_help_answers_with_the_command_list(sender, standin):
    reply = sender.slash_command("help")
    assert reply.status == 200
    body = reply.json()
    assert body["response_type"] == "ephemeral"
    for command in SUBCOMMANDS:
        assert f"/migrate {escape(command.usage)}" in body["text"]  # mrkdwn: <env> as &lt;env&gt;


def test_empty_text_is_help(sender):
    reply = sender.slash_command("")
    assert reply.status == 200
    assert "/migrate plan &lt;env&gt;" in reply.json()["text"]


def test_unknown_subcommand_answers_a_usage_line(sender):
    reply = sender.slash_command("frobnicate now")
    assert reply.status == 200
    body = reply.json()
    assert body["response_type"] == "ephemeral"
    assert "Unknown subcommand `frobnicate`" in body["text"]
    assert "Usage: `/migrate &lt;help|plan|" in body["text"]


def test_bad_arguments_answer_the_subcommand_usage(sender):
    reply = sender.slash_command("plan")
    assert reply.status == 200
    assert escape("/migrate plan <env> [<migration>…|pending] [--ref <git ref>]") in reply.json()["text"]


def test_wrong_signature_is_refused_and_nothing_happens(sender, standin):
    before = len(standin.calls())
    reply = sender.slash_command("help", forge=Forge(secret="not-the-signing-secret"))
    assert reply.status == 401
    assert "/migrate" not in reply.body
    time.sleep(0.2)  # anything the app did would be on the stand-in by now
    assert len(standin.calls()) == before


def test_unsigned_request_is_refused(sender):
    assert sender.slash_command("help", forge=Forge(unsigned=True)).status == 401


def test_timestamp_older_than_five_minutes_is_refused(sender):
    stale = int(time.time()) - 5 * 60 - 10
    reply = sender.slash_command("help", forge=Forge(timestamp=stale))
    assert reply.status == 401


def test_url_verification_echoes_the_challenge(sender):
    reply = sender.url_verification("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
    assert reply.status == 200
    assert reply.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}


def test_subscribed_events_are_acknowledged_even_when_retried(sender):
    message = {"type": "message", "channel": "C0GUARDIAN", "user": "U0REQUESTER", "text": "hi", "ts": "1.000001"}
    assert sender.event(message).status == 200
    retried = sender.event(message, forge=Forge(retry_num=1, retry_reason="http_timeout"))
    assert retried.status == 200
    reaction = {"type": "reaction_added", "user": "U1", "reaction": "eyes", "item": {"type": "message", "channel": "C1", "ts": "1.1"}}
    assert sender.event(reaction).status == 200


def test_button_click_is_acked_and_answered_through_response_url(sender, standin):
    reply = sender.block_action(
        ActionId.APPROVE.value, value="42", label="Approve", response_url=standin.response_url("click-1")
    )
    assert reply.status == 200
    posted = standin.wait_for("response_url", lambda c: c.params["id"] == "click-1")
    assert posted.params["response_type"] == "ephemeral"
    assert "Approve" in posted.params["text"]


def test_view_submission_is_answered_in_the_http_response(sender):
    reply = sender.view_submission(CallbackId.SQL_REQUEST.value)
    assert reply.status == 200
    assert reply.json()["response_action"] == "errors"


def test_missing_signing_secret_is_one_config_error_line(standin):
    settings = Settings(slack_bot_token=standin.token, slack_signing_secret=None, slack_api_url=standin.url)
    with pytest.raises(ConfigError) as caught:
        make_server(settings, GuardianConfig(), "127.0.0.1", 0)
    message = str(caught.value)
    assert "SLACK_SIGNING_SECRET" in message
    assert "\n" not in message
    assert standin.calls() == []  # refused before talking to Slack or binding


def test_missing_bot_token_is_one_config_error_line():
    settings = Settings(slack_bot_token=None, slack_signing_secret="s3cret", slack_api_url="http://127.0.0.1:9/api/")
    with pytest.raises(ConfigError) as caught:
        make_server(settings, GuardianConfig(), "127.0.0.1", 0)
    assert "SLACK_BOT_TOKEN" in str(caught.value) and "\n" not in str(caught.value)


def test_refused_bot_token_fails_before_binding_without_showing_it(standin):
    settings = Settings(slack_bot_token="xoxb-wrong-token", slack_signing_secret="s3cret", slack_api_url=standin.url)
    with pytest.raises(ConfigError) as caught:
        make_server(settings, GuardianConfig(), "127.0.0.1", 0)
    assert "invalid_auth" in str(caught.value)
    assert "xoxb-wrong-token" not in str(caught.value)


def test_sender_signature_matches_slack_sdk_verifier():
    from slack_sdk.signature import SignatureVerifier

    from bot.slack.sender import sign

    ts = str(int(time.time()))
    body = "command=%2Fmigrate&text=help"
    assert SignatureVerifier("abc").is_valid(body, ts, sign("abc", ts, body))
    assert not SignatureVerifier("abc").is_valid(body, ts, sign("xyz", ts, body))


def test_port_resolution_honours_the_port_variable(monkeypatch):
    from bot.slack.server import resolve_port

    monkeypatch.delenv("PORT", raising=False)
    assert resolve_port(None) == 3000
    monkeypatch.setenv("PORT", "8123")
    assert resolve_port(None) == 8123
    assert resolve_port(4000) == 4000
    monkeypatch.setenv("PORT", "web")
    with pytest.raises(ConfigError) as caught:
        resolve_port(None)
    assert "PORT" in str(caught.value)

