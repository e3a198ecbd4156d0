"""The `/migrate` slash command: parse, ack at once, then hand each subcommand to the flow."""
from __future__ import annotations

import logging
from typing import Any, Callable

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.config import GuardianConfig
from bot.errors import PolicyDenied
from bot.flow import Flow
from bot.incidents import IncidentService, touched_relations
from bot.models import TERMINAL, RequestStatus
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
from bot.slack.mrkdwn import code, escape
from bot.slack.replies import replying_errors
from bot.slack.summaries import attention_lines, build_history_message, build_status_message

logger = logging.getLogger(__name__)

# A subcommand handler runs after the ack; later issues add one per subcommand here.
SubcommandHandler = Callable[[SlashCommand, dict[str, Any], Respond, WebClient], None]


def _request_number(text: str) -> int:
    try:
        return int(text.lstrip("#").removeprefix("R").removeprefix("r"))
    except ValueError:
        raise CommandUsageError(f"{text!r} is not a request number (e.g. 42)") from None


def ledger_summaries(flow: Flow, envs: list[str]) -> dict[str, str]:
    """Per environment, what its ledger says of the repository's migrations (or why it could not be read)."""
    from bot.errors import GuardianError
    from bot.sources.layouts import load_snapshot
    from bot.sources.models import MigrationState
    from bot.sources.status import environment_status, resolve_command

    try:
        snapshot = load_snapshot(flow.config.project)
    except GuardianError as exc:
        return {name: f"migrations unreadable: {escape(exc.message)}" for name in envs}
    out = {}
    for name in envs:
        try:
            info, report = environment_status(flow.config, name, snapshot)
        except GuardianError as exc:
            out[name] = f":warning: {escape(exc.message)}"
            continue
        counts = ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in sorted(report.summary.items()) if n)
        where = f"{info.host or 'socket'}/{info.database}"
        out[name] = (f"{code(where)} PostgreSQL "
                     f"{escape(info.server_version)} · at {code((snapshot.commit or '')[:10])}: {counts or 'no migrations'}")
        for m in report.by_state(MigrationState.FAILED)[:3]:  # what blocks, and the one command that unblocks it
            label = m.ledger_name or f"{m.version}_{m.name}"
            out[name] += (f"\n:no_entry: {code(label)} failed (P3009): once the database holds none of it, run "
                          f"{code(resolve_command(label))}")
        if report.skipped:
            out[name] += f"\n:information_source: {len(report.skipped)} file(s) skipped, as the tool's CLI skips them"
    return out


def handlers(flow: Flow) -> dict[type[SlashCommand], SubcommandHandler]:
    def plan(cmd: PlanCommand, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        request = flow.start_plan(cmd.env, command["user_id"], command.get("channel_id"),
                                  migrations=cmd.migrations, pending=cmd.pending, ref=cmd.ref)
        respond(text=f":mag: Request #{request.id} opened on {cmd.env}; analysing. Follow it in its thread.",
                response_type="ephemeral")

    def sql(cmd: SqlCommand, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        env = flow.env(cmd.env)
        if not env.allow_adhoc_sql:
            raise PolicyDenied(f"pasted SQL is not allowed on {cmd.env}; add a migration to the repository "
                               f"and use `/migrate plan {cmd.env}`", code="adhoc-not-allowed")
        client.views_open(trigger_id=command["trigger_id"], view=build_sql_modal(
            ModalState(environment=cmd.env, channel=command.get("channel_id"))))

    def status(cmd: StatusCommand, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        envs = [cmd.env] if cmd.env else sorted(flow.config.environments)
        for name in envs:
            flow.env(name)
        open_requests = [r for r in flow.store.list_requests(limit=200) if r.status not in TERMINAL
                         and r.environment in envs]
        freezes = {name: flow.store.get_active_freeze(name) for name in envs}
        failed = [(r, flow.store.find_incident(request_id=r.id))
                  for r in flow.store.list_requests(statuses=[RequestStatus.FAILED], limit=30) if r.environment in envs]
        respond(**build_status_message(envs, open_requests, freezes, ledger_summaries(flow, envs),
                                       attention_lines(envs, failed, freezes)),
                response_type="ephemeral")

    def history(cmd: HistoryCommand, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        if cmd.env:
            flow.env(cmd.env)
        respond(**build_history_message(cmd.env, flow.store.list_requests(environment=cmd.env, limit=15)),
                response_type="ephemeral")

    def cancel(cmd: CancelCommand, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        respond(text=flow.cancel(_request_number(cmd.request_id), command["user_id"]), response_type="ephemeral")

    def freeze(cmd: FreezeCommand, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        respond(text=flow.freeze(cmd.env, cmd.seconds, cmd.reason, command["user_id"]), response_type="in_channel")

    def unfreeze(cmd: UnfreezeCommand, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        respond(text=flow.unfreeze(cmd.env, command["user_id"]), response_type="in_channel")

    service = IncidentService(flow)

    def incident_for(request_text: str, user: str) -> int:
        request = flow.get_request(_request_number(request_text))
        found = flow.store.find_incident(request_id=request.id)
        if found is not None and found.status.value != "resolved":
            return found.id
        if request.status.value not in ("failed", "succeeded"):
            raise PolicyDenied(f"request #{request.id} is {request.status.value.replace('_', ' ')}; incidents are for "
                               "requests that ran", code="not-ran")
        return service.open(request.id, opened_by=user).id

    def incident(cmd: IncidentCommand, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        incident_id = incident_for(cmd.request_id, command["user_id"])
        respond(text=f":rotating_light: Incident #{incident_id} is open for request {cmd.request_id}; see its thread.",
                response_type="ephemeral")

    def rollback(cmd: RollbackCommand, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        respond(text=service.rollback(incident_for(cmd.request_id, command["user_id"]), command["user_id"]),
                response_type="ephemeral")

    def restore(cmd: RestoreCommand, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        incident_id = incident_for(cmd.request_id, command["user_id"])
        incident = flow.store.get_incident(incident_id)
        request = flow.store.get_request(incident.request_id)
        service._check_actor(incident, request, command["user_id"], "restore a backup")
        backups = flow.store.list_backups(request_id=request.id)
        if not backups:
            raise PolicyDenied(f"request #{request.id} has no backup to restore", code="no-backup")
        client.views_open(trigger_id=command["trigger_id"], view=build_restore_confirm_modal(
            incident_id, request.environment, touched_relations(request), backups[-1]))

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
