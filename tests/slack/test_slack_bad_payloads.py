"""Signed but malformed or oversized Slack traffic gets a short plain 400/413 (never a 500 or a traceback),
forged traffic still 401, and command text has limits with a clear message (issue 13)."""
from __future__ import annotations

import json
import logging
import time
from urllib.parse import urlencode

import pytest

from bot.slack.commands_grammar import MAX_COMMAND_CHARS, CommandUsageError, PlanCommand, parse_command
from bot.slack.sender import FORM, JSON, Forge
from bot.slack.server import MAX_BODY_BYTES, body_problem


def _payload(data) -> str:
    return urlencode({"payload": data if isinstance(data, str) else json.dumps(data)})


ACTION = {"type": "block_actions", "user": {"id": "U1"}, "actions": [{"action_id": "request_approve", "value": "1"}]}
VIEW = {"type": "view_submission", "user": {"id": "U1"}, "view": {"callback_id": "sql_request", "state": {"values": {}}}}

MALFORMED = {
    "payload is not JSON": (_payload("{not json"), FORM, "payload is not JSON"),
    "payload is a list": (_payload([1, 2]), FORM, "not a JSON object"),
    "payload is a string": (_payload('"x"'), FORM, "not a JSON object"),
    "payload without type": (_payload({}), FORM, "no type"),
    "click without user": (_payload({**ACTION, "user": None}), FORM, "user"),
    "user is a string": (_payload({**ACTION, "user": "U1"}), FORM, "payload.user is not an object"),
    "actions not a list": (_payload({**ACTION, "actions": "approve"}), FORM, "payload.actions is not a list"),
    "no actions": (_payload({**ACTION, "actions": []}), FORM, "no actions"),
    "action without id": (_payload({**ACTION, "actions": [{"value": "1"}]}), FORM, "no action_id"),
    "action value a number": (_payload({**ACTION, "actions": [{"action_id": "a", "value": 1}]}), FORM, "action.value"),
    "channel id a list": (_payload({**ACTION, "channel": {"id": ["C1"]}}), FORM, "channel.id"),
    "view not an object": (_payload({**VIEW, "view": "x"}), FORM, "payload.view is not an object"),
    "view without callback": (_payload({**VIEW, "view": {}}), FORM, "callback_id"),
    "view values not objects": (_payload({**VIEW, "view": {"callback_id": "c", "state": {"values": {"b": 1}}}}),
                                FORM, "view.state.values"),
    "view metadata not JSON": (_payload({**VIEW, "view": {"callback_id": "c", "private_metadata": "{x"}}), FORM,
                               "private_metadata is not JSON"),
    "deep payload": (_payload("[" * 100_000 + "]" * 100_000), FORM, "payload is not JSON"),
    "not form-encoded": ("\x00 some bytes that are not a form", FORM, "not form-encoded"),
    "plain text": ("hello", "text/plain", "not form-encoded"),
    "empty body": ("", FORM, "neither"),
    "command without user": (urlencode({"command": "/migrate", "text": "help"}), FORM, "no user_id"),
    "command text twice": ("command=%2Fmigrate&user_id=U1&text=help&text=plan", FORM, "more than once"),
    "json not an object": ("[1]", JSON, "not a JSON object"),
    "json broken": ("{", JSON, "not JSON"),
    "event without event": (json.dumps({"type": "event_callback"}), JSON, "no event"),
    "event is a string": (json.dumps({"type": "event_callback", "event": "x"}), JSON, "no event"),
    "event user a number": (json.dumps({"type": "event_callback", "event": {"type": "message", "user": 5}}), JSON,
                            "event.user"),
    "challenge missing": (json.dumps({"type": "url_verification"}), JSON, "challenge"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_signed_malformed_body_gets_a_short_plain_400(sender, standin, name, caplog):
    caplog.set_level(logging.INFO)
    body, content_type, says = MALFORMED[name]
    before = len(standin.calls())
    reply = sender.post(body, content_type)
    assert reply.status == 400, reply
    assert reply.headers["content-type"].startswith("text/plain")
    assert reply.body.startswith("malformed Slack request: ") and says in reply.body
    assert "\n" not in reply.body.strip() and len(reply.body) < 200
    assert "Traceback" not in caplog.text
    time.sleep(0.1)
    assert len(standin.calls()) == before  # nothing reached a listener


@pytest.mark.parametrize("name", ["payload is not JSON", "not form-encoded", "json broken", "click without user"])
def test_forged_or_unsigned_malformed_body_is_still_401(sender, name):
    body, content_type, _ = MALFORMED[name]
    assert sender.post(body, content_type, forge=Forge(secret="not-the-secret")).status == 401
    assert sender.post(body, content_type, forge=Forge(unsigned=True)).status == 401


def test_a_body_that_is_not_utf8_is_400_signed_and_401_forged(sender):
    import hashlib
    import hmac
    import urllib.error
    import urllib.request

    raw = b"command=%2Fmigrate&text=\xff\xfe&user_id=U1"
    for secret, status in ((sender.signing_secret, 400), ("forged", 401)):
        ts = str(int(time.time()))
        signature = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:".encode() + raw, hashlib.sha256).hexdigest()
        request = urllib.request.Request(sender.url, data=raw, method="POST", headers={
            "Content-Type": FORM, "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                got, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            got, text = exc.code, exc.read().decode()
        assert got == status, text
        assert "Traceback" not in text


def test_a_body_over_the_limit_is_refused_before_anything_reads_it(server, standin):
    """A 10 MB command was stored and posted whole: now its size alone (Content-Length) refuses it."""
    import socket

    before = len(standin.calls())
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(f"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\n"
                     f"Content-Length: {10 * 2**20}\r\n\r\ncommand=%2Fmigrate&text=".encode())
        answer = conn.recv(4096).decode("latin-1")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert "Traceback" not in answer
    assert len(standin.calls()) == before
    assert MAX_BODY_BYTES < 10 * 2**20


def test_a_signed_10_kb_command_is_answered_with_the_limit_and_nothing_is_echoed(sender, standin):
    text = "note 1 " + "spam " * 2_000
    reply = sender.slash_command(text)
    assert reply.status == 200
    said = reply.json()["text"]
    assert f"at most {MAX_COMMAND_CHARS:,}" in said and "spam spam" not in said and len(said) < 500


def test_well_formed_traffic_still_works(sender):
    assert sender.slash_command("help").status == 200
    assert sender.url_verification("abc").json() == {"challenge": "abc"}
    assert sender.post("ssl_check=1&token=x", FORM).status == 200


def test_body_problem_accepts_what_slack_sends():
    assert body_problem(_payload(ACTION).encode(), FORM) is None
    assert body_problem(_payload(VIEW).encode(), FORM) is None
    assert body_problem(urlencode({"command": "/migrate", "text": "", "user_id": "U1"}).encode(), FORM) is None
    event = {"type": "event_callback", "event": {"type": "reaction_added", "user": "U1", "item": {"ts": "1.1"}}}
    assert body_problem(json.dumps(event).encode(), "application/json; charset=utf-8") is None
    # org-wide installs send nulls; some events carry a user object
    grid = {**ACTION, "team": None, "enterprise": None, "channel": None, "message": None}
    assert body_problem(_payload(grid).encode(), FORM) is None
    assert body_problem(_payload({**VIEW, "view": {"callback_id": "c", "state": None}}).encode(), FORM) is None
    joined = {"type": "event_callback", "event": {"type": "team_join", "user": {"id": "U1"}}}
    assert body_problem(json.dumps(joined).encode(), "application/json") is None


# ------------------------------------------------------------------ the /migrate grammar's limits

@pytest.mark.parametrize("ref", ["main", "feature/login-v2", "v1.2.3", "0123abcd" * 5, "main~1", "HEAD^2", "r" * 255])
def test_ordinary_refs_are_accepted(ref):
    assert parse_command(f"plan staging --ref {ref}") == PlanCommand(env="staging", ref=ref)
    assert parse_command(f"plan staging --ref={ref}").ref == ref


@pytest.mark.parametrize("ref,says", [
    ("a\x00b", "NUL character"),
    ("a\x01b", "control character"),
    ("a\x7fb", "control character"),
    ("main..evil", "`..`"),
    ("-delete", "not starting with `-`"),
    ("--upload-pack=x", "not starting with `-`"),
    ("r" * 256, "at most 255"),
    ("a@{1}", "not a git ref name"),
    ("a:b", "not a git ref name"),
    ("a\\b", "not a git ref name"),
    ("refs/heads/x.lock", "not a git ref name"),
    ("dir//x", "not a git ref name"),
    ("x/", "not a git ref name"),
])
def test_bad_refs_are_refused_naming_what_is_allowed(ref, says):
    with pytest.raises(CommandUsageError) as caught:
        parse_command(f"plan staging --ref={ref}")
    message = caught.value.message
    assert says in message and "\x00" not in message and len(message) < 400
    assert "/migrate plan <env>" in message or "NUL" in message


def test_command_text_limit_and_nul():
    assert parse_command("note 7 " + "n" * (MAX_COMMAND_CHARS - 7)).text == "n" * (MAX_COMMAND_CHARS - 7)
    with pytest.raises(CommandUsageError) as caught:
        parse_command("note 7 " + "n" * MAX_COMMAND_CHARS)
    assert "at most 4,000" in caught.value.message
    with pytest.raises(CommandUsageError) as caught:
        parse_command("note 7 hello\x00world")
    assert "NUL" in caught.value.message


def test_long_bad_values_are_not_echoed_whole():
    for text in ("x" * 3000, "plan " + "e" * 3000, "plan staging --" + "o" * 3000, "freeze staging " + "d" * 3000 + " r"):
        with pytest.raises(CommandUsageError) as caught:
            parse_command(text)
        assert len(caught.value.message) < 400, text[:20]
