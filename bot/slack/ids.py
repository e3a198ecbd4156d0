"""Every slash command, action, block and callback id the app uses, as Enums (never raw strings in handlers)."""
from __future__ import annotations

from enum import StrEnum


class Command(StrEnum):
    MIGRATE = "/migrate"


class ActionId(StrEnum):
    """Buttons on request and incident cards; their values carry only ids (DESIGN §7)."""

    APPROVE = "request_approve"
    REJECT = "request_reject"
    CANCEL = "request_cancel"
    ROLL_BACK = "incident_roll_back"
    RESTORE_BACKUP = "incident_restore_backup"
    RETRY = "incident_retry"
    MARK_FIXED_FORWARD = "incident_mark_fixed_forward"
    RESOLVE = "incident_resolve"
    FLEET_PAUSE = "fleet_pause"
    FLEET_RESUME = "fleet_resume"
    FLEET_RETRY_FAILED = "fleet_retry_failed"
    FLEET_SKIP_FAILED = "fleet_skip_failed"
    FLEET_ABORT = "fleet_abort"
    FLEET_TARGETS_FILE = "fleet_targets_file"


class CallbackId(StrEnum):
    """Modal callback ids."""

    SQL_REQUEST = "sql_request_modal"
    REJECT_REASON = "reject_reason_modal"
    CONFIRM_APPROVAL = "confirm_approval_modal"
    CONFIRM_RESTORE = "confirm_restore_modal"


class BlockId(StrEnum):
    HELP = "help"
    REQUEST_ACTIONS = "request_actions"
    INCIDENT_ACTIONS = "incident_actions"
    SQL_INPUT = "sql_input"
    REASON_INPUT = "reason_input"
    CONFIRM_INPUT = "confirm_input"


# Visible labels of the buttons, part of the Slack contract (DESIGN §7).
BUTTON_LABELS: dict[ActionId, str] = {
    ActionId.APPROVE: "Approve",
    ActionId.REJECT: "Reject",
    ActionId.CANCEL: "Cancel",
    ActionId.ROLL_BACK: "Roll back",
    ActionId.RESTORE_BACKUP: "Restore backup",
    ActionId.RETRY: "Retry",
    ActionId.MARK_FIXED_FORWARD: "Mark fixed forward",
    ActionId.RESOLVE: "Resolve",
    ActionId.FLEET_PAUSE: "Pause",
    ActionId.FLEET_RESUME: "Resume",
    ActionId.FLEET_RETRY_FAILED: "Retry failed",
    ActionId.FLEET_SKIP_FAILED: "Skip failed",
    ActionId.FLEET_ABORT: "Abort",
    ActionId.FLEET_TARGETS_FILE: "Targets file",
}


def preview_block_id(fingerprint: str) -> str:
    """The block id of a request card's buttons: it carries the fingerprint of the preview they sit under.

    Slack echoes a clicked button's block id back, so a click says which preview its person saw.
    """
    return f"{BlockId.REQUEST_ACTIONS.value}.{fingerprint}"


def shown_fingerprint(block_id: str | None) -> str | None:
    """The preview fingerprint a clicked button's block id carries (None: a card without one)."""
    prefix = BlockId.REQUEST_ACTIONS.value + "."
    if block_id and block_id.startswith(prefix) and len(block_id) > len(prefix):
        return block_id[len(prefix):]
    return None
