"""The `/migrate` slash command: parse, ack at once, then hand each subcommand to the flow."""
from __future__ import annotations

import logging
from typing import Any, Callable

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.config import GuardianConfig
from bot.flow import Flow
from bot.incidents import IncidentService
from bot.slack.blocks import build_help_message, build_not_available_message, build_usage_message
from bot.slack.commands_grammar import (
    BackupCommand,
    CancelCommand,
    CommandUsageError,
    FreezeCommand,
    HelpCommand,
    HistoryCommand,
    IncidentCommand,
    NoteCommand,
    PostmortemCommand,
    RestoreCommand,
    RollbackCommand,
    PlanCommand,
    SlashCommand,
    SqlCommand,
    StatusCommand,
    UnfreezeCommand,
    parse_command,
)
from bot.slack.ids import Command
from bot.slack.incident_blocks import build_restore_confirm_modal
from bot.slack.modals import ModalState, build_sql_modal
from bot.slack.replies import replying_errors
from bot.slack.summaries import attention_lines, build_history_message, build_status_message, ledger_lines

logger = logging.getLogger(__name__)

# A subcommand handler runs after the ack; later issues add one per subcommand here.
SubcommandHandler = Callable[[SlashCommand, dict[str, Any], Respond, WebClient], None]


def _request_number(text: str) -> int:
    try:
        return int(text.lstrip("#").removeprefix("R").removeprefix("r"))
    except ValueError:
        raise CommandUsageError(f"{text!r} is not a request number (e.g. 42)") from None


def handlers(flow: Flow) -> dict[type[SlashCommand], SubcommandHandler]:
    def plan(cmd: PlanCommand, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        request = flow.start_plan(cmd.env, command["user_id"], command.get("channel_id"),
                                  migrations=cmd.migrations, pending=cmd.pending, ref=cmd.ref)
        respond(text=f":mag: Request #{request.id} opened on {cmd.env}; analysing. Follow it in its thread.",
                response_type="ephemeral")

    def sql(cmd: SqlCommand, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        flow.check_adhoc(cmd.env)
        client.views_open(trigger_id=command["trigger_id"], view=build_sql_modal(
            ModalState(environment=cmd.env, channel=command.get("channel_id"))))

    def status(cmd: StatusCommand, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        seen = flow.status_overview(cmd.env)
        respond(**build_status_message(seen.environments, seen.open_requests, seen.freezes,
                                       ledger_lines(seen.snapshot, seen.ledgers),
                                       attention_lines(seen.environments, seen.failed, seen.freezes)),
                response_type="ephemeral")

    def history(cmd: HistoryCommand, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        respond(**build_history_message(cmd.env, flow.history(cmd.env)),
                response_type="ephemeral")

    def cancel(cmd: CancelCommand, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        respond(text=flow.cancel(_request_number(cmd.request_id), command["user_id"]), response_type="ephemeral")

    def freeze(cmd: FreezeCommand, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        respond(text=flow.freeze(cmd.env, cmd.seconds, cmd.reason, command["user_id"]), response_type="in_channel")

    def unfreeze(cmd: UnfreezeCommand, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        respond(text=flow.unfreeze(cmd.env, command["user_id"]), response_type="in_channel")

    service = IncidentService(flow)

    def incident_for(request_text: str, user: str) -> int:
        return service.open_for(flow.get_request(_request_number(request_text)), user).id

    def incident(cmd: IncidentCommand, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        incident_id = incident_for(cmd.request_id, command["user_id"])
        respond(text=f":rotating_light: Incident #{incident_id} is open for request {cmd.request_id}; see its thread.",
                response_type="ephemeral")

    def rollback(cmd: RollbackCommand, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        respond(text=service.rollback(incident_for(cmd.request_id, command["user_id"]), command["user_id"]),
                response_type="ephemeral")

    def restore(cmd: RestoreCommand, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        plan = service.prepare_restore(incident_for(cmd.request_id, command["user_id"]), command["user_id"])
        client.views_open(trigger_id=command["trigger_id"], view=build_restore_confirm_modal(
            plan.incident.id, plan.request.environment, plan.tables, plan.backup))

    def note(cmd: NoteCommand, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        incident_id = _request_number(cmd.incident_id)
        service.note(incident_id, command["user_id"], cmd.text, source="command")
        respond(text=f":memo: Added to the timeline of incident #{incident_id}.", response_type="ephemeral")

    def postmortem(cmd: PostmortemCommand, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        incident_id = _request_number(cmd.incident_id)
        service.publish_postmortem(incident_id, command["user_id"])
        respond(text=f":page_facing_up: The post-mortem draft of incident #{incident_id} is in its thread.",
                response_type="ephemeral")

    def backup(cmd: BackupCommand, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        respond(text=flow.request_backup(cmd.env, command["user_id"], command.get("channel_id")),
                response_type="ephemeral")

    return {BackupCommand: backup, PlanCommand: plan, SqlCommand: sql, StatusCommand: status, HistoryCommand: history,
            CancelCommand: cancel, FreezeCommand: freeze, UnfreezeCommand: unfreeze, IncidentCommand: incident,
            RollbackCommand: rollback, RestoreCommand: restore, NoteCommand: note, PostmortemCommand: postmortem}


def register(app: App, config: GuardianConfig, flow: Flow | None = None) -> None:
    """Attach the `/migrate` listener to ``app``."""
    table = handlers(flow) if flow is not None else {}

    def handle_migrate_command(ack: Ack, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        try:
            parsed = parse_command(command.get("text", ""))
        except CommandUsageError as exc:
            ack(**build_usage_message(exc.message), response_type="ephemeral")
            logger.info("/migrate usage error user=%s: %s", command.get("user_id"), exc.code)
            return
        if isinstance(parsed, HelpCommand):
            ack(**build_help_message(), response_type="ephemeral")
            return
        handler = table.get(type(parsed))
        if handler is None:
            ack(**build_not_available_message(f"/migrate {parsed.name}"), response_type="ephemeral")
            return
        ack()
        logger.info("/migrate %s user=%s channel=%s", parsed.name, command.get("user_id"), command.get("channel_id"))
        with replying_errors(command, respond, client):
            handler(parsed, command, respond, client)

    app.command(Command.MIGRATE.value)(handle_migrate_command)
