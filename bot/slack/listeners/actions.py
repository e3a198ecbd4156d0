"""Buttons on request cards: ack at once, re-authorise from the store, then act through the flow."""
from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.config import GuardianConfig
from bot.errors import ConfirmationNeeded, GuardianError
from bot.fleet_control import FleetControl, RolloutAction
from bot.flow import Flow
from bot.incidents import IncidentService
from bot.slack.blocks import build_not_available_message
from bot.slack.ids import BUTTON_LABELS, ActionId, shown_fingerprint
from bot.slack.incident_blocks import build_restore_confirm_modal
from bot.slack.modals import ModalState, build_confirm_modal, build_reject_modal
from bot.slack.replies import replying_errors

logger = logging.getLogger(__name__)
REQUEST_ACTIONS = (ActionId.APPROVE, ActionId.REJECT, ActionId.CANCEL)
INCIDENT_ACTIONS = (ActionId.ROLL_BACK, ActionId.RESTORE_BACKUP, ActionId.RETRY, ActionId.MARK_FIXED_FORWARD,
                    ActionId.RESOLVE)
FLEET_ACTIONS = {ActionId.FLEET_PAUSE: RolloutAction.PAUSE, ActionId.FLEET_RESUME: RolloutAction.RESUME,
                 ActionId.FLEET_RETRY_FAILED: RolloutAction.RETRY_FAILED,
                 ActionId.FLEET_SKIP_FAILED: RolloutAction.SKIP_FAILED, ActionId.FLEET_ABORT: RolloutAction.ABORT,
                 ActionId.FLEET_TARGETS_FILE: RolloutAction.TARGETS_FILE}  # the button -> what FleetControl does


def _request_id(action: dict[str, Any]) -> int:
    try:
        return int(action.get("value") or "")
    except ValueError:
        raise GuardianError("this button carries no request number; use the latest card") from None


def _tell(respond: Respond, text: str) -> None:
    respond(text=text, response_type="ephemeral", replace_original=False)


def register(app: App, config: GuardianConfig, flow: Flow | None = None) -> None:
    """Attach one listener per ActionId."""

    def handle_card_action(ack: Ack, action: dict[str, Any], body: dict[str, Any], respond: Respond,
                           client: WebClient) -> None:
        """Request and incident buttons: ack, then act; values carry only ids, everything else is reloaded."""
        ack()
        action_id = ActionId(action["action_id"])
        act = _act if action_id in REQUEST_ACTIONS else _fleet_act if action_id in FLEET_ACTIONS else _incident_act
        with replying_errors(body, respond, client):
            act(action_id, action, body, respond, client)

    def _act(action_id: ActionId, action: dict[str, Any], body: dict[str, Any], respond: Respond,
             client: WebClient) -> None:
        user = body["user"]["id"]
        request_id = _request_id(action)
        logger.info("request %s: %s clicked by %s", request_id, action_id.value, user)
        if action_id is ActionId.CANCEL:
            _tell(respond, flow.cancel(request_id, user))
            return
        request = flow.get_request(request_id)
        shown = flow.shown_preview(request, shown_fingerprint(action.get("block_id")))
        state = ModalState(request_id=request_id, environment=request.environment, preview=shown)
        if action_id is ActionId.REJECT:
            flow.check_can_reject(request, user, shown)
            client.views_open(trigger_id=body["trigger_id"], view=build_reject_modal(state))
            return
        try:
            _tell(respond, flow.decide(request_id, user, "approve", shown=shown))
        except ConfirmationNeeded:
            client.views_open(trigger_id=body["trigger_id"], view=build_confirm_modal(state))

    def _incident_act(action_id: ActionId, action: dict[str, Any], body: dict[str, Any], respond: Respond,
                      client: WebClient) -> None:
        user = body["user"]["id"]
        incident_id = _request_id(action)
        logger.info("incident %s: %s clicked by %s", incident_id, action_id.value, user)
        service = IncidentService(flow)
        if action_id is ActionId.RESTORE_BACKUP:
            plan = service.prepare_restore(incident_id, user)
            client.views_open(trigger_id=body["trigger_id"], view=build_restore_confirm_modal(
                incident_id, plan.request.environment, plan.tables, plan.backup))
            return
        handler = {ActionId.ROLL_BACK: service.rollback, ActionId.RETRY: service.retry,
                   ActionId.MARK_FIXED_FORWARD: service.mark_fixed_forward, ActionId.RESOLVE: service.resolve}
        _tell(respond, handler[action_id](incident_id, user))

    def _fleet_act(action_id: ActionId, action: dict[str, Any], body: dict[str, Any], respond: Respond,
                   client: WebClient) -> None:
        user, request_id = body["user"]["id"], _request_id(action)
        logger.info("request %s: %s clicked by %s", request_id, action_id.value, user)
        _tell(respond, FleetControl(flow).act(FLEET_ACTIONS[action_id], request_id, user))

    def handle_not_yet(ack: Ack, action: dict[str, Any], respond: Respond) -> None:
        ack()
        _tell(respond, build_not_available_message(BUTTON_LABELS[ActionId(action["action_id"])])["text"])

    for action_id in ActionId:
        if flow is not None and action_id in (*REQUEST_ACTIONS, *INCIDENT_ACTIONS, *FLEET_ACTIONS):
            app.action(action_id.value)(handle_card_action)
        else:
            app.action(action_id.value)(handle_not_yet)
