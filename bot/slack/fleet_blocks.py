"""Block Kit for a fleet request: the preview (targets grouped by ledger state) and the rollout section of its card (pure)."""
from __future__ import annotations

import csv
import io
import re
from typing import Any

from bot.slack.ids import BUTTON_LABELS, ActionId
from bot.slack.mrkdwn import Message, clip, code, escape, mention
from bot.views import FleetView

NAMES_SHOWN = 8  # names listed per group; the rest are counted
_GROUP_EMOJI = {"pending": ":hourglass_flowing_sand:", "applied": ":white_check_mark:", "drifted": ":warning:",
                "unreachable": ":no_entry:"}


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _group_line(label: str, state: str, targets: list[dict[str, Any]]) -> str:
    names = ", ".join(code(t["id"]) + (f" ({escape(t['reason'])})" if t.get("reason") else "")
                      for t in targets[:NAMES_SHOWN])
    more = f" … and {len(targets) - NAMES_SHOWN} more" if len(targets) > NAMES_SHOWN else ""
    return f"{_GROUP_EMOJI[state]} *{escape(label)}* — {len(targets)}: {names}{more}"


def fleet_status_lines(targets: list[dict[str, Any]]) -> str:
    """`/migrate status <fleet>`: the targets by ledger state, one line per group with its count and first names."""
    return "\n".join(_group_lines(targets, None))


def _group_lines(targets: list[dict[str, Any]], risks: dict[str, str] | None) -> list[str]:
    """One line per group; pending targets grouped by the files they lack (with those files' worst risk)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for t in targets:
        label = ("pending " + ", ".join(t["pending"])) if t["state"] == "pending" else {
            "applied": "already applied", "drifted": "drifted", "unreachable": "unreachable"}[t["state"]]
        groups.setdefault((t["state"], label), []).append(t)
    order = {"pending": 0, "applied": 1, "drifted": 2, "unreachable": 3}
    lines = []
    for (state, label), members in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], -len(kv[1]))):
        if state == "pending":
            files = members[0]["pending"]
            label = f"pending {len(files)} file{'s' if len(files) != 1 else ''} ({', '.join(files)})"
            if risks is not None:
                label += ", risk " + max((risks.get(f, "low") for f in files),
                                         key=["low", "medium", "high", "critical"].index)
        lines.append(_group_line(label, state, members))
    return lines


def _estimate(estimate: dict[str, Any] | None) -> str:
    if not estimate:
        return ""
    s = estimate["seconds"]
    when = f"{s / 60:.0f} min" if s >= 90 else f"{s:.0f} s"
    return f" *Estimated duration*: about {when} ({escape(estimate['basis'])})."


def build_fleet_preview_message(environment: str, fleet: dict[str, Any], risks: dict[str, str]) -> Message:
    """The targets by group (counts and names), each distinct file set once with its worst risk, and the rollout.

    ``risks`` maps a file's name to its risk level (the request's analysis, judged once per file)."""
    lines = _group_lines(fleet["targets"], risks)
    counts, r = fleet["counts"], fleet["rollout"]
    head = (f":busts_in_silhouette: *Fleet {escape(environment)}*: {sum(counts.values())} targets — "
            + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    largest = ", ".join(f"{code(t['id'])} {_size(t['size_bytes'])}" for t in fleet.get("largest", []))
    judged = f" Risk judged on the tables of {code(fleet['judged_on'])}." if fleet.get("judged_on") else ""
    rollout = (f"*Rollout*: {r['targets']} targets in {r['waves']} wave{'s' if r['waves'] != 1 else ''} — canary "
               f"{r['canary']}, then {escape(r['wave'])} per wave, ≤{r['parallel']} at once, ≤{r['per_server']} per "
               f"server, halt after {r['halt_after_failures']} failure{'s' if r['halt_after_failures'] != 1 else ''}"
               + (", health query between waves" if r["health_query"] else "") + f", pause {escape(r['pause'])}."
               + (f" Largest: {largest}." if largest else "") + judged + _estimate(fleet.get("estimate"))
               + " This approval covers exactly these targets: one added or drifted later is listed, not migrated.")
    text = "\n".join([head, *lines, rollout])
    return {"text": f"Fleet {environment}: {sum(counts.values())} targets",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": clip(text)}}]}


_BAR = 20
_CONTROL_REASON = re.compile(r"([a-z]+) by <@([UW][A-Z0-9_]+)>")  # Messages.rollout_reason's shape
_STATE_WORDS = {"running": ":gear: running", "paused": ":double_vertical_bar: paused",
                "halted": ":octagonal_sign: halted", "succeeded": ":tada: done", "aborted": ":no_entry: aborted"}


def _reason(text: str) -> str:
    """The rollout's recorded reason as mrkdwn: a person's control (Messages.rollout_reason: ``paused by <@U…>``)
    with its mention, anything else (a halt's cause, a health gate's answer) escaped."""
    control = _CONTROL_REASON.fullmatch(text)
    return f"{escape(control[1])} by {mention(control[2])}" if control else escape(text)


def build_rollout_blocks(request_id: int, view: FleetView) -> list[dict[str, Any]]:
    """The rollout section of a fleet request's card: progress bar, counts per state, the wave, an ETA, the failed
    targets with one-line reasons, and the buttons the state allows (Pause, Resume, Retry failed, Skip failed,
    Abort), and Targets file (the per-target table, uploaded into the thread on request). One card, updated in
    place, whatever the number of targets."""
    counts = view.counts
    total = sum(n for s, n in counts.items() if s != "excluded")
    done = sum(counts.get(s, 0) for s in ("succeeded", "failed", "skipped"))
    filled = round(_BAR * done / total) if total else _BAR
    bar = "█" * filled + "░" * (_BAR - filled)
    order = ("succeeded", "running", "queued", "waiting", "failed", "skipped", "excluded")
    parts = [f"{counts[s]} {s}" for s in order if counts.get(s)]
    eta = f" · about {view.eta_s / 60:.0f} min left" if view.eta_s and view.state == "running" else ""
    lines = [f"*Rollout* {_STATE_WORDS.get(view.state, view.state)} · wave {min(view.wave, max(view.waves - 1, 0))} "
             f"of {max(view.waves - 1, 0)} (0 = canary){eta}",
             f"`{bar}` {done}/{total}", ", ".join(parts)]
    if view.reason:
        lines.append(f"_{_reason(view.reason)}_")
    lines += [f"• {code(t)}: {escape(why)[:150]}" for t, why in view.failed]
    if counts.get("failed", 0) > len(view.failed):
        lines.append(f"… and {counts['failed'] - len(view.failed)} more failed")
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": clip("\n".join(lines))}}]
    actions = {"running": [ActionId.FLEET_PAUSE, ActionId.FLEET_ABORT],
               "paused": [ActionId.FLEET_RESUME, ActionId.FLEET_ABORT],
               "halted": [ActionId.FLEET_RESUME, ActionId.FLEET_RETRY_FAILED, ActionId.FLEET_SKIP_FAILED,
                          ActionId.FLEET_ABORT]}.get(view.state, [])
    actions.append(ActionId.FLEET_TARGETS_FILE)  # read-only: in every state, the finished rollout's table too
    if actions:
        blocks.append({"type": "actions", "block_id": f"fleet_actions.{request_id}", "elements": [
            {"type": "button", "action_id": a.value, "value": str(request_id),
             "text": {"type": "plain_text", "text": BUTTON_LABELS[a]},
             **({"style": "danger"} if a is ActionId.FLEET_ABORT else {})} for a in actions]})
    return blocks


_FORMULA = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet would run a cell starting so as a formula


def build_targets_file(request_id: int, columns: tuple[str, ...], rows: list[dict[str, str]]) -> str:
    """The Targets file: CSV with a header of ``columns`` and one line per row (text cells that a spreadsheet would
    read as a formula are quoted with a leading apostrophe).

    >>> build_targets_file(7, ("target", "state"), [{"target": "=cmd()", "state": "failed"}]).splitlines()
    ['target,state', "'=cmd(),failed"]
    """
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "'" + v if v.startswith(_FORMULA) else v for k, v in row.items()})
    return out.getvalue()
