"""A Prisma migration that failed, and was resolved the CLI's way, plans and applies again through Slack (issue 21).

Signed slash commands and clicks go over HTTP into the bot; the Web API is the strict stand-in; the run is a real
worker on real PostgreSQL. `prisma migrate resolve --rolled-back` is done exactly as prisma-engines does it
(tests/sources/cli_oracle.py, mark_migration_rolled_back.rs).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import psycopg
import pytest

from bot.models import RequestStatus as S
from bot.slack.ids import ActionId

from flow_harness import APPROVER_A
from test_flow_approval import plan

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sources"))
from cli_oracle import prisma_deploy_plan, prisma_resolve_rolled_back, prisma_rows  # noqa: E402

NAME = "20240101000000_add_flag"
BROKEN = "ALTER TABLE users ADD COLUMN flag boolean;\nALTER TABLE no_such_table ADD COLUMN x int;\n"
FIXED = "ALTER TABLE users ADD COLUMN flag boolean;\n"


def _approve_and_run(h, rid):
    _, reply = h.click(ActionId.APPROVE.value, rid, APPROVER_A)
    h.replies(reply)
    h.run_jobs()
    return h.store.get_request(rid)


def test_failed_then_resolved_rolled_back_plans_and_applies_again(harness):
    h = harness
    h.add_migration(NAME, BROKEN)
    failed = _approve_and_run(h, plan(h))
    assert failed.status is S.FAILED and failed.failed_step == "apply", failed.error

    # Prisma's failed row: Guardian refuses to plan, as `prisma migrate deploy` refuses (P3009), naming the command
    blocked = plan(h)
    assert h.store.get_request(blocked).status is S.FAILED
    told = "\n".join(h.thread_texts(blocked))
    assert "P3009" in told and f'npx prisma migrate resolve --rolled-back "{NAME}"' in told, told
    _, reply = h.command("status staging")
    h.replies(reply)
    shown = json.dumps([c.params for c in h.standin.responses(reply)])
    assert "P3009" in shown and "npx prisma migrate resolve --rolled-back" in shown and NAME in shown, shown

    with psycopg.connect(h.targets["staging"], autocommit=True) as conn:
        prisma_resolve_rolled_back(conn, NAME)  # what the team runs, written as the CLI writes it
    h.add_migration(NAME, FIXED, message="fix the migration")

    again = plan(h)
    request = h.store.get_request(again)
    assert request.status is S.AWAITING_APPROVAL, request.error
    assert [m.name for m in request.migrations] == [NAME] and "no_such_table" not in request.migrations[0].sql
    done = _approve_and_run(h, again)
    assert done.status is S.SUCCEEDED, done.error

    with psycopg.connect(h.targets["staging"]) as conn:
        rows = prisma_rows(conn)
        assert conn.execute("SELECT count(*) FROM information_schema.columns "
                            "WHERE table_name = 'users' AND column_name = 'flag'").fetchone() == (1,)
    assert [(r["finished_at"] is None, r["rolled_back_at"] is None) for r in rows] == [(True, False), (False, True)]
    assert prisma_deploy_plan(rows, [NAME]) == ("ok", [])  # and the next `prisma migrate deploy` has nothing to do


def test_retry_resolves_only_its_own_rolled_back_attempt(harness):
    """A file that failed for a reason outside it (a missing table, a lock timeout) rolled back whole: the incident's
    Retry resolves the failed row that attempt left, as `prisma migrate resolve --rolled-back` would, and applies."""
    h = harness
    name = "20240101000000_add_team"
    h.add_migration(name, "ALTER TABLE users ADD COLUMN team_id bigint REFERENCES teams (id);\n")
    failed = _approve_and_run(h, plan(h))
    assert failed.status is S.FAILED and failed.db_state.value == "untouched", failed.error
    incident = h.store.find_incident(request_id=failed.id)
    if incident is None:
        _, reply = h.command(f"incident {failed.id}", user=APPROVER_A)
        h.replies(reply)
        incident = h.store.find_incident(request_id=failed.id)
    with psycopg.connect(h.targets["staging"], autocommit=True) as conn:
        conn.execute("CREATE TABLE teams (id bigint PRIMARY KEY)")  # the cause, fixed outside the file
        other = prisma_rows(conn)
    assert [(r["migration_name"], r["finished_at"], r["rolled_back_at"]) for r in other] == [(name, None, None)]
    _, reply = h.click(ActionId.RETRY.value, incident.id, APPROVER_A)
    h.replies(reply)
    h.run_jobs()
    done = h.store.get_request(failed.id)
    assert done.status is S.SUCCEEDED, done.error
    with psycopg.connect(h.targets["staging"]) as conn:
        rows = prisma_rows(conn)
    assert [(r["finished_at"] is None, r["rolled_back_at"] is None) for r in rows] == [(True, False), (False, True)]
    assert prisma_deploy_plan(rows, [name]) == ("ok", [])


SUPA_NAME = "20240101000000_add_flag"


@pytest.mark.parametrize("harness", ["supabase"], indirect=True)
def test_supabase_file_fixed_after_a_failure_plans_and_applies_through_slack(harness):
    h = harness
    h.add_migration(SUPA_NAME, BROKEN)
    failed = _approve_and_run(h, plan(h))
    assert failed.status is S.FAILED and failed.failed_step == "apply", failed.error
    with psycopg.connect(h.targets["staging"]) as conn:  # a failed push leaves no row, as the CLI's batch
        assert conn.execute("SELECT count(*) FROM supabase_migrations.schema_migrations").fetchone() == (0,)

    h.add_migration(SUPA_NAME, "-- the flag\n" + FIXED, message="fix the migration")  # fixed on the branch
    again = plan(h)
    request = h.store.get_request(again)
    assert request.status is S.AWAITING_APPROVAL, request.error  # not blocked: the CLI would push it too
    assert [m.version for m in request.migrations] == ["20240101000000"]
    done = _approve_and_run(h, again)
    assert done.status is S.SUCCEEDED, done.error
    with psycopg.connect(h.targets["staging"]) as conn:
        row = conn.execute("SELECT version, name, statements FROM supabase_migrations.schema_migrations").fetchone()
    assert row == ("20240101000000", "add_flag", ["-- the flag\nALTER TABLE users ADD COLUMN flag boolean"])
