"""No message the bot posts carries a mention, link or code-fence breakout it did not make itself (issue 14).

Hostile text (``<!channel>``, ``<!here>``, ``<@U…>``, ``<!subteam^…>``, ``<https://evil.example|click>``, ``&``
and a triple-backtick breakout) goes in through every door a person, git, a file, SQL or PostgreSQL has: command
arguments, the freeze and reject reasons, ``--ref``, a migration folder name, SQL text, a PostgreSQL error,
incident notes (command and thread reply), pasted SQL; the real flow runs over signed HTTP with the Slack
stand-in, and every message, update, ephemeral, response_url post, modal and slash-command answer it recorded
is scanned.
"""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from bot.models import RequestStatus as S
from bot.slack import mrkdwn
from bot.slack.ids import ActionId, CallbackId
from bot.slack.sender import SlackUser

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "flow"))
from flow_harness import APPROVER_A, APPROVER_B, CHANNEL, DBA, OUTSIDER, REQUESTER, git, harness  # noqa: E402,F401
from test_flow_approval import plan  # noqa: E402

MARK = "OUTSIDE-FENCE"  # text that sits after a ``` inside hostile input: it must stay inside the bot's code block
HOSTILE = ("<!channel> <!here> <@U0EVIL> <!subteam^S0EVIL> <https://evil.example|click> & "
           f"```\n{MARK} <!channel>\n```")
HOSTILE_SQL = (f'CREATE TABLE "<!subteam^S0DBAS>" (x int);\n'
               f"-- <!channel> <@U0EVIL> <https://evil.example|click> & ``` {MARK} <!here> ```\n")
RAISING_SQL = ("DO $$ BEGIN RAISE EXCEPTION '<!channel> <@U0EVIL> <!subteam^S0EVIL> & ``` " + MARK
               + " <https://evil.example|click> ```'; END $$;\n")
KNOWN_USERS = {REQUESTER, APPROVER_A, APPROVER_B, DBA, OUTSIDER}
KNOWN_GROUPS = {"S0DBAS"}  # the staging approvers' user group: named in refusals to one person, and where the
# card or thread says who must act next ("waiting for … <!subteam^S0DBAS>", issue 17)
MESSAGE_METHODS = {"chat.postMessage", "chat.update", "chat.postEphemeral", "chat.scheduleMessage", "response_url",
                   "views.open", "views.update", "views.push"}
TO_ONE_PERSON = {"chat.postEphemeral", "response_url", "ack", "views.open", "views.update", "views.push"}


# ---------------------------------------------------------------- what Slack would parse
def _json(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def mrkdwn_texts(payload: dict[str, Any]) -> list[str]:
    """Every string Slack parses as mrkdwn in a message or view: the top-level text and mrkdwn text objects
    (plain_text objects are shown as typed, so they are not collected)."""
    found: list[str] = []
    if isinstance(payload.get("text"), str) and payload.get("mrkdwn") not in (False, "false"):
        found.append(payload["text"])

    def walk(node: Any) -> None:
        node = _json(node)
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
                found.append(node["text"])
            for key, value in node.items():
                if key != "text" or isinstance(value, (dict, list)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for key in ("blocks", "attachments", "view"):
        if key in payload:
            walk(payload[key])
    return found


def everything_sent(h, acks: list[Any]) -> list[tuple[str, str]]:
    """(where, text) for every mrkdwn string the bot sent: Web API calls, response_url posts, command answers."""
    out = []
    for call in h.standin.calls():
        if call.method in MESSAGE_METHODS:
            out += [(call.method, t) for t in mrkdwn_texts(call.params)]
    for sent in acks:
        body = sent.json() if sent.body.strip().startswith("{") else None
        if body:
            out += [("ack", t) for t in mrkdwn_texts(body)]
    return out


def problems_in(where: str, text: str, standin_root: str) -> list[str]:
    """Why ``text`` is unsafe: a ``<`` that opens a token the bot did not make, a raw ``&``, an odd fence."""
    found = []
    for at in [m.start() for m in re.finditer("<", text)]:
        token = re.match(r"<([^<>]*)>", text[at:])
        body = token.group(1) if token else text[at:at + 40]
        user, group = re.fullmatch(r"@(\w+)", body), re.fullmatch(r"!subteam\^(\w+)", body)
        ok = token is not None and (
            (user is not None and user.group(1) in KNOWN_USERS)
            or (group is not None and group.group(1) in KNOWN_GROUPS
                and (where in TO_ONE_PERSON or "aiting for " in text))
            or re.fullmatch(r"#C\w+", body) is not None
            or (body.startswith(standin_root) and "evil" not in body))
        if not ok:
            found.append(f"{where}: unescaped <{body}")
    if re.search(r"&(?!amp;|lt;|gt;)", text):
        found.append(f"{where}: raw & in {text[:120]!r}")
    if text.count("```") % 2:
        found.append(f"{where}: odd number of ``` in {text[:160]!r}")
    return found


def outside_fences(text: str) -> str:
    return "".join(part for i, part in enumerate(text.split("```")) if i % 2 == 0)


def assert_nothing_injected(h, acks: list[Any]) -> list[tuple[str, str]]:
    sent = everything_sent(h, acks)
    assert len(sent) > 10, "the scenario posted almost nothing: it did not run"
    root = h.standin.root_url
    problems = [p for where, text in sent for p in problems_in(where, text, root)]
    assert not problems, "\n".join(problems[:20])
    repo = str(h.repo)
    leaked = [text for _, text in sent if repo in text or str(h.repo.resolve()) in text]
    assert not leaked, f"the server's checkout path reached Slack: {leaked[0][:200]}"
    return sent


def wait(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert predicate()


# ---------------------------------------------------------------- the flows
def test_sql_text_freeze_reason_schema_diff_and_status_stay_text(harness):
    h, acks = harness, []
    h.add_migration("20240101000000_hostile_table", HOSTILE_SQL)
    sent, reply = h.command(f"freeze staging 2h {HOSTILE}", user=APPROVER_B)
    acks.append(sent)
    assert any("frozen" in t for t in h.replies(reply))
    sent, refused = h.command(f"freeze staging 2h {HOSTILE}", user=OUTSIDER)  # refused
    acks.append(sent)
    assert any("approvers" in t for t in h.replies(refused))
    rid = plan(h)
    _, refused = h.click(ActionId.APPROVE.value, rid, OUTSIDER)  # refused, naming the approvers (bot-made mentions)
    assert any("<!subteam^S0DBAS>" in t and "<@U_A>" in t for t in h.replies(refused))
    _, reply = h.click(ActionId.APPROVE.value, rid, APPROVER_A)
    h.replies(reply)
    assert h.store.get_request(rid).status is S.APPROVED  # held by the freeze
    sent, status = h.command("status staging")
    acks.append(sent)
    assert any("frozen until" in t for t in h.replies(status))
    sent, reply = h.command("unfreeze staging", user=APPROVER_B)
    acks.append(sent)
    h.replies(reply)
    h.run_jobs()
    assert h.store.get_request(rid).status is S.SUCCEEDED, h.store.get_request(rid).error
    sent, history = h.command("history staging")
    acks.append(sent)
    h.replies(history)

    sent_texts = assert_nothing_injected(h, acks)
    thread = "\n".join(h.thread_texts(rid))
    assert "Not running yet" in thread and "&lt;!channel&gt;" in thread  # the reason, shown as typed
    assert "&lt;!subteam^S0DBAS&gt;" in thread  # the table name in the preview, the risk summary and the diff
    previews = [t for _, t in sent_texts if "sha256" in t and "CREATE TABLE" in t]
    assert previews and all(MARK not in outside_fences(t) for t in previews)
    diffs = [t for _, t in sent_texts if "*Schema changes*" in t]
    assert diffs and all("S0DBAS" not in outside_fences(t) for t in diffs)


def test_postgresql_error_incident_notes_and_postmortem(harness):
    h, acks = harness, []
    h.add_migration("20240101000000_raises", RAISING_SQL)
    rid = plan(h)
    for user in (APPROVER_A, APPROVER_B)[:h.flow.card_view(h.store.get_request(rid)).approvals_required]:
        _, reply = h.click(ActionId.APPROVE.value, rid, user)
        h.replies(reply)
    h.run_jobs()
    request = h.store.get_request(rid)
    assert request.status is S.FAILED and MARK in (request.error or "")
    incident = h.store.find_incident(request_id=rid)
    assert incident is not None
    sent, reply = h.command(f"note {incident.id} {HOSTILE}", user=APPROVER_A)
    acks.append(sent)
    h.replies(reply)
    channel, thread = incident.channel, incident.thread_ts
    typed = HOSTILE.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # as Slack sends typed text
    for text in (HOSTILE, typed):  # mentions made in Slack, then the same characters typed as text
        posted = h.standin.workspace.chat_post_message({"channel": channel, "thread_ts": thread, "text": text})
        h.sender.event({"type": "message", "channel": channel, "user": APPROVER_B, "text": text,
                        "ts": posted["ts"], "thread_ts": thread})
    wait(lambda: len(h.store.list_incident_notes(incident.id)) >= 3)
    _, reply = h.click(ActionId.RESOLVE.value, incident.id, APPROVER_B)
    assert any("resolved" in t for t in h.replies(reply))

    sent_texts = assert_nothing_injected(h, acks)
    failures = [t for _, t in sent_texts if "failed at" in t.lower() and MARK in t]
    assert failures and all(MARK not in outside_fences(t) for t in failures)  # the error stays in its block
    markdown = h.store.get_incident(incident.id).postmortem or ""
    notes = [line for line in markdown.splitlines() if "💬" in line or "📝" in line]
    assert len(notes) == 3 and len({line.split(": ", 1)[1][2:] for line in notes}) == 1  # rendered the same
    assert "@channel @here" in notes[0] and "click (https://evil.example)" in notes[0]
    assert "````\n" in markdown and "\n````" in markdown  # a fence longer than the ``` inside the error


def test_refs_folder_names_and_command_arguments_are_echoed_as_text(harness):
    h, acks = harness, []
    h.add_migration("20240101000000_ok", "ALTER TABLE users ADD COLUMN nickname text;\n")
    branch = "feat/<!here>&<@U0EVIL>&<!channel>"
    git(h.repo, "checkout", "-q", "-b", branch)
    folder = h.repo / "prisma" / "migrations" / "20240102000000_x<!channel>&<@U0EVIL>"
    folder.mkdir(parents=True)
    (folder / "migration.sql").write_text("SELECT 1;\n")
    git(h.repo, "add", "-A")
    git(h.repo, "commit", "-qm", "a folder with a hostile name")
    git(h.repo, "checkout", "-q", "main")
    on_branch = plan(h, text=f"plan staging pending --ref {branch}")
    unknown = plan(h, text="plan staging pending --ref nope<!channel>&<@U0EVIL>")
    # Prisma takes any folder name (listMigrations.ts), so Guardian plans it too; its name is echoed as text
    assert h.store.get_request(on_branch).status is S.AWAITING_APPROVAL
    assert h.store.get_request(unknown).status is S.FAILED
    assert any("20240102000000_x" in t for t in h.thread_texts(on_branch))
    assert any("is not a commit in the repository" in t for t in h.thread_texts(unknown))
    for text in ("plan staging <!channel>", f"frobnicate {HOSTILE}", "cancel <@U0EVIL>", f"note 999 {HOSTILE}",
                 "plan <!here> pending", "incident <!channel>", "status <!subteam^S0EVIL>", "history <!here>",
                 "rollback <!channel>", "restore <@U0EVIL>", "postmortem <!here>", "backup <!channel>",
                 "sql <!subteam^S0EVIL>", "unfreeze <!here>", f"freeze <!channel> 2h {HOSTILE}",
                 "plan staging pending --ref <https://evil.example|click>", "plan staging pending --ref a&b<!here>",
                 f"freeze staging soon {HOSTILE}"):
        sent, reply = h.command(text)
        acks.append(sent)
        if not sent.body.strip():
            h.replies(reply)
    assert_nothing_injected(h, acks)


def test_reject_reason_and_pasted_sql_from_modals(harness):
    h, acks = harness, []
    h.add_migration("20240101000000_add_nickname", "ALTER TABLE users ADD COLUMN nickname text;\n")
    rid = plan(h)
    h.click(ActionId.REJECT.value, rid, APPROVER_B)
    view = h.standin.wait_for("views.open").params["view"]
    view = _json(view)
    sent = h.sender.view_submission(
        CallbackId.REJECT_REASON.value, private_metadata=view["private_metadata"], user=SlackUser(id=APPROVER_B, name="b"),
        values={"reason_input": {"value": {"type": "plain_text_input", "value": HOSTILE}}})
    acks.append(sent)
    h.standin.wait_for("chat.postEphemeral", lambda c: c.params.get("user") == APPROVER_B)
    assert h.store.get_request(rid).status is S.REJECTED
    sent, _ = h.command("sql staging")
    acks.append(sent)
    view = _json(h.standin.wait_for("views.open", lambda c: CallbackId.SQL_REQUEST.value in json.dumps(
        c.params.get("view"))).params["view"])
    sent = h.sender.view_submission(CallbackId.SQL_REQUEST.value, private_metadata=view["private_metadata"],
                                    user=SlackUser(id=REQUESTER, name="r"),
                                    values={"sql_input": {"value": {"type": "plain_text_input", "value": HOSTILE_SQL}}})
    acks.append(sent)
    wait(lambda: h.latest_request_id() != rid)
    pasted = h.latest_request_id()
    wait(lambda: h.store.get_request(pasted).thread_ts is not None)  # its card is posted after the ack
    h.run_jobs()
    assert h.store.get_request(pasted).status is S.AWAITING_APPROVAL
    sent_texts = assert_nothing_injected(h, acks)
    assert any("rejected this request: &lt;!channel&gt;" in t for _, t in sent_texts)


# ---------------------------------------------------------------- the helpers themselves
def test_helpers_escape_and_only_make_tokens_from_ids_and_urls():
    assert mrkdwn.escape("a <!channel> & b > c") == "a &lt;!channel&gt; &amp; b &gt; c"
    assert "```" not in mrkdwn.escape("x ``` y ```` z")
    assert mrkdwn.mention("U0AAA") == "<@U0AAA>" and mrkdwn.mention("W0AAA") == "<@W0AAA>"
    assert mrkdwn.mention("U0A> <!channel") == "U0A&gt; &lt;!channel"  # not an id: text, never a token
    assert mrkdwn.group_mention("S0DBAS") == "<!subteam^S0DBAS>" and "<" not in mrkdwn.group_mention("S0|x>")
    assert mrkdwn.link("https://x.example/a?b=1&c=2", "a|b <c>") == "<https://x.example/a?b=1&amp;c=2|a¦b &lt;c&gt;>"
    assert mrkdwn.link("javascript:alert(1)", "x") == "x"
    assert mrkdwn.code("a`b<c") == "`aˋb&lt;c`"
    block = mrkdwn.code_block("x```<!here>`")
    assert block.count("```") == 2 and "<!here>" not in block and block.startswith("```")
    assert mrkdwn.as_mrkdwn(mrkdwn.Mrkdwn("<@U0AAA>")) == "<@U0AAA>" and mrkdwn.as_mrkdwn("<@U0AAA>") == "&lt;@U0AAA&gt;"
    assert "<" not in mrkdwn.mention("U0AAA\n") and mrkdwn.link("https://x.example\n", "x") == "x"
    clipped = mrkdwn.clip("head\n```" + "x" * 500 + "```", 100)
    assert len(clipped) <= 100 and clipped.count("```") % 2 == 0
    for cut_at in range(40, 90):  # never half an entity or half a mention
        clipped = mrkdwn.clip("x" * cut_at + mrkdwn.escape("<&>") + f"<@{APPROVER_A}> " * 20, 100)
        assert not problems_in("clip", clipped, "https://slack.example/")
    assert mrkdwn.plain("&lt;b&gt; &amp; <!channel> <@U0AAA> <https://e.example|click>") == \
        "<b> & @channel <@U0AAA> click (https://e.example)"


def test_every_builder_escapes_names_errors_and_what_postgresql_reports(harness):
    """Doors the flows above cannot open with this repository (a Supabase file name is nearly free text, a
    blocker's query, a rehearsal error): every builder gets hostile values and makes no token of them."""
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from bot.models import Backup, DbState, Incident, IncidentStatus
    from bot.slack import pipeline_blocks as pb
    from bot.slack.cards import CardView, build_rehearsal_message, build_request_card, build_risk_messages, \
        build_sql_message
    from bot.slack.incident_blocks import IncidentView, build_incident_card, build_restore_confirm_modal
    from bot.slack.summaries import build_history_message, build_status_message

    h = harness
    h.add_migration("20240101000000_hostile_table", HOSTILE_SQL)
    rid = plan(h)
    real = h.store.get_request(rid)
    now = datetime.now(timezone.utc)
    request = real.model_copy(update={
        "migrations": [m.model_copy(update={"name": f"20240101_{HOSTILE}"}) for m in real.migrations],
        "status": S.FAILED, "failed_step": HOSTILE, "db_state": DbState.UNTOUCHED, "error": HOSTILE,
        "risk_reasons": [HOSTILE], "target": {"host": HOSTILE, "port": 5432, "database": HOSTILE,
                                              "server_version": HOSTILE}})
    view = CardView(approvers=(APPROVER_A, "U0A> <!channel"), rejected_by=(APPROVER_B,),
                    stale=((APPROVER_A, HOSTILE),), requires_missing=(HOSTILE,), requires_met=(HOSTILE,))
    backup = Backup(id=1, environment="staging", path=f"/b/{HOSTILE}.dump", scope=HOSTILE, format="custom",
                    verified=True, created_at=now, size_bytes=10)
    incident = Incident(id=1, request_id=rid, status=IncidentStatus.OPEN, opened_by="guardian", created_at=now)
    blocker = {"pid": HOSTILE, "application_name": HOSTILE, "state": HOSTILE, "query": HOSTILE, "xact_age_s": 1.0,
               "wait_s": 1.0}
    statement = SimpleNamespace(index=1, line=1, kind=HOSTILE, rehearsed=True, reason=HOSTILE, duration_ms=1.0,
                                observed_locks=[SimpleNamespace(mode=HOSTILE, relation=HOSTILE)], rewrites=[HOSTILE],
                                error=HOSTILE, offending=[SimpleNamespace(summary=HOSTILE, examples=[HOSTILE])])
    rehearsal = SimpleNamespace(server_version=HOSTILE, lock_timeout="1s", statement_timeout="1s", warnings=[HOSTILE],
                                files=[SimpleNamespace(path=HOSTILE, statements=[statement])])
    messages = [
        build_request_card(request, view), *build_risk_messages(request), build_sql_message(HOSTILE, "0" * 64, HOSTILE),
        build_rehearsal_message(rehearsal, HOSTILE),
        build_incident_card(incident, request, IncidentView(approvers=(APPROVER_A,), backups=(backup,),
                                                            request_link="https://evil.example/x?a=1&b=<!here>")),
        {"blocks": build_restore_confirm_modal(1, "staging", [HOSTILE], backup)["blocks"]},
        build_status_message(["staging"], [request], {"staging": None}), build_history_message("staging", [request]),
        pb.build_step_message(rid, HOSTILE, HOSTILE), pb.build_failure_message(rid, HOSTILE, "untouched", HOSTILE),
        pb.build_retry_message(rid, HOSTILE, 1, 2, 1.0, [blocker]), pb.build_blocker_message(rid, HOSTILE, 2, [blocker]),
        pb.build_waiters_message(rid, 1, 1.0, [blocker]), pb.build_batch_message(rid, HOSTILE, 1, 1, 1, False),
        pb.build_verify_message(rid, False, [HOSTILE], [HOSTILE], [HOSTILE]),
        pb.build_summary_message(rid, [(HOSTILE, 1)], HOSTILE, 1),
    ]
    texts = [t for message in messages for t in mrkdwn_texts(message)]
    problems = [p for t in texts for p in problems_in("builder", t, h.standin.root_url)]
    assert not problems, "\n".join(problems[:20])
    assert sum(MARK in t for t in texts) > 10  # the hostile text was shown, as text
    fenced = [build_sql_message("20240101_x", "0" * 64, HOSTILE),  # what people wrote stays inside the block
              pb.build_failure_message(rid, "apply", "untouched", HOSTILE), pb.build_verify_message(rid, True, [HOSTILE], [], [])]
    assert all(MARK not in outside_fences(t) and t.count("```") % 2 == 0 for m in fenced for t in mrkdwn_texts(m))


def test_a_rollout_reason_mentions_only_the_person_who_pressed_a_control():
    """The rollout card shows the recorded reason: a control's ``paused by <@U…>`` (Messages.rollout_reason)
    keeps its mention; a halt's cause or a health gate's answer that merely looks like one stays text."""
    from bot.slack.fleet_blocks import build_rollout_blocks
    from bot.slack.messages import Messages
    from bot.views import FleetView

    def card_line(reason: str) -> str:
        view = FleetView(state="paused", counts={"waiting": 3}, wave=1, waves=3, reason=reason)
        return build_rollout_blocks(7, view)[0]["text"]["text"].splitlines()[-1]

    assert card_line(Messages().rollout_reason("paused", APPROVER_A)) == f"_paused by <@{APPROVER_A}>_"
    assert card_line("gate said: paused by <@U0AAA> & <!channel>") == \
        "_gate said: paused by &lt;@U0AAA&gt; &amp; &lt;!channel&gt;_"
    assert card_line("paused by <@U0AAA> <!here>") == "_paused by &lt;@U0AAA&gt; &lt;!here&gt;_"


def test_rollback_advice_quotes_repository_paths_without_making_tokens():
    from bot.slack.messages import Messages
    from bot.sources.apply import rollback_advice

    said = Messages().rollback_succeeded(3, rollback_advice("sql", ["db/<!channel>&.sql"]))
    assert "`db/&lt;!channel&gt;&amp;.sql`" in said and "<!channel>" not in said
    normal = Messages().rollback_succeeded(3, rollback_advice("prisma", ["prisma/migrations/20240101000000_a"]))
    assert normal.endswith("`prisma migrate deploy` would apply `prisma/migrations/20240101000000_a` again: delete "
                           "the folder from the repository (or add a new migration that supersedes it) before "
                           "anyone deploys.")
