"""What one person sees in the dev page's channel: messages with threads, their private replies, their open modal.

Usage::

    log = PrivateLog()
    snapshot = build_snapshot(standin, log, channel="C0MIGRATIONS", user="U_ALICE")
"""
from __future__ import annotations

import copy
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from bot.slack.standin import RESPONSE_URL_METHOD, SlackStandIn

_ids = itertools.count(1)


@dataclass
class PrivateLog:
    """What the stand-in cannot know: who a response_url or trigger belongs to, local replies, closed modals."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    response_owner: dict[str, str] = field(default_factory=dict)  # response_url id -> user
    trigger_owner: dict[str, str] = field(default_factory=dict)  # trigger_id -> user
    closed_views: set[str] = field(default_factory=set)
    local: list[dict[str, Any]] = field(default_factory=list)  # ack replies and command echoes
    posted_at: dict[str, float] = field(default_factory=dict)  # ts of messages people typed -> time

    def new_response(self, user: str) -> str:
        rid = f"dev{next(_ids)}"
        with self.lock:
            self.response_owner[rid] = user
        return rid

    def new_trigger(self, user: str) -> str:
        tid = f"{next(_ids)}.{int(time.time())}.devpage"
        with self.lock:
            self.trigger_owner[tid] = user
        return tid

    def add_local(self, user: str, kind: str, message: dict[str, Any], thread_ts: str | None = None) -> None:
        with self.lock:
            self.local.append({"id": f"local{next(_ids)}", "kind": kind, "user": user, "at": time.time(),
                               "thread_ts": thread_ts, "text": message.get("text") or "",
                               "blocks": message.get("blocks") or []})

    def close_view(self, view_id: str) -> None:
        with self.lock:
            self.closed_views.add(view_id)


def _message_times(standin: SlackStandIn, log: PrivateLog) -> dict[str, float]:
    """ts -> when it was posted, from the recorded calls (Slack ts values here are sequence numbers)."""
    times: dict[str, float] = dict(log.posted_at)
    for call in standin.calls():
        if call.method == "chat.postMessage" and call.ok:
            times[str(call.response.get("ts"))] = call.at
        elif call.method == "chat.postEphemeral" and call.ok:
            times[str(call.response.get("message_ts"))] = call.at
    return times


def _fill_times(items: list[dict[str, Any]], times: dict[str, float]) -> None:
    """Give every item an ``at``: its recorded time, else just after the item before it (ts order)."""
    last = 0.0
    for item in sorted(items, key=lambda i: i["ts"]):
        item["at"] = times.get(item["ts"], last + 1e-6)
        last = item["at"]


def _private_replies(standin: SlackStandIn, log: PrivateLog, user: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(private items for ``user``, in-channel response_url posts everybody sees)."""
    mine: list[dict[str, Any]] = []
    public: list[dict[str, Any]] = []
    with log.lock:
        owners = dict(log.response_owner)
        mine += [copy.deepcopy(item) for item in log.local if item["user"] == user]
    for number, call in enumerate(standin.calls(RESPONSE_URL_METHOD)):
        params = call.params
        owner = owners.get(str(params.get("id")))
        if owner is None or params.get("delete_original"):
            continue
        item = {"id": f"resp{number}", "kind": "response", "at": call.at, "thread_ts": None,
                "text": params.get("text") or "", "blocks": params.get("blocks") or []}
        if params.get("response_type") == "in_channel":
            public.append({**item, "kind": "in_channel", "user": owner})
        elif owner == user:
            mine.append(item)
    return mine, public


def _ephemerals(standin: SlackStandIn, channel: str, user: str, times: dict[str, float]) -> list[dict[str, Any]]:
    with standin.workspace.lock:
        stored = [copy.deepcopy(e) for e in standin.ephemerals if e.get("user") == user and e.get("channel") == channel]
    items = [{"id": f"eph{e['ts']}", "kind": "ephemeral", "ts": e["ts"], "thread_ts": e.get("thread_ts") or None,
              "text": e.get("text") or "", "blocks": e.get("blocks") or []} for e in stored]
    _fill_times(items, times)
    return items


def open_view(standin: SlackStandIn, log: PrivateLog, user: str) -> dict[str, Any] | None:
    """The newest modal opened with one of ``user``'s triggers and not yet submitted or closed."""
    with log.lock:
        triggers = {t for t, owner in log.trigger_owner.items() if owner == user}
        closed = set(log.closed_views)
    for call in reversed(standin.calls("views.open")):
        if call.ok and call.params.get("trigger_id") in triggers:
            view_id = call.response["view"]["id"]
            if view_id in closed:
                return None
            with standin.workspace.lock:
                current = standin.views.get(view_id)
                return copy.deepcopy(current) if current else None
    return None


def find_private(snapshot: dict[str, Any], item_id: str) -> dict[str, Any] | None:
    """A private item (ephemeral or response) of a snapshot by its id, wherever it is shown."""
    for item in snapshot["timeline"]:
        if item.get("id") == item_id:
            return item
        for reply in item.get("replies", ()):
            if reply.get("id") == item_id:
                return reply
    return None


def build_snapshot(standin: SlackStandIn, log: PrivateLog, *, channel: str, user: str) -> dict[str, Any]:
    """The channel as ``user`` sees it: a timeline of roots (replies nested), private items interleaved by time."""
    times = _message_times(standin, log)
    messages = standin.messages(channel)
    for m in messages:
        m["kind"] = "message"
        m["id"] = f"msg{m['ts']}"
    _fill_times(messages, times)
    roots = {m["ts"]: {**m, "replies": []} for m in messages if m.get("thread_ts") in (None, m["ts"])}
    mine, public = _private_replies(standin, log, user)
    mine += _ephemerals(standin, channel, user, times)
    for m in messages:
        if m["ts"] not in roots and m.get("thread_ts") in roots:
            roots[m["thread_ts"]]["replies"].append(m)
    timeline: list[dict[str, Any]] = list(roots.values()) + public
    for item in mine:
        item["private"] = True
        parent = roots.get(item.get("thread_ts") or "")
        (parent["replies"] if parent else timeline).append(item)
    for root in roots.values():
        root["replies"].sort(key=lambda i: i["at"])
    timeline.sort(key=lambda i: i["at"])
    return {"channel": channel, "user": user, "timeline": timeline, "modal": open_view(standin, log, user)}
