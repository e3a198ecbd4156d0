"""Block Kit for incident threads: the incident card with its actions (pure, no I/O)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.models import Backup, DbState, Incident, IncidentStatus, Request
from bot.slack.ids import BUTTON_LABELS, ActionId, BlockId, CallbackId
from bot.slack.modals import ModalState
from bot.slack.mrkdwn import clip, code, code_block, escape, link, mention
from bot.views import IncidentView

STATUS_EMOJI = {"open": ":red_circle:", "mitigating": ":hammer_and_wrench:", "mitigated": ":large_yellow_circle:",
                "resolved": ":white_check_mark:"}


def available_actions(incident: Incident, request: Request, view: IncidentView) -> list[ActionId]:
    """Which buttons make sense now (each is re-checked on the server when clicked)."""
    if incident.status is IncidentStatus.RESOLVED:
        return []
    actions: list[ActionId] = []
    if incident.status is IncidentStatus.MITIGATING and view.backups and view.rollback_waiting:
        actions.append(ActionId.RESTORE_BACKUP)  # a rollback nobody approved yet does not block the backup
    if incident.status is IncidentStatus.OPEN:
        if any(m.down_sql for m in request.migrations):
            actions.append(ActionId.ROLL_BACK)
        if view.backups:
            actions.append(ActionId.RESTORE_BACKUP)
        if request.db_state in (DbState.UNTOUCHED, DbState.ROLLED_BACK):
            actions.append(ActionId.RETRY)
        actions.append(ActionId.MARK_FIXED_FORWARD)
    actions.append(ActionId.RESOLVE)
    return actions


def build_incident_card(incident: Incident, request: Request, view: IncidentView) -> dict[str, Any]:
    status = incident.status.value
    holds = (request.db_state.value if request.db_state else "unknown").replace("_", " ")
    migrations = "\n".join(f"• {code(m.name)} · sha256 `{m.sha256[:12]}`" + (" · has down SQL" if m.down_sql else "")
                           for m in request.migrations[:15]) or "—"
    backup = (f"#{view.backups[-1].id} {code(view.backups[-1].path.rsplit('/', 1)[-1])} "
              f"({(view.backups[-1].size_bytes or 0) / 2**20:.1f} MiB, {escape(view.backups[-1].scope)})") if view.backups else "none"
    fields = [
        f"*Environment*\n{escape(request.environment)}",
        f"*Request*\n#{request.id}" + (f" · {link(view.request_link, 'thread')}" if view.request_link else ""),
        f"*Failed at*\n{escape(request.failed_step or 'n/a')}",
        f"*Database now*\n{holds}",
        f"*Requested by*\n{mention(request.requester)}",
        "*Approved by*\n" + (", ".join(mention(a) for a in view.approvers) or "—"),
        f"*Backup*\n{backup}",
        f"*Status*\n{STATUS_EMOJI[status]} {status}",
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"Incident #{incident.id}: request #{request.id} on {request.environment}"[:150]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": clip(f, 1900)} for f in fields]},
        {"type": "section", "text": {"type": "mrkdwn", "text": clip(f"*Migrations*\n{migrations}")}},
    ]
    if request.error and view.error_above:  # the error once per thread: the failure message above has it
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": "The error is in the failure message above."}]})
    elif request.error:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": clip(f"*Error*\n{code_block(request.error)}")}})
    if view.note:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": clip(view.note)}})
    buttons = []
    for action in available_actions(incident, request, view):
        button: dict[str, Any] = {"type": "button", "action_id": action.value, "value": str(incident.id),
                                  "text": {"type": "plain_text", "text": BUTTON_LABELS[action]}}
        if action in (ActionId.ROLL_BACK, ActionId.RESTORE_BACKUP):
            button["style"] = "danger"
        if action is ActionId.RESOLVE:
            button["style"] = "primary"
        buttons.append(button)
    if buttons:
        blocks.append({"type": "actions", "block_id": BlockId.INCIDENT_ACTIONS.value, "elements": buttons})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text":
        "Reply in this thread to add to the timeline; react with :pushpin: to pin a message into it; "
        f"`/migrate note {incident.id} &lt;text&gt;` works too. Notes starting with `action:` become action items."}]})
    return {"text": f"Incident #{incident.id} ({status}): request #{request.id} on {request.environment}", "blocks": blocks}


def build_restore_confirm_modal(incident_id: int, environment: str, tables: Sequence[str], backup: Backup) -> dict[str, Any]:
    what = ", ".join(code(t) for t in tables) if tables else "*the whole database*"
    return {"type": "modal", "callback_id": CallbackId.CONFIRM_RESTORE.value,
            "private_metadata": ModalState(incident_id=incident_id, environment=environment).model_dump_json(),
            "title": {"type": "plain_text", "text": f"Restore backup #{backup.id}"[:24]},
            "submit": {"type": "plain_text", "text": "Restore"}, "close": {"type": "plain_text", "text": "Cancel"},
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": clip(
                    f":warning: This overwrites {what} on *{escape(environment)}* with backup #{backup.id} taken "
                    f"{backup.created_at:%Y-%m-%d %H:%M} UTC. Every change made to those tables since then is lost. "
                    f"Type {code(environment)} to confirm.")}},
                {"type": "input", "block_id": BlockId.CONFIRM_INPUT.value,
                 "label": {"type": "plain_text", "text": "Environment name"},
                 "element": {"type": "plain_text_input", "action_id": "value"}},
            ]}
