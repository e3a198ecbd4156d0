"""Block Kit for a fleet request's preview: its targets grouped by ledger state, and the rollout it will run (pure)."""
from __future__ import annotations

from typing import Any

from bot.slack.mrkdwn import clip, code, escape

Message = dict[str, Any]
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


def build_fleet_preview_message(environment: str, fleet: dict[str, Any], risks: dict[str, str]) -> Message:
    """The targets by group (counts and names), each distinct file set once with its worst risk, and the rollout.

    ``risks`` maps a file's name to its risk level (the request's analysis, judged once per file)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for t in fleet["targets"]:
        label = ("pending " + ", ".join(t["pending"])) if t["state"] == "pending" else {
            "applied": "already applied", "drifted": "drifted", "unreachable": "unreachable"}[t["state"]]
        groups.setdefault((t["state"], label), []).append(t)
    order = {"pending": 0, "applied": 1, "drifted": 2, "unreachable": 3}
    lines = []
    for (state, label), targets in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], -len(kv[1]))):
        if state == "pending":
            files = targets[0]["pending"]
            worst = max((risks.get(f, "low") for f in files), key=["low", "medium", "high", "critical"].index)
            label = f"pending {len(files)} file{'s' if len(files) != 1 else ''} ({', '.join(files)}), risk {worst}"
        lines.append(_group_line(label, state, targets))
    counts, r = fleet["counts"], fleet["rollout"]
    head = (f":busts_in_silhouette: *Fleet {escape(environment)}*: {sum(counts.values())} targets — "
            + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    largest = ", ".join(f"{code(t['id'])} {_size(t['size_bytes'])}" for t in fleet.get("largest", []))
    judged = f" Risk judged on the tables of {code(fleet['judged_on'])}." if fleet.get("judged_on") else ""
    rollout = (f"*Rollout*: {r['targets']} targets in {r['waves']} wave{'s' if r['waves'] != 1 else ''} — canary "
               f"{r['canary']}, then {escape(r['wave'])} per wave, ≤{r['parallel']} at once, ≤{r['per_server']} per "
               f"server, halt after {r['halt_after_failures']} failure{'s' if r['halt_after_failures'] != 1 else ''}"
               + (", health query between waves" if r["health_query"] else "") + f", pause {escape(r['pause'])}."
               + (f" Largest: {largest}." if largest else "") + judged
               + " This approval covers exactly these targets: one added or drifted later is listed, not migrated.")
    text = "\n".join([head, *lines, rollout])
    return {"text": f"Fleet {environment}: {sum(counts.values())} targets",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": clip(text, 2900)}}]}
