"""Modals (pure Block Kit): pasted SQL, a rejection reason, and the typed production confirmation.

State that must survive a modal travels as a ModalState in ``private_metadata`` (never trusted for
authorisation: the submission handler re-checks everything from the store).
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from bot.slack.ids import BlockId, CallbackId
from bot.slack.mrkdwn import code, escape

INPUT_ACTION = "value"
# Slack's most for a plain_text_input (max_length 1..3000); the bot refuses longer pasted SQL too, as
# only a forged submission can carry more. Longer SQL belongs in a migration file in the repository.
MAX_PASTED_SQL_CHARS = 3_000


class ModalState(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    request_id: int | None = None
    environment: str | None = None
    channel: str | None = None
    preview: str | None = None  # fingerprint of the preview the modal was opened from (Reject, production Approve)
    incident_id: int | None = None  # Restore backup


def _modal(callback: CallbackId, title: str, submit: str, state: ModalState, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "modal", "callback_id": callback.value, "private_metadata": state.model_dump_json(),
            "title": {"type": "plain_text", "text": title[:24]}, "submit": {"type": "plain_text", "text": submit},
            "close": {"type": "plain_text", "text": "Cancel"}, "blocks": blocks}


def _input(block: BlockId, label: str, *, multiline: bool, optional: bool, placeholder: str = "",
           max_length: int | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": INPUT_ACTION, "multiline": multiline}
    if max_length:
        element["max_length"] = max_length
    if placeholder:
        element["placeholder"] = {"type": "plain_text", "text": placeholder[:150]}
    return {"type": "input", "block_id": block.value, "optional": optional,
            "label": {"type": "plain_text", "text": label}, "element": element}


def build_sql_modal(state: ModalState) -> dict[str, Any]:
    return _modal(CallbackId.SQL_REQUEST, f"SQL for {state.environment}", "Plan", state, [
        {"type": "section", "text": {"type": "mrkdwn", "text":
            f"Paste the SQL to run on *{escape(state.environment)}*. Guardian analyses it and asks for approval; "
            "nothing runs yet."}},
        _input(BlockId.SQL_INPUT, "SQL", multiline=True, optional=False, placeholder="ALTER TABLE …;",
               max_length=MAX_PASTED_SQL_CHARS),
    ])


def build_reject_modal(state: ModalState) -> dict[str, Any]:
    return _modal(CallbackId.REJECT_REASON, f"Reject #{state.request_id}", "Reject", state, [
        _input(BlockId.REASON_INPUT, "Why? (optional, shown in the thread)", multiline=True, optional=True),
    ])


def build_confirm_modal(state: ModalState) -> dict[str, Any]:
    return _modal(CallbackId.CONFIRM_APPROVAL, f"Approve #{state.request_id}", "Approve", state, [
        {"type": "section", "text": {"type": "mrkdwn", "text":
            f":rotating_light: You are approving a change to *{escape(state.environment)}*. "
            f"Type {code(state.environment or '')} to confirm."}},
        _input(BlockId.CONFIRM_INPUT, "Environment name", multiline=False, optional=False),
    ])


def submitted_value(view: dict[str, Any], block: BlockId) -> str:
    """The text a person typed in one input block ('' when empty)."""
    values = (view.get("state") or {}).get("values") or {}
    return ((values.get(block.value) or {}).get(INPUT_ACTION) or {}).get("value") or ""
