"""Turns what a person does on the dev page into the signed requests Slack would send the bot (via SlackSender).

Usage::

    relay = Relay(standin, sender, log, channel="C0MIGRATIONS", channel_name="migrations", users=users)
    relay.command("U_DANA", "/migrate plan staging pending")
    relay.click("U_ALICE", {"action_id": "request_approve", "value": "1", "message_ts": ts})
    relay.submit_view("U_ALICE", view_id, {"confirm_input": {"value": "production"}})
"""
from __future__ import annotations

import copy
import json
import logging
import time
from typing import Any

from bot.devpage.feed import PrivateLog, build_snapshot, find_private
from bot.slack.sender import SentResponse, SlackSender, SlackUser
from bot.slack.standin import SlackStandIn

logger = logging.getLogger(__name__)
KNOWN_COMMANDS = ("/migrate",)


class RelayError(Exception):
    """Something the page asked that Slack itself would refuse (unknown user, gone view...)."""


class Relay:
    def __init__(self, standin: SlackStandIn, sender: SlackSender, log: PrivateLog, *, channel: str,
                 channel_name: str, users: dict[str, str]) -> None:
        self.standin, self.sender, self.log = standin, sender, log
        self.channel, self.channel_name = channel, channel_name
        self.users = users  # id -> handle

    def _user(self, user_id: str) -> SlackUser:
        if user_id not in self.users:
            raise RelayError(f"unknown user {user_id!r}")
        return SlackUser(id=user_id, name=self.users[user_id], team_id=self.sender.team_id)

    def _ack_reply(self, user: str, sent: SentResponse, what: str) -> dict[str, Any]:
        """Slack shows a non-empty acknowledgement body to the person who acted; an error status as Slack's own line."""
        if sent.status != 200:
            text = f"{what} failed with the error \"http_status_{sent.status}\" (the app answered HTTP {sent.status})"
            self.log.add_local(user, "ack", {"text": text})
            return {"ok": False, "status": sent.status}
        body = sent.body.strip()
        if body:
            try:
                message = json.loads(body)
            except ValueError:
                message = {"text": body}
            if isinstance(message, dict) and (message.get("text") or message.get("blocks")):
                self.log.add_local(user, "ack", message)
            return {"ok": True, "status": 200, "body": message}
        return {"ok": True, "status": 200}

    # ---- the composer

    def command(self, user_id: str, line: str) -> dict[str, Any]:
        """A slash command typed in the composer (``/migrate plan staging pending``)."""
        user = self._user(user_id)
        command, _, text = line.strip().partition(" ")
        self.log.add_local(user_id, "command", {"text": line.strip()})
        if command not in KNOWN_COMMANDS:
            self.log.add_local(user_id, "ack", {"text": f"{command} is not a valid command. In Slack, messages "
                                                        "starting with / are commands."})
            return {"ok": False, "error": "unknown_command"}
        rid = self.log.new_response(user_id)
        sent = self.sender.slash_command(
            text.strip(), command=command, user=user, channel_id=self.channel, channel_name=self.channel_name,
            response_url=self.standin.response_url(rid), trigger_id=self.log.new_trigger(user_id))
        logger.info("dev page: %s by %s -> HTTP %s", command, user_id, sent.status)
        return self._ack_reply(user_id, sent, command)

    def message(self, user_id: str, text: str, thread_ts: str | None = None) -> dict[str, Any]:
        """A plain message: kept in the channel as the person's, and sent to the bot as a message event."""
        self._user(user_id)
        workspace = self.standin.workspace
        with workspace.lock:
            posted = workspace.chat_post_message({"channel": self.channel, "text": text, "thread_ts": thread_ts})
            stored = workspace.channels[self.channel][posted["ts"]]
            stored.pop("bot_id", None)
            stored["user"] = user_id
            event = {k: v for k, v in stored.items() if k in ("type", "user", "text", "ts", "thread_ts", "team")}
        self.log.posted_at[posted["ts"]] = time.time()
        sent = self.sender.event({**event, "channel": self.channel, "channel_type": "channel",
                                  "event_ts": posted["ts"]})
        return {"ok": sent.status == 200, "status": sent.status, "ts": posted["ts"]}

    def react(self, user_id: str, ts: str, name: str = "pushpin") -> dict[str, Any]:
        """A reaction on a channel or thread message: shown on it, and sent to the bot as reaction_added."""
        self._user(user_id)
        workspace = self.standin.workspace
        with workspace.lock:
            message = workspace.channels.get(self.channel, {}).get(ts)
            if message is None:
                raise RelayError("that message is gone")
            reactions = message.setdefault("reactions", [])
            entry = next((r for r in reactions if r["name"] == name), None)
            if entry is None:
                entry = {"name": name, "users": [], "count": 0}
                reactions.append(entry)
            if user_id in entry["users"]:
                return {"ok": True, "status": 200, "already": True}  # Slack: already_reacted, no new event
            entry["users"].append(user_id)
            entry["count"] = len(entry["users"])
            author = message.get("user")
        sent = self.sender.event({"type": "reaction_added", "user": user_id, "reaction": name,
                                  "item": {"type": "message", "channel": self.channel, "ts": ts},
                                  "item_user": author, "event_ts": f"{time.time():.6f}"})
        return {"ok": sent.status == 200, "status": sent.status}

    # ---- buttons

    def click(self, user_id: str, request: dict[str, Any]) -> dict[str, Any]:
        """A button on a channel message (``message_ts``) or on one of the person's private replies (``private_id``)."""
        user = self._user(user_id)
        snapshot = build_snapshot(self.standin, self.log, channel=self.channel, user=user_id)
        ephemeral = bool(request.get("private_id"))
        if ephemeral:
            source = find_private(snapshot, str(request["private_id"]))
        else:
            found = [m for m in self.standin.messages(self.channel) if m["ts"] == request.get("message_ts")]
            source = found[0] if found else None
        if source is None:
            raise RelayError("that message is gone")
        action = _find_button(source.get("blocks") or [], request.get("action_id"), request.get("value"))
        if action is None:
            raise RelayError("that button is no longer on the message")
        ts = source.get("ts") or f"{time.time():.6f}"
        rid = self.log.new_response(user_id)
        message = {k: v for k, v in source.items() if k not in ("kind", "id", "at", "replies", "private")}
        message.setdefault("type", "message")
        message.setdefault("ts", ts)
        payload = {
            "type": "block_actions",
            "user": {"id": user.id, "username": user.name, "name": user.name, "team_id": user.team_id},
            "api_app_id": self.sender.api_app_id,
            "token": "legacy-verification-token",
            "container": {"type": "message", "message_ts": ts, "channel_id": self.channel,
                          "is_ephemeral": ephemeral, **({"thread_ts": source["thread_ts"]} if source.get("thread_ts") else {})},
            "trigger_id": self.log.new_trigger(user_id),
            "team": {"id": self.sender.team_id, "domain": "guardian"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": self.channel, "name": self.channel_name},
            "message": message,
            "state": {"values": {}},
            "response_url": self.standin.response_url(rid),
            "actions": [{**action, "action_ts": f"{time.time():.6f}"}],
        }
        sent = self.sender.payload(payload)
        logger.info("dev page: %s clicked by %s -> HTTP %s", action.get("action_id"), user_id, sent.status)
        return self._ack_reply(user_id, sent, "the button")

    # ---- modals

    def submit_view(self, user_id: str, view_id: str, values: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Submit the person's open modal with what they typed; ``response_action`` errors keep it open."""
        user = self._user(user_id)
        with self.standin.workspace.lock:
            view = copy.deepcopy(self.standin.views.get(view_id))
        if view is None:
            raise RelayError("that modal is gone")
        state = {block: {action: {"type": "plain_text_input", "value": v.get("value", "")}
                         for action, v in actions.items()} for block, actions in values.items()}
        view["state"] = {"values": state}
        payload = {
            "type": "view_submission",
            "team": {"id": self.sender.team_id, "domain": "guardian"},
            "user": {"id": user.id, "username": user.name, "name": user.name, "team_id": user.team_id},
            "api_app_id": self.sender.api_app_id,
            "token": "legacy-verification-token",
            "trigger_id": self.log.new_trigger(user_id),
            "view": view,
            "response_urls": [],
            "is_enterprise_install": False,
        }
        sent = self.sender.payload(payload)
        logger.info("dev page: view %s submitted by %s -> HTTP %s", view.get("callback_id"), user_id, sent.status)
        if sent.status != 200:
            return {"ok": False, "status": sent.status, "errors": {"": f"the app answered HTTP {sent.status}"}}
        answer = json.loads(sent.body) if sent.body.strip().startswith("{") else {}
        action = answer.get("response_action")
        if action == "errors":
            return {"ok": False, "status": 200, "errors": answer.get("errors") or {}}
        if action in ("update", "push") and isinstance(answer.get("view"), dict):
            with self.standin.workspace.lock:
                self.standin.views[view_id] = {**view, **answer["view"], "id": view_id, "state": {"values": {}}}
            return {"ok": True, "status": 200, "updated": True}
        self.log.close_view(view_id)
        return {"ok": True, "status": 200}

    def close_view(self, user_id: str, view_id: str) -> dict[str, Any]:
        """The modal's Cancel (Slack sends view_closed only when notify_on_close is set)."""
        self._user(user_id)
        with self.standin.workspace.lock:
            view = copy.deepcopy(self.standin.views.get(view_id))
        self.log.close_view(view_id)
        if view and view.get("notify_on_close"):
            user = self._user(user_id)
            self.sender.payload({"type": "view_closed", "team": {"id": self.sender.team_id},
                                 "user": {"id": user.id, "name": user.name}, "api_app_id": self.sender.api_app_id,
                                 "view": view, "is_cleared": False})
        return {"ok": True}


def _find_button(blocks: list[dict[str, Any]], action_id: Any, value: Any) -> dict[str, Any] | None:
    """The button element (as Slack describes it in the payload) on a message, by action id and value."""
    for block in blocks:
        elements = list(block.get("elements") or []) if block.get("type") == "actions" else []
        if block.get("accessory"):
            elements.append(block["accessory"])
        for element in elements:
            if element.get("type") == "button" and element.get("action_id") == action_id \
                    and (value is None or element.get("value") == value):
                action = {"type": "button", "action_id": element["action_id"], "block_id": block.get("block_id", ""),
                          "text": element.get("text") or {"type": "plain_text", "text": ""}}
                for key in ("value", "style"):
                    if key in element:
                        action[key] = element[key]
                return action
    return None
