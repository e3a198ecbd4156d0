"""Block Kit for the worker pipeline's thread replies: steps, retries, blockers, waiters, batches, verify (pure).

Usage::

    client.chat_postMessage(channel=c, thread_ts=ts, **build_step_message(7, "backup", "succeeded", 1234, ["…"]))
"""
from __future__ import annotations

import re
from typing import Any

from bot.models import database_words
from bot.slack.mrkdwn import Message, clip, code, code_block, escape


STEP_EMOJI = {"started": ":arrow_forward:", "succeeded": ":white_check_mark:", "failed": ":x:",
              "skipped": ":fast_forward:"}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text)}}


def _seconds(ms: int | float | None) -> str:
    if ms is None:
        return "?"
    return f"{ms / 1000:.1f} s" if ms >= 100 else f"{int(ms)} ms"


def _message(text: str, lines: list[str] | tuple[str, ...] = ()) -> Message:
    body = text + ("\n" + "\n".join(lines) if lines else "")
    return {"text": clip(text, 300), "blocks": [_section(body)]}


def build_step_message(request_id: int, step: str, status: str, duration_ms: int | None = None,
                       lines: list[str] | tuple[str, ...] = ()) -> Message:
    """One step started / succeeded / failed, with its timing and a few detail lines (mrkdwn: the caller
    escapes what it quotes, e.g. ``code(name)``)."""
    timing = f" in {_seconds(duration_ms)}" if duration_ms is not None else ""
    head = f"{STEP_EMOJI.get(status, '')} Request #{request_id}: *{escape(step)}* {escape(status)}{timing}"
    return _message(head, [f"• {line}" for line in lines])


_ERROR_CODE = re.compile(r"^\[[a-z0-9-]+\]\s*")  # the stable code stored before the message


def build_failure_message(request_id: int, failed_step: str, db_state: str, error: str) -> Message:
    """Where the run failed, what the database holds now in plain words, the (scrubbed) error in a code block
    that its own backticks cannot close, and what to do next."""
    head = f":x: Request #{request_id} failed at *{escape(failed_step)}*; the database {database_words(db_state)}."
    text = _ERROR_CODE.sub("", error.strip())
    text = text[:1800] + (" … (truncated)" if len(text) > 1800 else "")
    nxt = ("Nothing to undo: fix the cause and use Retry on the incident." if db_state in ("untouched", "rolled_back")
           else "Next: Roll back, Restore backup or fix forward, from the incident.")
    return _message(head, [code_block(text), nxt])


def build_retry_message(request_id: int, migration: str, attempt: int, tries: int, delay_s: float,
                        blockers: list[dict[str, Any]]) -> Message:
    """A lock timeout: we backed off and will try again; who held the lock."""
    head = (f":hourglass: Request #{request_id}: {code(migration)} hit the lock timeout (try {attempt} of {tries}); "
            f"retrying in {delay_s:.1f} s.")
    return _message(head, _blocker_lines(blockers))


def build_blocker_message(request_id: int, migration: str, tries: int, blockers: list[dict[str, Any]]) -> Message:
    """The last lock timeout: we gave up; who held the lock."""
    head = f":no_entry: Request #{request_id}: {code(migration)} could not get its locks after {tries} tries."
    return _message(head, _blocker_lines(blockers))


def _blocker_lines(blockers: list[dict[str, Any]]) -> list[str]:
    if not blockers:
        return ["• blocker: not seen (it finished before we looked)"]
    lines = []
    for b in blockers[:5]:
        age = f"{b.get('xact_age_s', 0):.1f} s" if b.get("xact_age_s") is not None else "?"
        lines.append(f"• blocker pid {escape(b.get('pid'))} {code(b.get('application_name') or '-')} "
                     f"{escape(b.get('state') or '?')}, transaction open {age}: {code((b.get('query') or '')[:200])}")
    return lines


def build_waiters_message(request_id: int, count: int, longest_s: float, waiters: list[dict[str, Any]]) -> Message:
    """The watchdog: application sessions are queued behind our migration's locks."""
    head = (f":warning: Request #{request_id}: {count} session(s) waiting behind the migration "
            f"(longest {longest_s:.1f} s).")
    lines = [f"• pid {escape(w.get('pid'))} {code(w.get('application_name') or '-')} waiting {w.get('wait_s', 0):.1f} s: "
             f"{code((w.get('query') or '')[:150])}" for w in waiters[:5]]
    return _message(head, lines)


def build_batch_message(request_id: int, migration: str, statement: int, rows: int, batches: int,
                        done: bool) -> Message:
    """Progress of a `-- guardian: batch N` statement."""
    state = "done" if done else "running"
    head = (f":repeat: Request #{request_id}: {code(migration)} statement {statement}: {rows} row(s) in "
            f"{batches} batch(es), {state}.")
    return _message(head)


def build_verify_message(request_id: int, ok: bool, diff: list[str], warnings: list[str],
                         failures: list[str]) -> Message:
    """Verification: the schema diff, warnings (invalid indexes, NOT VALID constraints, RLS changes), failures."""
    head = (f":white_check_mark: Request #{request_id}: verification passed." if ok
            else f":x: Request #{request_id}: verification failed.")
    lines = [f"• :x: {escape(f)}" for f in failures] + [f"• :warning: {escape(w)}" for w in warnings]
    if diff:
        shown = diff[:40] + ([f"… and {len(diff) - 40} more"] if len(diff) > 40 else [])
        lines.append("*Schema changes*\n" + code_block("\n".join(shown)))
    else:
        lines.append("_No schema changes._")
    return _message(head, lines)


def build_cleanup_message(deleted: int, freed_bytes: int) -> Message:
    return _message(f":wastebasket: Backup retention: {deleted} expired backup{'' if deleted == 1 else 's'} deleted, "
                    f"{freed_bytes / 2**20:.1f} MiB freed.")


def build_summary_message(request_id: int, steps: list[tuple[str, int | None]], backup: str | None,
                          events: int) -> Message:
    """The run's end: every step with its timing, the backup to restore from, the audit trail's length."""
    total = sum(ms or 0 for _, ms in steps)
    lines = [f"• {escape(step)}: {_seconds(ms)}" for step, ms in steps]
    if backup:
        lines.append(f"• backup: {code(backup)}")
    lines.append(f"• audit: {events} event{'' if events == 1 else 's'} recorded for this request (in Guardian's "
                 "audit log; `/migrate history` lists the requests)")
    return _message(f":tada: Request #{request_id} succeeded in {_seconds(total)}.", lines)
