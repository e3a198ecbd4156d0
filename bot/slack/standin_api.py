"""The in-memory workspace behind the Slack stand-in: channels, threads, views, files and the Web API methods."""
from __future__ import annotations

import copy
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

JSON_PARAMS = frozenset({"blocks", "attachments", "view", "files", "metadata", "user_auth_blocks"})


class ApiError(Exception):
    """A Slack-shaped failure: answered as ``{"ok": false, "error": code, **extra}``."""

    def __init__(self, code: str, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.extra = extra


@dataclass
class StoredFile:
    id: str
    filename: str
    length: int
    title: str | None = None
    content: bytes | None = None
    channels: list[str] = field(default_factory=list)

    def to_slack(self, root: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.filename,
            "title": self.title or self.filename,
            "size": len(self.content or b""),
            "url_private": f"{root}files/{self.id}",
            "channels": list(self.channels),
        }


class Workspace:
    """One team's state and the Web API methods that read and change it; every call holds one lock."""

    def __init__(self, *, team_id: str, bot_user_id: str, bot_id: str, root_url: Callable[[], str]) -> None:
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self._root_url = root_url
        self.lock = threading.RLock()
        self.channels: dict[str, dict[str, dict[str, Any]]] = {}  # channel -> ts -> message
        self.ephemerals: list[dict[str, Any]] = []
        self.views: dict[str, dict[str, Any]] = {}
        self.files: dict[str, StoredFile] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self._epoch = int(time.time())
        self._seq = 0
        self.methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "api.test": lambda p: {"args": p},
            "auth.test": self.auth_test,
            "chat.postMessage": self.chat_post_message,
            "chat.update": self.chat_update,
            "chat.postEphemeral": self.chat_post_ephemeral,
            "chat.getPermalink": self.chat_get_permalink,
            "views.open": self.views_open,
            "views.update": self.views_update,
            "usergroups.users.list": self.usergroups_users_list,
            "users.info": self.users_info,
            "conversations.replies": self.conversations_replies,
            "conversations.history": self.conversations_history,
            "reactions.add": self.reactions_add,
            "files.getUploadURLExternal": self.files_get_upload_url_external,
            "files.completeUploadExternal": self.files_complete_upload_external,
        }

    # ---- helpers

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def _ts(self) -> str:
        return f"{self._epoch}.{self._next():06d}"

    def _message(self, channel: str, ts: str) -> dict[str, Any]:
        try:
            return self.channels[channel][ts]
        except KeyError:
            raise ApiError("message_not_found") from None

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Every message in a channel (roots and replies), oldest first, as copies."""
        with self.lock:
            stored = self.channels.get(channel, {})
            return [copy.deepcopy(stored[ts]) for ts in sorted(stored)]

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        handler = self.methods.get(method)
        if handler is None:
            raise ApiError("unknown_method")
        with self.lock:
            return {"ok": True, **handler(params)}

    # ---- methods

    def auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": self._root_url(),
            "team": "Guardian Stand-in",
            "user": "guardian",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _required(params, "channel", "channel_not_found")
        if not any(params.get(k) for k in ("text", "blocks", "attachments")):
            raise ApiError("no_text")
        fields = {k: params[k] for k in ("blocks", "attachments", "metadata") if params.get(k)}
        message = self._post(channel, params.get("thread_ts") or None, {"text": params.get("text") or "", **fields})
        return {"channel": channel, "ts": message["ts"], "message": copy.deepcopy(message)}

    def _post(self, channel: str, thread_ts: str | None, fields: dict[str, Any]) -> dict[str, Any]:
        store = self.channels.setdefault(channel, {})
        if thread_ts is not None and thread_ts not in store:
            raise ApiError("thread_not_found")
        ts = self._ts()
        message = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "team": self.team_id,
            "ts": ts,
            **fields,
        }
        if thread_ts is not None:
            message["thread_ts"] = thread_ts
            parent = store[thread_ts]
            parent["thread_ts"] = thread_ts
            parent["reply_count"] = parent.get("reply_count", 0) + 1
            parent["latest_reply"] = ts
        store[ts] = message
        return message

    def chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _required(params, "channel", "channel_not_found")
        ts = _required(params, "ts", "message_not_found")
        if channel not in self.channels:
            raise ApiError("channel_not_found")
        message = self._message(channel, ts)
        for key in ("text", "blocks", "attachments", "metadata"):
            if key in params:
                message[key] = params[key]
        message["edited"] = {"user": self.bot_user_id, "ts": self._ts()}
        return {"channel": channel, "ts": ts, "text": message.get("text", ""), "message": copy.deepcopy(message)}

    def chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _required(params, "channel", "channel_not_found")
        user = _required(params, "user", "user_not_in_channel")
        if not any(params.get(k) for k in ("text", "blocks", "attachments")):
            raise ApiError("no_text")
        ts = self._ts()
        self.ephemerals.append({**params, "channel": channel, "user": user, "ts": ts})
        return {"message_ts": ts}

    def chat_get_permalink(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _required(params, "channel", "channel_not_found")
        ts = _required(params, "message_ts", "message_not_found")
        message = self._message(channel, ts)
        link = f"{self._root_url()}archives/{channel}/p{ts.replace('.', '')}"
        if message.get("thread_ts") and message["thread_ts"] != ts:
            link += f"?thread_ts={message['thread_ts']}&cid={channel}"
        return {"channel": channel, "permalink": link}

    def views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        _required(params, "trigger_id", "invalid_trigger_id")
        view = params.get("view")
        if not isinstance(view, dict) or not view.get("type"):
            raise ApiError("invalid_arguments")
        stored = {
            **view,
            "id": f"V{self._next():08d}",
            "team_id": self.team_id,
            "state": {"values": {}},
            "hash": f"{self._epoch}.h{self._next()}",
            "root_view_id": None,
            "app_id": "A0GUARDIAN",
            "bot_id": self.bot_id,
        }
        stored["root_view_id"] = stored["id"]
        self.views[stored["id"]] = stored
        return {"view": copy.deepcopy(stored)}

    def views_update(self, params: dict[str, Any]) -> dict[str, Any]:
        view = params.get("view")
        if not isinstance(view, dict):
            raise ApiError("invalid_arguments")
        view_id = params.get("view_id")
        if not view_id and params.get("external_id"):
            view_id = next(
                (v["id"] for v in self.views.values() if v.get("external_id") == params["external_id"]), None
            )
        current = self.views.get(view_id or "")
        if current is None:
            raise ApiError("not_found")
        if params.get("hash") and params["hash"] != current["hash"]:
            raise ApiError("hash_conflict")
        updated = {**current, **view, "id": current["id"], "hash": f"{self._epoch}.h{self._next()}"}
        self.views[current["id"]] = updated
        return {"view": copy.deepcopy(updated)}

    def usergroups_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        group = _required(params, "usergroup", "no_such_subteam")
        if group not in self.usergroups:
            raise ApiError("no_such_subteam")
        return {"users": list(self.usergroups[group])}

    def users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = _required(params, "user", "user_not_found")
        if user_id not in self.users:
            raise ApiError("user_not_found")
        fields = self.users[user_id]
        name = fields.get("name", user_id.lower())
        user = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "real_name": fields.get("real_name", name),
            "deleted": False,
            "is_bot": False,
            "tz": "UTC",
            **fields,
        }
        user.setdefault("profile", {"real_name": user["real_name"], "display_name": name})
        return {"user": user}

    def conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        """A thread as Slack returns it: the parent first (always, on every page), then the replies between
        ``oldest`` and ``latest`` (those two themselves only with ``inclusive``), at most ``limit`` messages
        a page counting the parent; ``ts`` may be the parent's or any reply's."""
        channel = _required(params, "channel", "channel_not_found")
        ts = _required(params, "ts", "thread_not_found")
        store = self.channels.get(channel)
        if store is None:
            raise ApiError("channel_not_found")
        if ts not in store:
            raise ApiError("thread_not_found")
        root = store[ts].get("thread_ts", ts)
        replies = [t for t in sorted(store) if t != root and store[t].get("thread_ts") == root]
        replies = _in_range(replies, params)
        limit, start = _page(params, default=1000)
        taken = replies[start:start + max(limit - 1, 0)]
        more = start + len(taken) < len(replies)
        out: dict[str, Any] = {"messages": copy.deepcopy([store[root]] + [store[t] for t in taken]), "has_more": more}
        if more:
            out["response_metadata"] = {"next_cursor": f"page:{start + len(taken)}"}
        return out

    def conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        """A channel's root messages (and replies broadcast to it), newest first, between ``oldest`` and
        ``latest`` (inclusive only with ``inclusive``), ``limit`` a page."""
        channel = _required(params, "channel", "channel_not_found")
        store = self.channels.get(channel)
        if store is None:
            raise ApiError("channel_not_found")
        roots = [t for t in sorted(store, reverse=True)
                 if store[t].get("thread_ts") in (None, t) or store[t].get("subtype") == "thread_broadcast"]
        roots = _in_range(roots, params)
        limit, start = _page(params, default=100)
        taken = roots[start:start + limit]
        more = start + len(taken) < len(roots)
        out: dict[str, Any] = {"messages": copy.deepcopy([store[t] for t in taken]), "has_more": more}
        if more:
            out["response_metadata"] = {"next_cursor": f"page:{start + len(taken)}"}
        return out

    def reactions_add(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = _required(params, "channel", "channel_not_found")
        ts = _required(params, "timestamp", "message_not_found")
        name = _required(params, "name", "invalid_name")
        message = self._message(channel, ts)
        reactions = message.setdefault("reactions", [])
        entry = next((r for r in reactions if r["name"] == name), None)
        if entry is None:
            entry = {"name": name, "users": [], "count": 0}
            reactions.append(entry)
        if self.bot_user_id in entry["users"]:
            raise ApiError("already_reacted")
        entry["users"].append(self.bot_user_id)
        entry["count"] += 1
        return {}

    def files_get_upload_url_external(self, params: dict[str, Any]) -> dict[str, Any]:
        filename = _required(params, "filename", "invalid_arguments")
        try:
            length = int(params.get("length", ""))
        except ValueError:
            raise ApiError("invalid_arguments") from None
        file_id = f"F{self._next():08d}"
        self.files[file_id] = StoredFile(id=file_id, filename=filename, length=length)
        return {"upload_url": f"{self._root_url()}upload/{file_id}", "file_id": file_id}

    def receive_upload(self, file_id: str, content: bytes) -> None:
        """Store the bytes POSTed to an upload URL; an unknown id raises ApiError."""
        with self.lock:
            stored = self.files.get(file_id)
            if stored is None:
                raise ApiError("file_not_found")
            stored.content = content

    def files_complete_upload_external(self, params: dict[str, Any]) -> dict[str, Any]:
        entries = params.get("files")
        if not isinstance(entries, list) or not entries:
            raise ApiError("invalid_arguments")
        stored: list[StoredFile] = []
        for entry in entries:
            found = self.files.get(str(entry.get("id")))
            if found is None or found.content is None:
                raise ApiError("file_not_found")
            found.title = entry.get("title") or found.title
            stored.append(found)
        channels = [c for c in str(params.get("channels") or "").split(",") if c]
        if params.get("channel_id"):
            channels.insert(0, params["channel_id"])
        root = self._root_url()
        for channel in channels:
            for f in stored:
                f.channels.append(channel)
            self._post(channel, params.get("thread_ts") or None, {
                "text": params.get("initial_comment") or "",
                "subtype": "file_share",
                "files": [f.to_slack(root) for f in stored],
            })
        return {"files": [f.to_slack(root) for f in stored]}


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("1", "true")


def _in_range(stamps: list[str], params: dict[str, Any]) -> list[str]:
    """``stamps`` between ``oldest`` and ``latest``; the bounds themselves only when ``inclusive``."""
    inclusive = _truthy(params.get("inclusive"))
    try:
        oldest = float(params["oldest"]) if params.get("oldest") not in (None, "") else None
        latest = float(params["latest"]) if params.get("latest") not in (None, "") else None
    except ValueError:
        raise ApiError("invalid_ts_oldest" if "oldest" in params else "invalid_ts_latest") from None
    out = []
    for ts in stamps:
        at = float(ts)
        if oldest is not None and (at < oldest or (at == oldest and not inclusive)):
            continue
        if latest is not None and (at > latest or (at == latest and not inclusive)):
            continue
        out.append(ts)
    return out


def _page(params: dict[str, Any], *, default: int) -> tuple[int, int]:
    """(limit, offset) from ``limit`` (1..1000) and a ``cursor`` this workspace handed out."""
    try:
        limit = int(params.get("limit") or default)
    except ValueError:
        raise ApiError("invalid_limit") from None
    cursor = str(params.get("cursor") or "")
    if cursor and not (cursor.startswith("page:") and cursor[5:].isdigit()):
        raise ApiError("invalid_cursor")
    return max(1, min(limit, 1000)), int(cursor[5:]) if cursor else 0


def _required(params: dict[str, Any], name: str, error: str) -> str:
    value = params.get(name)
    if value in (None, ""):
        raise ApiError(error)
    return str(value)


def decode_params(raw: dict[str, Any]) -> dict[str, Any]:
    """Decode the JSON-valued parameters Slack accepts as form strings (blocks, view, files...)."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key in JSON_PARAMS and isinstance(value, str) and value:
            try:
                value = json.loads(value)
            except ValueError:
                raise ApiError("invalid_arguments") from None
        out[key] = value
    return out
