"""Block Kit for `/migrate status` and `/migrate history` (pure, no I/O)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.models import Freeze, Request
from bot.slack.cards import RISK_EMOJI, STATUS_EMOJI
from bot.slack.mrkdwn import clip, code, escape, mention


def _line(r: Request) -> str:
    risk = f" · {RISK_EMOJI[r.risk]} {r.risk}" if r.risk else ""
    names = ", ".join(m.name for m in r.migrations[:3]) + (f" +{len(r.migrations) - 3}" if len(r.migrations) > 3 else "")
    return (f"{STATUS_EMOJI.get(r.status.value, '')} *#{r.id}* {escape(r.environment)} · {r.status.value.replace('_', ' ')}"
            f"{risk} · {mention(r.requester)} · {r.created_at:%Y-%m-%d %H:%M} UTC" + (f"\n      {code(names)}" if names else ""))


def build_status_message(envs: Sequence[str], open_requests: Sequence[Request],
                         freezes: dict[str, Freeze | None], ledgers: dict[str, str] | None = None) -> dict[str, Any]:
    parts = []
    for env in envs:
        freeze = freezes.get(env)
        head = f"*{escape(env)}*" + (f" · :snowflake: frozen until {freeze.ends_at:%Y-%m-%d %H:%M} UTC ({escape(freeze.reason)})"
                                     if freeze else "")
        if ledgers and ledgers.get(env):
            head += f"\n{ledgers[env]}"  # mrkdwn from the caller (listeners/commands.ledger_summaries escapes names)
        mine = [r for r in open_requests if r.environment == env]
        parts.append(head + "\n" + ("\n".join(_line(r) for r in mine[:10]) if mine else "_no request in flight_"))
    text = clip("\n\n".join(parts), 2900)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def build_history_message(env: str | None, requests: Sequence[Request]) -> dict[str, Any]:
    title = f"*Recent requests{' on ' + escape(env) if env else ''}*"
    body = "\n".join(_line(r) for r in requests) if requests else "_none yet_"
    text = clip(f"{title}\n{body}", 2900)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
