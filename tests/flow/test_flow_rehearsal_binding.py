"""Issue 19: the approval binds the rehearsal's result. Its digest (per statement: failed or not, data failures with
their counts, locks observed; the app queries it breaks — never timings) is part of the preview's fingerprint, so a
click on a preview whose rehearsal differs from the current one is refused; at run time a copy past max_age means a
rehearsal on a fresh copy, and the approvals stand only when its result is the one approved."""
from __future__ import annotations

import os
import time

import psycopg

from bot.config import RehearsalCopyConfig
from bot.slack.ids import ActionId, shown_fingerprint
from workers import runtime as runtime_module

from flow_harness import APPROVER_A, APPROVER_B, CHANNEL, REQUESTER

UNIQUE_EMAIL = "CREATE UNIQUE INDEX users_email_key ON users (email);\n"


def _max_age(harness, max_age: str) -> None:
    """The staging environment rehearses on a template copy judged stale after ``max_age`` (the bot and worker)."""
    staging = harness.config.environments["staging"].model_copy(
        update={"rehearsal": RehearsalCopyConfig(copy="template", max_age=max_age)})
    config = harness.config.model_copy(update={"environments": {**harness.config.environments, "staging": staging}})
    harness.flow.config = config
    rt = runtime_module.runtime()
    rt.config = config
    rt.flow.config = config


def _target(sql: str) -> None:
    with psycopg.connect(os.environ["GT_STAGING_URL"], autocommit=True) as conn:
        conn.execute(sql)


def _plan(harness, name: str, sql: str) -> int:
    _target("ALTER TABLE users ALTER COLUMN email DROP NOT NULL")
    harness.add_migration(name, sql)
    rid = harness.flow.start_plan("staging", REQUESTER, CHANNEL).id
    harness.flow.analyze(rid)
    return rid


def _approve(harness, rid: int) -> None:
    needed = harness.store.get_request(rid).risk
    for approver in [APPROVER_A, APPROVER_B][: 2 if needed in ("high", "critical") else 1]:
        _, reply = harness.click(ActionId.APPROVE.value, rid, approver)
        assert any("You approved" in t for t in harness.replies(reply)), harness.replies(reply)
    assert harness.store.get_request(rid).status.value == "queued"


def _rehearsals(harness, rid: int) -> int:
    return len([e for e in harness.store.list_events(request_id=rid) if e.kind == "request.rehearsed"])


def test_the_rehearsal_digest_is_in_the_preview_and_a_click_on_an_older_rehearsal_is_refused(harness):
    _max_age(harness, "1s")
    rid = _plan(harness, "20240101000000_unique_email", UNIQUE_EMAIL)
    first = harness.store.get_request(rid)
    assert first.rehearsal["outcome"]["statements"][0]["offending"] == [] and len(first.rehearsal["digest"]) == 16
    old_card = harness.card_block_id(rid)
    assert shown_fingerprint(old_card) == first.preview_fingerprint
    time.sleep(1.2)  # the copy is past max_age; meanwhile four users come to share one email
    _target("UPDATE users SET email = 'shared@example.com' WHERE id % 500 = 0")
    assert "voided" in harness.flow.decide(rid, APPROVER_A, "approve")
    _max_age(harness, "1h")
    harness.flow.analyze(rid)  # the same file, commit, target and policy; a different rehearsal
    second = harness.store.get_request(rid)
    assert second.sha256s == first.sha256s and second.git_commit == first.git_commit
    assert second.target_fingerprint == first.target_fingerprint and second.policy_version == first.policy_version
    assert second.rehearsal["outcome"]["statements"][0]["offending"][0]["count"] == 4
    assert second.preview_fingerprint != first.preview_fingerprint
    _, reply = harness.click(ActionId.APPROVE.value, rid, APPROVER_B, block_id=old_card)  # the preview before
    assert any("this preview is outdated" in t for t in harness.replies(reply)), harness.replies(reply)
    assert harness.store.list_decisions(rid) == []
    _, reply = harness.click(ActionId.APPROVE.value, rid, APPROVER_B)  # the card as shown now
    assert any("You approved" in t for t in harness.replies(reply))


def test_a_request_without_a_rehearsal_keeps_the_fingerprint_it_always_had(harness):
    harness.add_migration("20240101000000_nick", "ALTER TABLE users ADD COLUMN nick text;\n")
    rid = harness.flow.start_plan("staging", REQUESTER, CHANNEL).id
    harness.flow.analyze(rid)
    request = harness.store.get_request(rid)
    assert request.rehearsal is None
    import hashlib
    import json
    material = json.dumps({"request": request.id, "environment": request.environment, "sha256s": request.sha256s,
                           "commit": request.git_commit, "target": request.target_fingerprint,
                           "policy": request.policy_version}, sort_keys=True)  # the fingerprint before issue 19
    assert request.preview_fingerprint == hashlib.sha256(material.encode()).hexdigest()[:20]


def test_at_run_time_a_stale_copy_is_rehearsed_again_and_the_same_result_keeps_the_approvals(harness):
    _max_age(harness, "1h")
    rid = _plan(harness, "20240101000000_nick", "ALTER TABLE users ADD COLUMN nick text;\n")
    approved = harness.store.get_request(rid)
    _approve(harness, rid)
    decisions = harness.store.list_decisions(rid)
    _max_age(harness, "1s")
    time.sleep(1.2)  # the approved rehearsal's copy is past max_age when the run starts
    harness.run_jobs()
    done = harness.store.get_request(rid)
    assert done.status.value == "succeeded", done.error
    assert _rehearsals(harness, rid) == 2 and harness.store.list_decisions(rid) == decisions
    assert done.rehearsal["digest"] == approved.rehearsal["digest"]
    assert done.rehearsal["copy"]["taken_at"] > approved.rehearsal["copy"]["taken_at"]  # the fresh copy's
    assert any("Same result as approved; the approvals stand" in t for t in harness.thread_texts(rid))
    assert harness.store.list_copies() == []  # both copies were recorded while they lived, and dropped


def test_at_run_time_a_fresh_copy_that_finds_duplicates_voids_the_approvals_saying_so(harness):
    _max_age(harness, "1h")
    rid = _plan(harness, "20240101000000_unique_email", UNIQUE_EMAIL)
    _approve(harness, rid)
    _target("UPDATE users SET email = 'shared@example.com' WHERE id % 500 = 0")  # after the approval
    _max_age(harness, "1s")
    time.sleep(1.2)
    harness.run_jobs()
    assert harness.store.list_decisions(rid) == []
    (voided,) = [e for e in harness.store.list_events(request_id=rid) if e.kind == "decision.voided"]
    assert voided.detail["reason"] == ("the rehearsal on a fresh copy of staging now finds 1 duplicated (email) in "
                                       "users, 4 rows (20240101000000_unique_email line 1)")
    assert any("now finds 1 duplicated (email) in users, 4 rows" in t for t in harness.thread_texts(rid))
    with psycopg.connect(os.environ["GT_STAGING_URL"]) as conn:  # the run stopped before the backup and the apply
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname = 'users_email_key'").fetchone()[0] == 0
    assert not [s for s in harness.store.list_steps(rid) if s.step in ("backup", "apply")]
