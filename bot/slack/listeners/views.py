"""Modal submissions: pasted SQL, rejection reasons and production confirmations, re-checked from the store."""
from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.config import GuardianConfig
from bot.errors import GuardianError
from bot.flow import Flow
from bot.incidents import IncidentService
from bot.models import UNKNOWN_PREVIEW
from bot.slack.ids import BlockId, CallbackId
from bot.slack.modals import MAX_PASTED_SQL_CHARS, ModalState, submitted_value
from bot.slack.mrkdwn import as_mrkdwn
from bot.slack.replies import replying_errors

logger = logging.getLogger(__name__)


def _dm(client: WebClient, user: str, channel: str | None, text: str) -> None:
    """Tell ``user`` privately: an ephemeral message in ``channel``, or a direct message where the bot cannot
    post there (a channel it was not invited to, a conversation between people)."""
    if channel:
        try:
            client.chat_postEphemeral(channel=channel, user=user, text=text)
            return
        except SlackApiError as exc:
            logger.info("ephemeral to %s in %s refused (%s); sending a direct message", user, channel,
                        exc.response.get("error"))
    client.chat_postMessage(channel=user, text=text)


def register(app: App, config: GuardianConfig, flow: Flow | None = None) -> None:
    """Attach the modal submission listeners."""

    def handle_sql_request_view(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        if flow is None:
            ack(response_action="errors", errors={BlockId.SQL_INPUT.value: "Pasted SQL is not available here."})
            return
        state = ModalState.model_validate_json(view.get("private_metadata") or "{}")
        sql = submitted_value(view, BlockId.SQL_INPUT)
        if not sql.strip():
            ack(response_action="errors", errors={BlockId.SQL_INPUT.value: "Paste at least one statement."})
            return
        if len(sql) > MAX_PASTED_SQL_CHARS:
            ack(response_action="errors", errors={BlockId.SQL_INPUT.value:
                f"At most {MAX_PASTED_SQL_CHARS:,} characters here; put longer SQL in a migration file and "
                "use /migrate plan."})
            return
        if "\x00" in sql:
            ack(response_action="errors", errors={BlockId.SQL_INPUT.value: "The SQL contains a NUL character; remove it."})
            return
        user = body["user"]["id"]
        try:
            flow.check_adhoc(state.environment or "")  # the config alone: no I/O before the ack
        except GuardianError as exc:
            ack(response_action="errors", errors={BlockId.SQL_INPUT.value: exc.message[:150]})
            return
        ack()  # Slack waits at most 3 s; recording, posting the card and queueing run after it
        try:
            request = flow.start_plan(state.environment or "", user, state.channel, adhoc_sql=sql)
        except GuardianError as exc:
            _dm(client, user, state.channel, f":x: {as_mrkdwn(exc.message)}")
            return
        logger.info("request %s: pasted SQL planned by %s", request.id, user)

    def handle_reject_view(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        ack()
        with replying_errors(body, None, client):
            _reject(body, view, client)

    def _reject(body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        state = ModalState.model_validate_json(view.get("private_metadata") or "{}")
        user = body["user"]["id"]
        reason = submitted_value(view, BlockId.REASON_INPUT).strip() or None
        try:
            text = flow.decide(int(state.request_id or 0), user, "reject", reason=reason,
                               shown=state.preview or UNKNOWN_PREVIEW)
        except GuardianError as exc:
            text = f":x: {as_mrkdwn(exc.message)}"
        _dm(client, user, flow.get_request(int(state.request_id or 0)).channel, text)

    def handle_confirm_view(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        state = ModalState.model_validate_json(view.get("private_metadata") or "{}")
        typed = submitted_value(view, BlockId.CONFIRM_INPUT).strip()
        request = flow.get_request(int(state.request_id or 0))
        if typed != request.environment:
            ack(response_action="errors",
                errors={BlockId.CONFIRM_INPUT.value: f"Type {request.environment} exactly to approve."})
            return
        ack()
        with replying_errors(body, None, client):
            _confirm(body, request, typed, state.preview or UNKNOWN_PREVIEW, client)

    def _confirm(body: dict[str, Any], request: Any, typed: str, shown: str, client: WebClient) -> None:
        user = body["user"]["id"]
        try:
            text = flow.decide(request.id, user, "approve", confirmed_environment=typed, shown=shown)
        except GuardianError as exc:
            text = f":x: {as_mrkdwn(exc.message)}"
        _dm(client, user, request.channel, text)

    def handle_restore_view(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        incident_id = ModalState.model_validate_json(view.get("private_metadata") or "{}").incident_id or 0
        typed = submitted_value(view, BlockId.CONFIRM_INPUT).strip()
        service = IncidentService(flow)
        incident, request = service.get(incident_id)
        if typed != request.environment:
            ack(response_action="errors",
                errors={BlockId.CONFIRM_INPUT.value: f"Type {request.environment} exactly to restore."})
            return
        ack()
        user = body["user"]["id"]
        with replying_errors(body, None, client):
            try:
                text = service.restore(incident_id, user, confirmed_environment=typed)
            except GuardianError as exc:
                text = f":x: {as_mrkdwn(exc.message)}"
            _dm(client, user, incident.channel, text)

    app.view(CallbackId.SQL_REQUEST.value)(handle_sql_request_view)
    if flow is not None:
        app.view(CallbackId.REJECT_REASON.value)(handle_reject_view)
        app.view(CallbackId.CONFIRM_APPROVAL.value)(handle_confirm_view)
        app.view(CallbackId.CONFIRM_RESTORE.value)(handle_restore_view)
