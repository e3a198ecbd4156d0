"""The one app-wide error handler: plain messages for GuardianError, an error id for anything else."""
from __future__ import annotations

import logging
import re
import threading

import pytest
import waitress
from slack_bolt import Ack

from bot.errors import PolicyDenied
from bot.slack.app import build_app
from bot.slack.sender import SlackSender
from bot.slack.server import build_wsgi_app, stop_server


@pytest.fixture
def failing_sender(slack_settings, guardian_config, standin):
    secret = slack_settings.slack_signing_secret.get_secret_value()
    app = build_app(slack_settings, guardian_config)

    @app.command("/boom")
    def handle_boom_command(ack: Ack, command: dict) -> None:
        ack()
        if command["text"] == "policy":
            raise PolicyDenied("You cannot approve your own request; ask another approver.")
        raise RuntimeError("database password is hunter2")

    @app.command("/early")
    def handle_early_command(ack: Ack) -> None:
        raise RuntimeError("failed before ack")

    server = waitress.create_server(build_wsgi_app(app), host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield SlackSender(f"http://127.0.0.1:{server.effective_port}/slack/events", signing_secret=secret)
    stop_server(server)
    thread.join(timeout=5)


def test_unexpected_error_gives_an_error_id_the_logs_also_have(failing_sender, standin, caplog):
    caplog.set_level(logging.ERROR, logger="bot.slack.app")
    reply = failing_sender.slash_command("x", command="/boom", response_url=standin.response_url("b1"))
    assert reply.status == 200
    posted = standin.wait_for("response_url", lambda c: c.params["id"] == "b1")
    assert posted.params["response_type"] == "ephemeral"
    error_id = re.search(r"error id `(E-[0-9a-f]+)`", posted.params["text"]).group(1)
    assert "hunter2" not in posted.params["text"]
    assert any(error_id in r.getMessage() for r in caplog.records)


def test_guardian_error_is_shown_as_its_plain_message(failing_sender, standin):
    failing_sender.slash_command("policy", command="/boom", response_url=standin.response_url("b2"))
    posted = standin.wait_for("response_url", lambda c: c.params["id"] == "b2")
    assert "You cannot approve your own request; ask another approver." in posted.params["text"]
    assert "error id" not in posted.params["text"]


def test_error_before_ack_is_answered_in_the_http_response(failing_sender):
    reply = failing_sender.slash_command("", command="/early")
    assert reply.status == 200
    body = reply.json()
    assert body["response_type"] == "ephemeral" and "error id `E-" in body["text"]
