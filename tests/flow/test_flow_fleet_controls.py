"""The rollout card's buttons over signed HTTP (Pause, Resume, Retry failed, Skip failed, Abort), one card updated in
place and a bounded thread, on the strict rate-limited Slack stand-in; 120 tenant schemas on real PostgreSQL."""
from __future__ import annotations

import json

import psycopg
import pytest
from rq import Queue

from bot.slack.ids import ActionId
from fleet_rig import applied_names, fleet_toml, make_schemas, tenant_schemas
from flow_harness import APPROVER_A, APPROVER_B
from test_flow_fleet_rollout import plan_and_approve, targets, untouched
from workers.enqueue import QUEUE_NAMES, deliver
from workers.worker import GuardianSimpleWorker

M1 = ("20240101000000_add_plan", "ALTER TABLE accounts ADD COLUMN plan text;\n"
                                 "-- down: ALTER TABLE accounts DROP COLUMN plan;\n")
M2 = ("20240201000000_index_name", "CREATE INDEX accounts_name_idx ON accounts (name);\n"
                                   "-- down: DROP INDEX accounts_name_idx;\n")


@pytest.fixture
def tenants(harness, make_database, monkeypatch) -> tuple[str, list[str]]:
    return tenant_schemas(harness, make_database, monkeypatch, (M1, M2))


def click(harness, action: ActionId, rid: int, user: str = APPROVER_A) -> list[str]:
    """A click on the rollout card's button, signed, over HTTP; the replies to the person who clicked."""
    harness._responses += 1
    reply = f"fleet{harness._responses}"
    sent = harness.sender.block_action(action.value, value=str(rid), user=_user(user), block_id=f"fleet_actions.{rid}",
                                       channel_id="C0MIGRATE", response_url=harness.standin.response_url(reply))
    assert sent.status == 200, sent
    return harness.replies(reply)


def _user(user: str):
    from bot.slack.sender import SlackUser

    return SlackUser(id=user, name=user)


def work(harness, jobs: int) -> None:
    """Run at most ``jobs`` queued jobs in-process (a rollout caught in the middle)."""
    deliver(harness.store, harness.redis)
    GuardianSimpleWorker([Queue(n, connection=harness.redis) for n in QUEUE_NAMES],
                         connection=harness.redis).work(burst=True, max_jobs=jobs)


def rollout_card(harness, rid: int) -> str:
    return json.dumps(harness.card(rid)["blocks"])


def break_canary(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'ALTER TABLE "{schema}".accounts RENAME TO accounts_moved')


def mend_canary(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'ALTER TABLE "{schema}".accounts_moved RENAME TO accounts')


@pytest.mark.parametrize("harness", [("prisma", fleet_toml())], indirect=True)
def test_retry_failed_runs_the_failed_target_again_and_the_rollout_on(harness, tenants) -> None:
    url, schemas = tenants
    rid = plan_and_approve(harness)
    break_canary(url, schemas[0])
    harness.run_jobs()
    card = rollout_card(harness, rid)
    assert "halted" in card and schemas[0] in card and "Retry failed" in card and "Skip failed" in card
    assert any("only the tenants approvers" in r for r in click(harness, ActionId.FLEET_RETRY_FAILED, rid, "U_OUT"))
    assert targets(harness, rid)[schemas[0]].state == "failed"  # an outsider's click changed nothing
    mend_canary(url, schemas[0])
    replies = click(harness, ActionId.FLEET_RETRY_FAILED, rid)
    assert any("1 target(s) retried" in r for r in replies), replies
    harness.run_jobs()
    assert harness.store.get_request(rid).status.value == "succeeded"
    assert all(applied_names(url, s) == [M1[0], M2[0]] for s in schemas)
    assert "120/120" in rollout_card(harness, rid)


@pytest.mark.parametrize("harness", [("prisma", fleet_toml())], indirect=True)
def test_skip_failed_leaves_the_failed_target_and_finishes_the_others(harness, tenants) -> None:
    url, schemas = tenants
    rid = plan_and_approve(harness)
    break_canary(url, schemas[0])
    harness.run_jobs()
    assert any("1 target(s) skipped" in r for r in click(harness, ActionId.FLEET_SKIP_FAILED, rid))
    harness.run_jobs()
    rows = targets(harness, rid)
    assert rows[schemas[0]].state == "skipped" and applied_names(url, schemas[0]) == []
    assert all(rows[s].state == "succeeded" for s in schemas[1:])
    assert harness.store.get_request(rid).status.value == "succeeded"


@pytest.mark.parametrize("harness", [("prisma", fleet_toml(parallel=4))], indirect=True)
def test_pause_stops_new_targets_and_resume_continues(harness, tenants) -> None:
    url, schemas = tenants
    rid = plan_and_approve(harness)
    work(harness, 12)  # backup, apply (the rollout starts), the canary and some of wave 1
    done = sum(1 for t in targets(harness, rid).values() if t.state == "succeeded")
    assert 1 <= done < 120
    assert any("Paused" in r for r in click(harness, ActionId.FLEET_PAUSE, rid))
    harness.run_jobs()  # the claimed targets' jobs find the rollout paused: they go back to waiting
    rows = targets(harness, rid)
    assert not [t for t in rows.values() if t.state in ("queued", "running")]
    stopped = sum(1 for t in rows.values() if t.state == "succeeded")
    assert stopped == done and harness.store.get_rollout(rid).state == "paused"
    assert "paused" in rollout_card(harness, rid) and "Resume" in rollout_card(harness, rid)
    assert f"_paused by <@{APPROVER_A}>_" in rollout_card(harness, rid)  # a mention, not "&lt;@…&gt;" shown as text
    assert any("Resumed" in r for r in click(harness, ActionId.FLEET_RESUME, rid))
    harness.run_jobs()
    assert harness.store.get_request(rid).status.value == "succeeded"
    assert sum(1 for t in targets(harness, rid).values() if t.state == "succeeded") == 120


@pytest.mark.parametrize("harness", [("prisma", fleet_toml())], indirect=True)
def test_abort_fails_the_request_and_rolls_back_the_done_targets_once_approved(harness, tenants) -> None:
    url, schemas = tenants
    rid = plan_and_approve(harness)
    broken = schemas[30]  # wave 2: the canary and wave 1 (26 targets) are done when it halts
    break_canary(url, broken)
    harness.run_jobs()
    done = [s for s, t in targets(harness, rid).items() if t.state == "succeeded"]
    assert len(done) == 26 + 4  # the canary, wave 1, and the wave-2 targets one worker ran before the broken one
    replies = click(harness, ActionId.FLEET_ABORT, rid)
    assert any("rollback request" in r for r in replies)
    request = harness.store.get_request(rid)
    assert request.status.value == "failed" and request.db_state.value == "partially_applied"
    rollback = harness.store.list_requests(limit=1)[0]
    assert rollback.parent_request_id == rid and rollback.source == "rollback"
    harness.run_jobs()  # its analysis
    assert harness.store.get_request(rollback.id).status.value == "awaiting_approval"
    assert len([t for t in harness.store.get_request(rollback.id).target["fleet"]["targets"]]) == len(done)
    _, reply = harness.click(ActionId.APPROVE.value, rollback.id, APPROVER_B)
    harness.replies(reply)
    harness.run_jobs()
    assert harness.store.get_request(rollback.id).status.value == "succeeded", harness.store.get_request(rollback.id).error
    assert all(untouched(url, s) for s in done)  # the column and both ledger rows are gone again
    assert all(untouched(url, s) for s in schemas if s not in done and s != broken)


@pytest.mark.parametrize("harness", [("prisma", fleet_toml(wave='"10%"'))], indirect=True)
def test_one_card_and_a_bounded_thread_for_a_500_target_rollout(harness, make_database, monkeypatch) -> None:
    url = make_database(prefix="gt_fleet_tenants")
    monkeypatch.setenv("GT_TENANTS_URL", url)
    make_schemas(url, 500)
    harness.add_migration(*M1)
    harness.add_migration(*M2)
    rid = plan_and_approve(harness)
    before = len(harness.thread_texts(rid))
    harness.run_jobs()
    assert harness.store.get_request(rid).status.value == "succeeded"
    during = harness.thread_texts(rid)[before:]
    # backup done, rollout started, apply done (the rollout), verify's report, verify done, the summary: 6 for 30
    # targets as for 500, never one per target
    assert len(during) == 6, [t[:80] for t in during]
    roots = [m for m in harness.standin.messages("C0MIGRATE") if m.get("ts") == m.get("thread_ts", m.get("ts"))
             and f"Migration request #{rid} " in m.get("text", "")]
    assert [m["ts"] for m in roots] == [harness.store.get_request(rid).message_ts]  # one card, updated in place
    assert "500/500" in rollout_card(harness, rid) and "500 succeeded" in rollout_card(harness, rid)
    updates = harness.standin.calls("chat.update")
    assert len(updates) < 500 // 5, len(updates)  # throttled to about one per 3 s: never one per target
