"""Block Kit for `/migrate status` and `/migrate history` (pure, no I/O)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.fleet import FleetPlan
from bot.slack.fleet_blocks import fleet_status_lines
from bot.errors import GuardianError
from bot.models import Freeze, Incident, IncidentStatus, Request, database_words
from bot.pg.connect import TargetInfo
from bot.slack.cards import RISK_EMOJI, STATUS_EMOJI
from bot.slack.mrkdwn import clip, code, escape, mention
from bot.sources.models import MigrationState, SourceSnapshot, StatusReport
from bot.sources.status import resolve_command


def _line(r: Request) -> str:
    risk = f" · {RISK_EMOJI[r.risk]} {r.risk}" if r.risk else ""
    names = ", ".join(m.name for m in r.migrations[:3]) + (f" +{len(r.migrations) - 3}" if len(r.migrations) > 3 else "")
    return (f"{STATUS_EMOJI.get(r.status.value, '')} *#{r.id}* {escape(r.environment)} · {r.status.value.replace('_', ' ')}"
            f"{risk} · {mention(r.requester)} · {r.created_at:%Y-%m-%d %H:%M} UTC" + (f"\n      {code(names)}" if names else ""))


_BROKEN_STATES = ("partially_applied", "applied_unverified", "unknown")


def attention_lines(envs: Sequence[str], failed: Sequence[tuple[Request, Incident | None]],
                    freezes: dict[str, Freeze | None]) -> list[str]:
    """What is wrong, worst first: open incidents, databases left partly applied or unverified by a failed
    request with no resolved incident, other failed requests nobody has looked at, freezes."""
    incidents, broken, failures = [], [], []
    seen_envs: set[str] = set()
    for request, incident in failed:  # newest first
        holds = (request.db_state.value if request.db_state else "unknown")
        words = holds.replace("_", " ")
        where = f"failed at {escape(request.failed_step or '?')}; the database {database_words(request.db_state)}"
        if incident is not None and incident.status is not IncidentStatus.RESOLVED:
            incidents.append(f":rotating_light: *Incident #{incident.id}* ({incident.status.value}) on "
                             f"*{escape(request.environment)}*: request #{request.id} {where}")
            seen_envs.add(request.environment)
        elif incident is None and holds in _BROKEN_STATES and request.environment not in seen_envs:
            broken.append(f":warning: *{escape(request.environment)}*: request #{request.id} {where}; open an incident "
                          f"with `/migrate incident {request.id}`")
            seen_envs.add(request.environment)
        elif incident is None and len(failures) < 5:
            failures.append(f":x: Request #{request.id} on {escape(request.environment)} {where}")
    frozen = [f":snowflake: *{escape(env)}* is frozen until {f.ends_at:%Y-%m-%d %H:%M} UTC ({escape(f.reason)})"
              for env in envs if (f := freezes.get(env))]
    return incidents + broken + failures + frozen


def ledger_lines(snapshot: SourceSnapshot | None,
                 ledgers: dict[str, tuple[TargetInfo, StatusReport] | GuardianError]) -> dict[str, str]:
    """Per environment, what its ledger says of the repository's migrations (or why it could not be read)."""
    out = {}
    for name, found in ledgers.items():
        if isinstance(found, GuardianError):
            out[name] = (f":warning: {escape(found.message)}" if snapshot is not None
                         else f"migrations unreadable: {escape(found.message)}")
            continue
        if isinstance(found, FleetPlan):
            out[name] = fleet_status_lines([t.model_dump(mode="json") for t in found.targets])
            continue
        info, report = found
        counts = ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in sorted(report.summary.items()) if n)
        where = f"{info.host or 'socket'}/{info.database}"
        commit = (snapshot.commit if snapshot else None) or ""
        out[name] = (f"{code(where)} PostgreSQL "
                     f"{escape(info.server_version)} · at {code(commit[:10])}: {counts or 'no migrations'}")
        for m in report.by_state(MigrationState.FAILED)[:3]:  # what blocks, and the one command that unblocks it
            label = m.ledger_name or f"{m.version}_{m.name}"
            out[name] += (f"\n:no_entry: {code(label)} failed (P3009): once the database holds none of it, run "
                          f"{code(resolve_command(label))}")
        if report.skipped:
            out[name] += f"\n:information_source: {len(report.skipped)} file(s) skipped, as the tool's CLI skips them"
    return out


def build_status_message(envs: Sequence[str], open_requests: Sequence[Request],
                         freezes: dict[str, Freeze | None], ledgers: dict[str, str] | None = None,
                         attention: Sequence[str] = ()) -> dict[str, Any]:
    """What needs attention first (or that nothing does), then each environment: ledger, requests in flight."""
    parts = [("*Needs attention*\n" + "\n".join(attention)) if attention else ":white_check_mark: Nothing needs attention."]
    for env in envs:
        freeze = freezes.get(env)
        head = f"*{escape(env)}*" + (f" · :snowflake: frozen until {freeze.ends_at:%Y-%m-%d %H:%M} UTC ({escape(freeze.reason)})"
                                     if freeze else "")
        if ledgers and ledgers.get(env):
            head += f"\n{ledgers[env]}"  # mrkdwn from ledger_lines (it escapes names)
        mine = [r for r in open_requests if r.environment == env]
        parts.append(head + "\n" + ("\n".join(_line(r) for r in mine[:10]) if mine else "_no request in flight_"))
    text = clip("\n\n".join(parts), 2900)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def build_history_message(env: str | None, requests: Sequence[Request]) -> dict[str, Any]:
    title = f"*Recent requests{' on ' + escape(env) if env else ''}*"
    body = "\n".join(_line(r) for r in requests) if requests else "_none yet_"
    text = clip(f"{title}\n{body}", 2900)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
