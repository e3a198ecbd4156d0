"""The app manifest and the `/migrate` grammar (pure)."""
from __future__ import annotations

import json

import pytest

from bot.config import GuardianConfig, Settings
from bot.errors import ConfigError
from bot.slack.commands_grammar import (
    CommandUsageError,
    FreezeCommand,
    HelpCommand,
    NoteCommand,
    PlanCommand,
    StatusCommand,
    parse_command,
)
from bot.slack.manifest import build_manifest
from bot.slack.socket import run_socket


def test_manifest_has_the_command_scopes_and_one_url():
    manifest = build_manifest("Migration Guardian", "https://guardian.example.com", socket_mode=False)
    json.dumps(manifest)
    (command,) = manifest["features"]["slash_commands"]
    assert command["command"] == "/migrate" and command["usage_hint"].startswith("help | plan <env>")
    url = "https://guardian.example.com/slack/events"
    assert command["url"] == url
    assert manifest["settings"]["interactivity"] == {"is_enabled": True, "request_url": url}
    assert manifest["settings"]["event_subscriptions"]["request_url"] == url
    assert set(manifest["settings"]["event_subscriptions"]["bot_events"]) == {
        "message.channels", "message.groups", "reaction_added"}  # message.groups: private incident channels
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == {  # reaction_added needs reactions:read
        "commands", "chat:write", "chat:write.public", "files:write", "reactions:read",
        "usergroups:read", "channels:history", "groups:history", "users:read",
    }


def test_socket_mode_manifest_has_no_urls():
    manifest = build_manifest("Guardian", None, socket_mode=True)
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert "url" not in manifest["features"]["slash_commands"][0]
    assert "request_url" not in manifest["settings"]["interactivity"]


def test_http_manifest_needs_a_url():
    with pytest.raises(ConfigError):
        build_manifest("Guardian", None, socket_mode=False)


def test_socket_mode_needs_the_app_token():
    settings = Settings(slack_bot_token="xoxb-1", slack_app_token=None, slack_api_url="http://127.0.0.1:9/api/")
    with pytest.raises(ConfigError) as caught:
        run_socket(settings, GuardianConfig())
    assert "SLACK_APP_TOKEN" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", HelpCommand()),
        ("  HELP ", HelpCommand()),
        ("plan staging", PlanCommand(env="staging")),
        ("plan prod pending", PlanCommand(env="prod")),
        ("plan prod 001_a 002_b --ref release/1.2", PlanCommand(env="prod", migrations=("001_a", "002_b"), pending=False, ref="release/1.2")),
        ("plan prod --ref=abc123", PlanCommand(env="prod", ref="abc123")),
        ("status", StatusCommand()),
        ("status prod", StatusCommand(env="prod")),
        ("note #7 rolled back &amp; paged <@U1>", NoteCommand(incident_id="7", text="rolled back & paged <@U1>")),
        ("freeze prod 2h release week", FreezeCommand(env="prod", duration="2h", seconds=7200, reason="release week")),
    ],
)
def test_grammar_parses(text, expected):
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("deploy prod", "Unknown subcommand `deploy`"),
        ("plan", "Missing the environment"),
        ("plan prod --ref", "`--ref` needs a git ref"),
        ("plan prod --force", "Unknown option `--force`"),
        ("plan prod a pending", "`pending` cannot be combined"),
        ("cancel", "Usage: `/migrate cancel <id>`"),
        ("cancel 1 2", "Unexpected `2`"),
        ("freeze prod soon because", "is not a duration"),
        ("freeze prod 2h", "a reason is required"),
        ("sql prod;drop", "not a valid environment name"),
    ],
)
def test_grammar_errors_say_what_is_wrong_and_the_usage(text, says):
    with pytest.raises(CommandUsageError) as caught:
        parse_command(text)
    assert says in caught.value.message
    assert "Usage: `/migrate" in caught.value.message
    assert caught.value.code == "usage-error"
