"""Incidents end to end: a failed verify opens one, Roll back restores the schema, Restore brings data back,
the timeline and post-mortem hold what happened — with real PostgreSQL, Redis, worker and Slack stand-in."""
from __future__ import annotations

import json
import time

import psycopg
import pytest

from bot.models import DbState, IncidentStatus, RequestStatus as S
from bot.pg.snapshot import take_snapshot
from bot.slack.ids import ActionId, CallbackId
from bot.slack.sender import SlackUser

from flow_harness import APPROVER_A, APPROVER_B, REQUESTER
from test_flow_approval import plan

FLAG = "ALTER TABLE users ADD COLUMN flag boolean;\n"
FLAG_VERIFY = "SELECT count(*) = 0 FROM users;\n"  # false: the table has rows, so verify fails
FLAG_DOWN = "ALTER TABLE users DROP COLUMN flag;\n"


def add_with_companions(h, name, sql, down=None, verify=None):
    folder = h.repo / "prisma" / "migrations" / name
    folder.mkdir(parents=True, exist_ok=True)
    if down:
        (folder / "down.sql").write_text(down)
    if verify:
        (folder / "verify.sql").write_text(verify)
    return h.add_migration(name, sql)


def snapshot(url):
    with psycopg.connect(url, autocommit=True) as conn:
        return take_snapshot(conn, "staging")


def approve_and_run(h, rid, *approvers):
    for user in approvers:
        _, reply = h.click(ActionId.APPROVE.value, rid, user)
        h.replies(reply)
    h.run_jobs()
    return h.store.get_request(rid)


def use_incident_channel(h, channel):
    """Incidents open their threads in ``channel``, for the flow and for the workers' runtime alike."""
    from bot.config import SlackConfig
    from workers import runtime as runtime_module

    config = h.config.model_copy(update={"slack": SlackConfig(incident_channel=channel)})
    h.flow.config = config
    runtime_module.runtime().config = config


def incident_card(h, incident):
    ts = h.store.list_events(incident_id=incident.id)
    card_ts = next(e.detail["ts"] for e in ts if e.kind == "incident.card")
    return next(m for m in h.standin.messages(incident.channel) if m["ts"] == card_ts)


def test_failed_verify_opens_incident_and_rollback_restores_the_schema(harness):
    before = snapshot(harness.targets["staging"])
    add_with_companions(harness, "20240101000000_add_flag", FLAG, down=FLAG_DOWN, verify=FLAG_VERIFY)
    rid = plan(harness)
    request = approve_and_run(harness, rid, APPROVER_A)
    assert request.status is S.FAILED and request.failed_step == "verify"
    assert request.db_state is DbState.APPLIED_UNVERIFIED
    incident = harness.store.find_incident(request_id=rid)
    assert incident is not None and incident.status is IncidentStatus.OPEN
    card = json.dumps(incident_card(harness, incident))
    for label in ("Roll back", "Restore backup", "Mark fixed forward", "Resolve"):
        assert label in card
    assert "applied unverified" in card and "verify" in card
    # one clear failure message: rows counted, what the database holds in words, what to do next; the card
    # points at the thread instead of repeating the error (issue 17)
    failure = next(t for t in harness.thread_texts(rid) if t.startswith(f":x: Request #{rid} failed at"))
    assert "the database holds the migration, but its checks failed." in failure
    assert "returned false: 2,000 rows match, expected 0" in failure and "[verify-failed]" not in failure
    assert "Next: Roll back, Restore backup or fix forward, from the incident." in failure
    request_card = str(harness.card(rid))
    assert "returned false" not in request_card and "The thread says why" in request_card
    # the incident card sits in the same thread: it points at the failure message instead of repeating the error
    assert "returned false" not in card and "The error is in the failure message above." in card

    # Roll back: proposed by one approver, creating a rollback request another approver must approve
    _, reply = harness.click(ActionId.ROLL_BACK.value, incident.id, APPROVER_A)
    assert any("Rollback request" in t for t in harness.replies(reply))
    _, again = harness.click(ActionId.ROLL_BACK.value, incident.id, APPROVER_A)
    assert any("already being mitigated" in t for t in harness.replies(again))
    rollback = next(r for r in harness.store.list_requests() if r.parent_request_id == rid)
    assert len([r for r in harness.store.list_requests() if r.parent_request_id == rid]) == 1
    harness.run_jobs()  # analyse the down SQL
    assert harness.store.get_request(rollback.id).status is S.AWAITING_APPROVAL
    _, own = harness.click(ActionId.APPROVE.value, rollback.id, APPROVER_A)
    assert any("you requested" in t for t in harness.replies(own))
    done = approve_and_run(harness, rollback.id, APPROVER_B)
    assert done.status is S.SUCCEEDED, done.error
    after = snapshot(harness.targets["staging"])
    assert after.fingerprint() == before.fingerprint()
    assert harness.store.get_incident(incident.id).status is IncidentStatus.MITIGATED
    assert harness.store.get_request(rid).db_state is DbState.ROLLED_BACK
    with psycopg.connect(harness.targets["staging"]) as conn:
        rows = conn.execute("SELECT count(*) FROM _prisma_migrations "
                            "WHERE migration_name = '20240101000000_add_flag'").fetchone()
    # no row: `prisma migrate status` and `migrate deploy` both see it pending, as Guardian does (a finished row
    # marked rolled back is one Prisma never writes, and its status would still call it applied)
    assert rows == (0,)
    told = [m.get("text", "") for m in harness.standin.messages(incident.channel)]
    assert any("delete the folder" in t and "`prisma migrate deploy` would apply" in t
               and "prisma/migrations/20240101000000_add_flag`" in t for t in told), told


def test_restore_backup_brings_a_dropped_column_back_row_by_row(harness):
    with psycopg.connect(harness.targets["staging"]) as conn:
        original = conn.execute("SELECT id, email FROM users ORDER BY id").fetchall()
    harness.add_migration("20240101000000_drop_email", "ALTER TABLE users DROP COLUMN email;\n")
    rid = plan(harness)
    request = approve_and_run(harness, rid, APPROVER_A, APPROVER_B)
    assert request.status is S.SUCCEEDED, request.error
    _, reply = harness.command(f"incident {rid}", user=APPROVER_B)
    assert any("Incident #" in t for t in harness.replies(reply))
    incident = harness.store.find_incident(request_id=rid)
    _, reply = harness.click(ActionId.RESTORE_BACKUP.value, incident.id, APPROVER_A)
    view = harness.standin.wait_for("views.open", lambda c: c.params["view"]["callback_id"] == CallbackId.CONFIRM_RESTORE.value).params["view"]
    assert "`users`" in json.dumps(view) and "is lost" in json.dumps(view)
    for _ in range(2):  # a double submission restores once
        sent = harness.sender.view_submission(
            CallbackId.CONFIRM_RESTORE.value, private_metadata=view["private_metadata"],
            user=SlackUser(id=APPROVER_A, name="a"),
            values={"confirm_input": {"value": {"type": "plain_text_input", "value": "staging"}}})
        assert sent.status == 200
    harness.standin.wait_for("chat.postEphemeral", lambda c: "already being mitigated" in str(c.params.get("text")), timeout=10)
    # the first submission queues the restore before its thread note; the second may be refused before that
    harness.standin.wait_for("chat.postMessage", lambda c: "is restoring backup" in str(c.params.get("text")), timeout=10)
    harness.run_jobs()
    with psycopg.connect(harness.targets["staging"]) as conn:
        restored = conn.execute("SELECT id, email FROM users ORDER BY id").fetchall()
    assert restored == original
    assert [s.step for s in harness.store.list_steps(rid)].count("restore") == 1
    assert harness.store.get_incident(incident.id).status is IncidentStatus.MITIGATED


def test_timeline_and_postmortem_from_what_happened(harness):
    harness.standin.users[APPROVER_A] = {"name": "alice", "real_name": "Alice Approver"}
    harness.standin.users[APPROVER_B] = {"name": "bob", "real_name": "Bob Builder"}
    add_with_companions(harness, "20240101000000_add_flag", FLAG, down=FLAG_DOWN, verify=FLAG_VERIFY)
    rid = plan(harness)
    approve_and_run(harness, rid, APPROVER_A)
    incident = harness.store.find_incident(request_id=rid)
    channel, thread = incident.channel, incident.thread_ts
    # a person replies in the incident thread, then someone pins another message with 📌
    reply = harness.standin.workspace.chat_post_message({"channel": channel, "thread_ts": thread,
                                                         "text": "looking at the verify query now"})
    harness.sender.event({"type": "message", "channel": channel, "user": APPROVER_B, "text": "looking at the verify query now",
                          "ts": reply["ts"], "thread_ts": thread})
    pinned = harness.standin.workspace.chat_post_message({"channel": channel, "thread_ts": thread,
                                                          "text": "action: add a verify step to staging CI"})
    harness.standin.workspace.channels[channel][pinned["ts"]]["user"] = APPROVER_A
    for _ in range(2):  # Slack may deliver an event twice; it is recorded once
        harness.sender.event({"type": "reaction_added", "user": APPROVER_A, "reaction": "pushpin",
                              "item": {"type": "message", "channel": channel, "ts": pinned["ts"]}})
    harness.command(f"note {incident.id} decided to roll back", user=APPROVER_A)
    harness.standin.wait_for("response_url", lambda c: "timeline" in str(c.params.get("text")))
    deadline = time.monotonic() + 10  # events are handled after Bolt acknowledges them
    while len(harness.store.list_incident_notes(incident.id)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    notes = harness.store.list_incident_notes(incident.id)
    assert [n.source for n in notes] == ["thread", "pin", "command"]
    _, r = harness.click(ActionId.RESOLVE.value, incident.id, APPROVER_B)
    assert any("resolved" in t for t in harness.replies(r))
    markdown = harness.store.get_incident(incident.id).postmortem
    order = [markdown.index(s) for s in ("looking at the verify query now", "action: add a verify step",
                                         "decided to roll back")]
    assert order == sorted(order)
    # verification failed: what failed is the verify query, not the migration's ALTER (issue 17)
    assert "The verify query that failed (the migration itself ran):\n```sql\nSELECT count(*) = 0 FROM users;\n```" \
        in markdown, markdown
    assert "- [ ] add a verify step to staging CI" in markdown
    # names, not ids; one entry per thing that happened; plain words; MiB like the rest of Guardian
    assert "Bob Builder: 💬 looking at the verify query now" in markdown and "Alice Approver: 📌 action:" in markdown
    assert "approved by Alice Approver" in markdown and "<@U_A>" not in markdown
    timeline = markdown.split("## Timeline (UTC)", 1)[1].split("## Root cause", 1)[0]
    for once in ("backup started", "apply started", "verify started"):
        assert timeline.count(once) == 1, timeline
    assert "incident card" not in markdown and "request migrations" not in markdown and "FAILED" not in timeline
    assert " MiB, sha256 " in markdown and " bytes" not in markdown
    uploads = harness.standin.calls("files.completeUploadExternal")
    assert any(c.params.get("thread_ts") == thread for c in uploads)


def test_incident_channel_gets_the_thread_and_both_sides_link(harness):
    use_incident_channel(harness, "C0INCIDENTS")
    add_with_companions(harness, "20240101000000_add_flag", FLAG, down=FLAG_DOWN, verify=FLAG_VERIFY)
    rid = plan(harness)
    approve_and_run(harness, rid, APPROVER_A)
    incident = harness.store.find_incident(request_id=rid)
    assert incident.channel == "C0INCIDENTS"
    root = next(m for m in harness.standin.messages("C0INCIDENTS") if m["ts"] == incident.thread_ts)
    assert "thread>" in json.dumps(root["blocks"])  # the card links back to the request's card
    assert any(f"Incident #{incident.id} opened:" in t for t in harness.thread_texts(rid))


def _restore_from_the_incident(harness, rid, user=APPROVER_A):
    """Open the incident of ``rid`` (succeeded, so opened by hand), Restore backup, type the environment, run it."""
    _, reply = harness.command(f"incident {rid}", user=APPROVER_B)
    assert any("Incident #" in t for t in harness.replies(reply))
    incident = harness.store.find_incident(request_id=rid)
    harness.click(ActionId.RESTORE_BACKUP.value, incident.id, user)
    view = harness.standin.wait_for("views.open", lambda c: c.params["view"]["callback_id"] == CallbackId.CONFIRM_RESTORE.value
                                    ).params["view"]
    sent = harness.sender.view_submission(
        CallbackId.CONFIRM_RESTORE.value, private_metadata=view["private_metadata"], user=SlackUser(id=user, name="a"),
        values={"confirm_input": {"value": {"type": "plain_text_input", "value": "staging"}}})
    assert sent.status == 200
    # the submission is acknowledged first; its handler enqueues the restore and says so in the thread
    harness.standin.wait_for("chat.postMessage", lambda c: "is restoring backup" in str(c.params.get("text")), timeout=30)
    harness.run_jobs()
    deadline = time.monotonic() + 30
    while harness.store.get_incident(incident.id).status is IncidentStatus.MITIGATING and time.monotonic() < deadline:
        time.sleep(0.1)
    return incident


def _thread_texts(harness, incident):
    return [m.get("text") or "" for m in harness.standin.messages(incident.channel)
            if m.get("thread_ts") == incident.thread_ts]


def test_restore_on_a_real_schema_keeps_foreign_keys_views_policies_and_grants(harness):
    """Other tables' foreign keys into the restored table, a view over it, its sequence, RLS policy and grants:
    pg_restore --clean alone stops at the foreign key (`cannot drop constraint users_pkey … depends on it`)."""
    url = harness.targets["staging"]
    with psycopg.connect(url) as conn:
        conn.execute("""
            DO $$ BEGIN CREATE ROLE guardian_test_reader; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
            CREATE TABLE orders (id bigserial PRIMARY KEY, user_id bigint NOT NULL REFERENCES users (id), total int);
            INSERT INTO orders (user_id, total) SELECT 1 + g % 2000, g FROM generate_series(1, 5000) g;
            CREATE VIEW user_ids AS SELECT id FROM users;
            CREATE VIEW order_users AS SELECT o.id, u.id AS uid FROM orders o JOIN user_ids u ON u.id = o.user_id;
            GRANT SELECT ON user_ids TO guardian_test_reader;
            GRANT SELECT ON users TO guardian_test_reader;
            ALTER TABLE users ENABLE ROW LEVEL SECURITY;
            CREATE POLICY users_own ON users FOR SELECT USING (true);
        """)
        original = conn.execute("SELECT id, email FROM users ORDER BY id").fetchall()
    harness.add_migration("20240101000000_drop_email", "ALTER TABLE users DROP COLUMN email;\n")
    rid = plan(harness)
    request = approve_and_run(harness, rid, APPROVER_A, APPROVER_B)
    assert request.status is S.SUCCEEDED, request.error
    incident = _restore_from_the_incident(harness, rid)
    assert harness.store.get_incident(incident.id).status is IncidentStatus.MITIGATED, _thread_texts(harness, incident)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT id, email FROM users ORDER BY id").fetchall() == original
        fk = conn.execute("SELECT convalidated, pg_get_constraintdef(oid) FROM pg_constraint "
                          "WHERE conname = 'orders_user_id_fkey'").fetchone()
        assert fk == (True, "FOREIGN KEY (user_id) REFERENCES users(id)")
        assert conn.execute("SELECT count(*) FROM order_users").fetchone() == (5000,)
        assert conn.execute("SELECT has_table_privilege('guardian_test_reader', 'user_ids', 'SELECT'), "
                            "has_table_privilege('guardian_test_reader', 'users', 'SELECT')").fetchone() == (True, True)
        assert conn.execute("SELECT relrowsecurity FROM pg_class WHERE relname = 'users'").fetchone() == (True,)
        assert conn.execute("SELECT count(*) FROM pg_policies WHERE policyname = 'users_own'").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM _prisma_migrations WHERE migration_name = '20240101000000_drop_email' "
                            "AND rolled_back_at IS NULL AND finished_at IS NOT NULL").fetchone() == (0,)
    done = next(t for t in _thread_texts(harness, incident) if "Restore finished" in t)
    assert "Restored public.users (2,000 rows) from backup #" in done
    assert "1 foreign key into them (public.orders.orders_user_id_fkey)" in done.replace("\n", " ")
    assert "public.user_ids" in done and "public.order_users" in done
    assert "\n" not in done.split("Restore finished: ", 1)[1]  # one paragraph


def test_a_restore_that_would_orphan_newer_rows_changes_nothing_and_says_why(harness):
    url = harness.targets["staging"]
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE orders (id bigserial PRIMARY KEY, user_id bigint NOT NULL REFERENCES users (id))")
    harness.add_migration("20240101000000_new_user", "INSERT INTO users VALUES (9001, 'new@example.com');\n")
    rid = plan(harness)
    request = approve_and_run(harness, rid, APPROVER_A, APPROVER_B)
    assert request.status is S.SUCCEEDED, request.error
    with psycopg.connect(url) as conn:  # written after the backup, referring to the new row
        conn.execute("INSERT INTO orders (user_id) VALUES (9001)")
    incident = _restore_from_the_incident(harness, rid)
    assert harness.store.get_incident(incident.id).status is IncidentStatus.OPEN
    failed = next(t for t in _thread_texts(harness, incident) if "Restore failed" in t)
    assert "public.orders holds rows" in failed and "orders_user_id_fkey" in failed and "9001" in failed
    assert "Traceback" not in failed and "pg_restore:" not in failed
    with psycopg.connect(url) as conn:  # nothing changed: the new row and the key are both still there
        assert conn.execute("SELECT count(*) FROM users WHERE id = 9001").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM pg_constraint WHERE conname = 'orders_user_id_fkey'").fetchone() == (1,)


def test_restore_stays_offered_while_a_rollback_waits_and_replaces_it(harness):
    add_with_companions(harness, "20240101000000_add_flag", FLAG, down=FLAG_DOWN, verify=FLAG_VERIFY)
    rid = plan(harness)
    approve_and_run(harness, rid, APPROVER_A)
    incident = harness.store.find_incident(request_id=rid)
    _, reply = harness.click(ActionId.ROLL_BACK.value, incident.id, APPROVER_A)
    assert any("Rollback request" in t for t in harness.replies(reply))
    rollback = next(r for r in harness.store.list_requests() if r.parent_request_id == rid)
    harness.run_jobs()  # analysed; now it waits for another approver
    assert harness.store.get_request(rollback.id).status is S.AWAITING_APPROVAL
    card = json.dumps(incident_card(harness, incident))
    assert "Restore backup" in card and "Roll back" not in card  # mitigating, but the backup is still on offer
    harness.click(ActionId.RESTORE_BACKUP.value, incident.id, APPROVER_B)
    view = harness.standin.wait_for("views.open", lambda c: c.params["view"]["callback_id"] == CallbackId.CONFIRM_RESTORE.value
                                    ).params["view"]
    backup = harness.store.list_backups(request_id=rid)[-1]
    assert view["title"]["text"] == f"Restore backup #{backup.id}" and f"backup #{backup.id}" in json.dumps(view)
    sent = harness.sender.view_submission(
        CallbackId.CONFIRM_RESTORE.value, private_metadata=view["private_metadata"], user=SlackUser(id=APPROVER_B, name="b"),
        values={"confirm_input": {"value": {"type": "plain_text_input", "value": "staging"}}})
    assert sent.status == 200
    harness.standin.wait_for("chat.postMessage", lambda c: f"instead of rollback request #{rollback.id}" in
                             str(c.params.get("text")), timeout=30)
    assert harness.store.get_request(rollback.id).status is S.CANCELLED
    harness.run_jobs()
    deadline = time.monotonic() + 30
    while harness.store.get_incident(incident.id).status is IncidentStatus.MITIGATING and time.monotonic() < deadline:
        time.sleep(0.1)
    assert harness.store.get_incident(incident.id).status is IncidentStatus.MITIGATED
    with psycopg.connect(harness.targets["staging"]) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' "
                            "AND column_name = 'flag'").fetchone() == (0,)


def test_status_leads_with_the_open_incident_and_the_unverified_database(harness):
    _, reply = harness.command("status", user=APPROVER_A)
    quiet = "\n".join(harness.replies(reply))
    assert quiet.startswith(":white_check_mark: Nothing needs attention.")
    add_with_companions(harness, "20240101000000_add_flag", FLAG, down=FLAG_DOWN, verify=FLAG_VERIFY)
    rid = plan(harness)
    approve_and_run(harness, rid, APPROVER_A)
    incident = harness.store.find_incident(request_id=rid)
    _, reply = harness.command("status", user=APPROVER_A)
    text = "\n".join(harness.replies(reply))
    first = text.splitlines()[:2]
    assert first == ["*Needs attention*", f":rotating_light: *Incident #{incident.id}* (open) on *staging*: request "
                     f"#{rid} failed at verify; the database holds the migration, but its checks failed"], text
    assert text.index("Needs attention") < text.index("*production*")
    _, reply = harness.click(ActionId.RESOLVE.value, incident.id, APPROVER_B)
    harness.replies(reply)
    _, reply = harness.command("status", user=APPROVER_A)
    text = "\n".join(harness.replies(reply))
    assert "Incident #" not in text  # resolved: no longer listed


def _documenso_corpus():
    """The documenso Prisma migrations (AGPL-3.0, /work/shared/corpus; GUARDIAN_CORPUS overrides), used
    verbatim and never copied into the repository."""
    import os
    from pathlib import Path

    import pytest

    root = Path(__file__).resolve().parents[2]
    candidates = [Path(os.environ["GUARDIAN_CORPUS"])] if os.environ.get("GUARDIAN_CORPUS") else []
    candidates += [root.parent / "shared" / "corpus", root.parent.parent / "shared" / "corpus"]
    for base in candidates:
        if (base / "documenso-prisma").is_dir():
            return base / "documenso-prisma"
    pytest.fail(f"the documenso corpus is not in {[str(c) for c in candidates]}; set GUARDIAN_CORPUS")


def test_restore_on_the_documenso_schema_with_data(harness):
    """A real schema: "User" has 13 foreign keys pointing at it (Session, Account, Passkey, Organisation…),
    an identity-like serial sequence, enums and defaults; sessions and accounts reference the users."""
    url = harness.targets["staging"]
    with psycopg.connect(url, autocommit=True) as conn:
        for folder in sorted(_documenso_corpus().iterdir()):
            conn.execute((folder / "migration.sql").read_text())
        conn.execute("""
            INSERT INTO "User" (email, name) SELECT 'user' || g || '@example.com', 'User ' || g FROM generate_series(1, 500) g;
            INSERT INTO "Session" (id, "sessionToken", "userId", "expiresAt", "updatedAt")
                SELECT 's' || g, 't' || g, 1 + g % 500, now() + interval '1 day', now() FROM generate_series(1, 1500) g;
            INSERT INTO "Account" (id, "userId", type, provider, "providerAccountId")
                SELECT 'a' || g, g, 'oauth', 'google', 'g' || g FROM generate_series(1, 500) g;
        """)
        inbound = conn.execute("""SELECT count(*) FROM pg_constraint WHERE contype = 'f'
                                  AND confrelid = '"User"'::regclass""").fetchone()[0]
        original = conn.execute('SELECT id, email, name FROM "User" ORDER BY id').fetchall()
    assert inbound >= 10
    harness.add_migration("20990101000000_drop_user_name", 'ALTER TABLE "User" DROP COLUMN "name";\n')
    rid = plan(harness)
    request = approve_and_run(harness, rid, APPROVER_A, APPROVER_B)
    assert request.status is S.SUCCEEDED, request.error
    incident = _restore_from_the_incident(harness, rid)
    assert harness.store.get_incident(incident.id).status is IncidentStatus.MITIGATED, _thread_texts(harness, incident)
    with psycopg.connect(url) as conn:
        assert conn.execute('SELECT id, email, name FROM "User" ORDER BY id').fetchall() == original
        assert conn.execute("""SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND convalidated
                               AND confrelid = '"User"'::regclass""").fetchone()[0] == inbound
        assert conn.execute('SELECT count(*) FROM "Session" s JOIN "User" u ON u.id = s."userId"').fetchone() == (1500,)
        next_id = conn.execute('''INSERT INTO "User" (email) VALUES ('new@example.com') RETURNING id''').fetchone()[0]
        assert next_id > max(row[0] for row in original)  # the sequence came back with the table, past its rows
    done = next(t for t in _thread_texts(harness, incident) if "Restore finished" in t)
    assert f"Restored public.User ({len(original)} rows)" in done and f"{inbound} foreign keys into them" in done


@pytest.mark.parametrize("incident_channel", [None, "C0INCIDENTS"])
def test_a_note_slack_refuses_in_an_incident_thread_is_posted_later_like_a_request_thread_post(
        harness, monkeypatch, incident_channel):
    """Issue 16: IncidentService.say posted once and, refused, only logged; it now goes through
    Flow.post_in_thread: recorded (slack.post_failed, with the incident) and posted later by a slack-post job."""
    from bot.incidents import IncidentService
    from bot.slack import retries

    monkeypatch.setattr(retries, "LATE_POST_DELAYS", (0, 0))  # due at once
    if incident_channel:
        use_incident_channel(harness, incident_channel)
    add_with_companions(harness, "20240101000000_add_flag", FLAG, down=FLAG_DOWN, verify=FLAG_VERIFY)
    rid = plan(harness)
    approve_and_run(harness, rid, APPROVER_A)
    incident = harness.store.find_incident(request_id=rid)
    assert incident.thread_ts and (incident.channel == incident_channel if incident_channel else True)

    harness.standin.fail_next("chat.postMessage", 1)  # Slack answers the note with a 503
    IncidentService(harness.flow).say(incident, "an incident note Slack first refused")
    assert not any("first refused" in t for t in _thread_texts(harness, incident))
    failed = [e for e in harness.store.list_events(request_id=rid) if e.kind == "slack.post_failed"]
    assert [(e.incident_id, e.detail["error"], e.detail["retry_in"]) for e in failed] == [
        (incident.id, "service_unavailable", 0)]
    # the request's card says its thread is behind only when the incident lives in that thread
    assert ("The thread is behind: 1 message Slack" in str(harness.card(rid))) is (incident_channel is None)

    harness.run_jobs()  # the late attempt posts it, in the incident's thread
    assert sum("an incident note Slack first refused" in t for t in _thread_texts(harness, incident)) == 1
    late = [e for e in harness.store.list_events(incident_id=incident.id) if e.kind == "slack.post_delivered_late"]
    assert len(late) == 1 and late[0].request_id == rid
    assert "thread is behind" not in str(harness.card(rid))
