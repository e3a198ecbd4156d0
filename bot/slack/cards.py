"""Block Kit for a request: the root status card and the thread's SQL and risk summary (pure, no I/O).

Usage::

    client.chat_update(channel=c, ts=ts, **build_request_card(request, view))
    for message in build_risk_messages(request): client.chat_postMessage(channel=c, thread_ts=ts, **message)
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.models import Request, RequestStatus, database_words
from bot.slack.batching import FILES_PER_UPLOAD, MAX_BLOCKS, chunks, combine
from bot.slack.fleet_blocks import build_rollout_blocks
from bot.slack.ids import BUTTON_LABELS, ActionId, preview_block_id
from bot.slack.mrkdwn import Message, clip, code, code_block, escape, mention, mention_any
from bot.views import CardView

INLINE_SQL_LIMIT = 2500  # longer SQL goes to the thread as an uploaded file

RISK_EMOJI = {"low": ":large_green_circle:", "medium": ":large_yellow_circle:", "high": ":large_orange_circle:",
              "critical": ":red_circle:"}
STATUS_EMOJI = {
    "analyzing": ":mag:", "awaiting_approval": ":hourglass_flowing_sand:", "approved": ":white_check_mark:",
    "queued": ":inbox_tray:", "backing_up": ":floppy_disk:", "applying": ":gear:", "verifying": ":microscope:",
    "succeeded": ":tada:", "rejected": ":no_entry:", "cancelled": ":heavy_multiplication_x:",
    "expired": ":hourglass:", "failed": ":x:",
}
SEVERITY_ORDER = ("critical", "high", "medium", "low")


def _n(count: int, noun: str) -> str:
    """'1 message', '3 messages': plurals spelled out, never '(s)'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _status_words(status: RequestStatus) -> str:
    return status.value.replace("_", " ")


def _env_badge(request: Request, view: CardView) -> str:
    marker = ":rotating_light:" if view.production else ":test_tube:"
    named = request.environment.lower() == "production"
    return f"{marker} *{escape(request.environment)}*" + (" (production)" if view.production and not named else "")


def _target_line(request: Request) -> str:
    t = request.target or {}
    if not t:
        return "_not connected yet_"
    host = t.get("host") or "local socket"
    port = f":{t['port']}" if t.get("port") else ""
    return f"{code(f'{host}{port}/' + str(t.get('database', '?')))} · PostgreSQL {escape(t.get('server_version', '?'))}"


def build_request_card(request: Request, view: CardView) -> Message:
    """The root message of a request, re-rendered from the store after every change."""
    status = request.status
    title = f"{STATUS_EMOJI.get(status.value, '')} Migration request #{request.id} · {request.environment} · {_status_words(status)}"
    fields = [
        f"*Environment*\n{_env_badge(request, view)}",
        f"*Target*\n{_target_line(request)}",
        f"*Requested by*\n{mention(request.requester)}",
        f"*Commit*\n{code(request.git_commit[:10])}" if request.git_commit else
        ("*Source*\npasted SQL" if request.source == "adhoc" else "*Commit*\n_reading…_"),
    ]
    if request.risk:
        fields.append(f"*Risk*\n{RISK_EMOJI[request.risk]} {request.risk}")
    missing = view.approvals_required - len(view.approvers)
    waiting = ""
    if status is RequestStatus.AWAITING_APPROVAL and view.waiting_for and missing > 0:
        names = [mention_any(w) for w in view.waiting_for]
        if missing == 1:
            waiting = " — waiting for " + " or ".join(names)
        elif missing >= len(names):  # everyone still listed is needed
            waiting = " — waiting for " + (", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0])
        else:
            waiting = f" — waiting for {missing} of " + ", ".join(names)
    fields.append(
        f"*Approvals*\n{len(view.approvers)}/{view.approvals_required}{waiting}"
        + ("\napproved by " + ", ".join(mention(u) for u in view.approvers) if view.approvers else "")
    )
    blocks: list[dict[str, Any]] = [
        # plain_text with emoji=true renders the :code: as the emoji in Slack
        {"type": "header", "text": {"type": "plain_text", "emoji": True, "text": clip(title, 150)}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": clip(f, 1900)} for f in fields]},
    ]
    if request.migrations:
        lines = [f"• {code(m.name)} · sha256 `{m.sha256[:12]}`" + (f" · {RISK_EMOJI[m.risk]} {m.risk}" if m.risk else "")
                 for m in request.migrations]
        shown = lines[:40] + ([f"… and {len(lines) - 40} more"] if len(lines) > 40 else [])
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": clip("*Migrations*\n" + "\n".join(shown))}})
    if request.risk_reasons:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": clip(
            "*Why this risk*\n" + "\n".join(f"• {escape(r)}" for r in request.risk_reasons[:10]))}})
    notes = []
    if view.requires_missing:
        notes.append(":lock: Requires the same SQL to succeed first on: " + ", ".join(f"*{escape(e)}*" for e in view.requires_missing))
    if view.requires_met:
        notes.append(":white_check_mark: Already succeeded on: " + ", ".join(escape(e) for e in view.requires_met))
    if view.rejected_by:
        notes.append(":no_entry: Rejected by " + ", ".join(mention(u) for u in view.rejected_by))
    for user, why in view.stale[:5]:
        notes.append(f":warning: {mention(user)}'s approval no longer counts: {escape(why)}")
    if view.gate_note:
        notes.append(f":clock3: {view.gate_note}")
    if view.thread_behind:
        notes.append(f":hourglass: The thread is behind: {_n(view.thread_behind, 'message')} Slack did not take yet; "
                     "Guardian posts them again shortly.")
    if view.thread_lost:
        notes.append(f":warning: {_n(view.thread_lost, 'thread message')} could not be posted (Slack refused them "
                     "for good); the audit log records which.")
    if status is RequestStatus.FAILED:  # the error itself is in the thread, once (not repeated here)
        where = request.failed_step or "?"
        notes.append(f":x: Failed at *{escape(where)}*; the database {database_words(request.db_state)}. "
                     "The thread says why and what to do next.")
    if view.note:
        notes.append(view.note)
    if notes:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": clip("\n".join(notes))}})
    if view.fleet is not None:
        blocks += build_rollout_blocks(request.id, view.fleet)
    buttons = []
    if status is RequestStatus.AWAITING_APPROVAL:
        buttons += [_button(ActionId.APPROVE, request.id, "primary"), _button(ActionId.REJECT, request.id, "danger")]
    if status in (RequestStatus.ANALYZING, RequestStatus.AWAITING_APPROVAL, RequestStatus.APPROVED, RequestStatus.QUEUED):
        buttons.append(_button(ActionId.CANCEL, request.id))
    if buttons:
        blocks.append({"type": "actions", "block_id": preview_block_id(request.preview_fingerprint),
                       "elements": buttons})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text":
        f"Request #{request.id} · opened {request.created_at:%Y-%m-%d %H:%M} UTC · updated {(view.rendered_at or request.updated_at):%H:%M:%S} UTC"}]})
    text = f"Migration request #{request.id} on {request.environment}: {_status_words(status)}"
    return {"text": text, "blocks": blocks[:MAX_BLOCKS]}


def _button(action: ActionId, request_id: int, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {"type": "button", "action_id": action.value, "value": str(request_id),
                              "text": {"type": "plain_text", "text": BUTTON_LABELS[action]}}
    if style:
        button["style"] = style
    return button


def sql_needs_upload(sql: str) -> bool:
    return len(sql) > INLINE_SQL_LIMIT or sql.count("\n") > 60


def build_sql_message(name: str, sha256: str, sql: str) -> Message:
    """The SQL inline in the thread (short files); long ones are uploaded instead."""
    return {"text": f"SQL of {escape(name)}",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": clip(
                f"*{escape(name)}* · sha256 `{sha256}`\n{code_block(sql)}")}}]}


@dataclass(frozen=True)
class Preview:
    """A request's preview in its thread, in the order it is posted: the short files' SQL inline, the long files
    uploaded (each a files.upload_v2 ``file_uploads`` list), then the risk summaries; messages combined (Slack
    takes about one a second per channel) and files uploaded ten at a time."""

    sql: list[Message]
    uploads: list[list[dict[str, str]]]
    risk: list[Message]


def build_preview(request: Request) -> Preview:
    """The SQL and risk of every migration of ``request`` as a few combined messages and uploads."""
    inline = [build_sql_message(m.name, m.sha256, m.sql) for m in request.migrations if not sql_needs_upload(m.sql)]
    uploads = [[{"content": m.sql, "filename": f"{m.name}.sql", "title": f"{m.name}.sql (sha256 {m.sha256[:12]})"}
                for m in group]
               for group in chunks([m for m in request.migrations if sql_needs_upload(m.sql)], FILES_PER_UPLOAD)]
    return Preview(sql=list(combine(inline)), uploads=uploads, risk=list(combine(build_risk_messages(request))))


def build_risk_messages(request: Request) -> list[Message]:
    """Per migration: lock mode per table, rewrite, top findings with their fixes; counts by severity."""
    messages = []
    for m in request.migrations:
        report = m.report or {}
        findings = [f for f in report.get("findings", []) if not f.get("accepted")]
        accepted = [f for f in report.get("findings", []) if f.get("accepted")]
        counts = {s: sum(1 for f in findings if f["severity"] == s) for s in SEVERITY_ORDER}
        head = (f"*Risk of {code(m.name)}: {RISK_EMOJI.get(m.risk or 'low', '')} {m.risk}*  ·  "
                + " · ".join(f"{n} {s}" for s, n in counts.items() if n) or "no findings")
        blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": clip(head)}}]
        stmt_lines = []
        for st in report.get("statements", [])[:30]:
            locks = ", ".join(f"{escape(lk['mode'])} on {code(lk['relation'])}" for lk in st.get("locks", [])) or "no table lock"
            flags = [w for w, on in (("rewrites the table", st.get("rewrite")), ("full scan", st.get("scan")),
                                     ("destructive", st.get("destructive")),
                                     ("breaks running code", st.get("incompatible")),
                                     ("outside a transaction", not st.get("transactional", True))) if on]
            stmt_lines.append(f"`#{st['index']}` line {st['line']} *{escape(st['kind'])}* — {locks}"
                              + (" · " + ", ".join(flags) if flags else ""))
        if stmt_lines:
            more = len(report.get("statements", [])) - len(stmt_lines)
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": clip(
                "*Statements*\n" + "\n".join(stmt_lines) + (f"\n… and {more} more" if more > 0 else ""))}})
        ranked = sorted(findings, key=lambda f: SEVERITY_ORDER.index(f["severity"]))
        for f in ranked[:8]:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": clip(
                f"{RISK_EMOJI[f['severity']]} *{escape(f['name'])}* ({code(f['code'])}, line {f['line']})\n"
                f"{escape(f['message'])}\n*Safer:* {escape(f['fix'])}")}})
        if len(ranked) > 8:
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text":
                f"{_n(len(ranked) - 8, 'more finding')}; run `guardian lint` on the file for all of them."}]})
        if accepted:
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": clip(
                "Accepted in the SQL: " + "; ".join(f"{code(f['code'])} ({escape(f.get('accept_reason') or 'no reason')})"
                                                   for f in accepted[:10]), 1900)}]})
        messages.append({"text": f"Risk summary of {escape(m.name)}: {m.risk}", "blocks": blocks[:MAX_BLOCKS]})
    return messages


def build_thread_note(text: str) -> Message:
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": clip(text)}}]}


def build_rehearsal_message(rehearsal: Any, headline: str | None = None, broken: Sequence[str] = ()) -> Message:
    """What a rehearsal observed per statement: locks actually taken, rewrites, duration, data failures; the
    ``headline`` first (where it ran, totals), and the app queries the migration breaks."""
    lines = [f"*Rehearsal*: {escape(headline)}"] if headline else []
    lines.append(f"PostgreSQL {escape(rehearsal.server_version)} (lock_timeout "
                 f"{escape(rehearsal.lock_timeout)}, statement_timeout {escape(rehearsal.statement_timeout)})")
    for f in rehearsal.files:
        lines.append(code(f.path))
        for st in f.statements[:25]:
            if not st.rehearsed:
                err = f" · :x: {escape(st.error)}" if st.error else ""
                lines.append(f"  `#{st.index}` line {st.line}: not rehearsed — {escape(st.reason)}{err}")
                continue
            locks = ", ".join(f"{escape(lk.mode)} on {code(lk.relation)}" for lk in st.observed_locks) or (
                "no table lock" if st.transactional else "ran alone in autocommit (its locks last while it runs)")
            rewrite = f" · :warning: rewrote {escape(', '.join(st.rewrites))}" if st.rewrites else ""
            took = f" · {st.duration_ms:.0f} ms" if st.duration_ms is not None else ""
            err = f" · :x: {escape(st.error)}" if st.error else ""
            why = f" · :warning: {escape(st.reason)}" if st.reason else ""  # e.g. rolled back: server-wide objects
            lines.append(f"  `#{st.index}` line {st.line} {escape(st.kind or '')}: {locks}{rewrite}{took}{err}{why}")
        for st in f.statements:
            for found in st.offending:
                shown = "; ".join(code(e) for e in found.examples)
                lines.append(f"  :x: *data failure* at line {st.line}: {escape(found.summary)}" + (f", e.g. {shown}" if shown else ""))
    lines += [f":warning: {escape(w)}" for w in rehearsal.warnings[:10]]
    lines += [f":x: *app query breaks*: {code(b[:300])}" for b in broken[:10]]
    text = "\n".join(lines)
    return {"text": "Rehearsal result", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": clip(text)}}]}
