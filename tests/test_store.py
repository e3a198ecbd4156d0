"""The bot's own state: schema upgrades, compare-and-set transitions, decisions, the audit chain."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from bot.errors import NotFound, StoreError, TransitionConflict
from bot.models import RequestStatus as S
from bot.schema import schema_files, upgrade
from bot.store import NewMigration, Store


def new_request(store: Store, requester: str = "U_REQ") -> int:
    req = store.create_request(
        "staging", requester,
        [NewMigration(name="20240101_add_x", sql="ALTER TABLE t ADD COLUMN x int;", path="p/20240101_add_x.sql")],
        git_commit="a" * 40,
    )
    return req.id


def test_upgrade_twice_applies_nothing_the_second_time(make_database):
    url = make_database()
    first = upgrade(url)
    assert first == [f.name for f in schema_files()]
    assert upgrade(url) == []
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT version FROM guardian_bot.schema_history ORDER BY 1").fetchall()
    assert [r[0] for r in rows] == [f.version for f in schema_files()]


def test_concurrent_upgrades_do_not_collide(make_database):
    url = make_database()
    barrier = threading.Barrier(4)

    def run() -> list[str]:
        barrier.wait()
        return upgrade(url)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: run(), range(4)))
    applied = [r for r in results if r]
    assert len(applied) == 1, results  # exactly one runner applied the files
    assert applied[0] == [f.name for f in schema_files()]


def test_upgrade_refuses_an_applied_file_that_changed(make_database, tmp_path):
    url = make_database()
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE guardian_bot.a (id int);")
    assert upgrade(url, tmp_path) == ["0001_a.sql"]
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE guardian_bot.a (id bigint);")
    with pytest.raises(StoreError, match="changed after it was applied"):
        upgrade(url, tmp_path)


def test_failed_schema_file_rolls_back_and_is_not_recorded(make_database, tmp_path):
    url = make_database()
    (tmp_path / "0001_ok.sql").write_text("CREATE TABLE guardian_bot.ok (id int);")
    (tmp_path / "0002_bad.sql").write_text("CREATE TABLE guardian_bot.half (id int); SELECT 1/0;")
    with pytest.raises(psycopg.errors.DivisionByZero):
        upgrade(url, tmp_path)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('guardian_bot.half')").fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM guardian_bot.schema_history").fetchone()[0] == 1


def test_upgrade_of_unreachable_database_names_no_password():
    with pytest.raises(StoreError) as info:
        upgrade("postgresql://guardian:s3cretpw@127.0.0.1:1/nowhere")
    assert "s3cretpw" not in str(info.value)
    assert "DATABASE_URL" in str(info.value)


def test_create_and_get_request_round_trip(store):
    rid = new_request(store)
    req = store.get_request(rid)
    assert req.status is S.ANALYZING
    assert req.migrations[0].sha256 == NewMigration(name="x", sql="ALTER TABLE t ADD COLUMN x int;").sha256
    assert req.sha256s == {"20240101_add_x": req.migrations[0].sha256}
    with pytest.raises(NotFound):
        store.get_request(rid + 1000)


def test_twenty_threads_race_one_transition_exactly_one_wins(store):
    rid = new_request(store)
    store.transition(rid, S.ANALYZING, S.AWAITING_APPROVAL, actor="guardian")
    barrier = threading.Barrier(20)

    def attempt(i: int) -> str:
        barrier.wait()
        try:
            store.transition(rid, S.AWAITING_APPROVAL, S.APPROVED, actor=f"U{i}")
            return "won"
        except TransitionConflict:
            return "lost"

    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(attempt, range(20)))
    assert outcomes.count("won") == 1 and outcomes.count("lost") == 19
    assert store.get_request(rid).status is S.APPROVED
    approved_events = [e for e in store.list_events(request_id=rid) if e.kind == "request.approved"]
    assert len(approved_events) == 1


def test_invalid_transition_is_refused(store):
    rid = new_request(store)
    with pytest.raises(StoreError, match="not a valid transition"):
        store.transition(rid, S.ANALYZING, S.SUCCEEDED, actor="guardian")
    with pytest.raises(TransitionConflict, match="is analyzing, not awaiting approval"):
        store.transition(rid, S.AWAITING_APPROVAL, S.APPROVED, actor="U1")


def test_fifty_concurrent_approvals_from_one_user_record_one_decision(store):
    rid = new_request(store)
    req = store.transition(rid, S.ANALYZING, S.AWAITING_APPROVAL, actor="guardian")
    barrier = threading.Barrier(50)

    def click(_: int) -> bool:
        barrier.wait()
        return store.record_decision(req, "U_APPROVER", "approve")[1]

    with ThreadPoolExecutor(50) as pool:
        created = list(pool.map(click, range(50)))
    assert created.count(True) == 1
    decisions = store.list_decisions(rid)
    assert len(decisions) == 1 and decisions[0].sha256s == req.sha256s


def test_voided_decisions_do_not_count_and_allow_a_new_one(store):
    rid = new_request(store)
    req = store.transition(rid, S.ANALYZING, S.AWAITING_APPROVAL, actor="guardian")
    store.record_decision(req, "U_A", "approve")
    assert store.void_decisions(rid, reason="migration file changed") == 1
    assert store.list_decisions(rid) == []
    _, created = store.record_decision(req, "U_A", "approve")
    assert created and len(store.list_decisions(rid, live_only=False)) == 2


def test_event_chain_is_intact_and_append_only(store, state_db_url):
    rid = new_request(store)
    store.transition(rid, S.ANALYZING, S.AWAITING_APPROVAL, actor="guardian")
    step = store.start_step(rid, "analyze")
    store.finish_step(step.id, "succeeded", outcome={"risk": "low"})
    assert store.verify_event_chain() is None
    with psycopg.connect(state_db_url) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute("UPDATE guardian_bot.events SET actor = 'mallory'")
    # tampering (by someone able to bypass the trigger) is detected by the chain
    with psycopg.connect(state_db_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE guardian_bot.events DISABLE TRIGGER events_no_update_or_delete")
        victim = conn.execute("SELECT min(id) + 1 FROM guardian_bot.events").fetchone()[0]
        conn.execute("UPDATE guardian_bot.events SET actor = 'mallory' WHERE id = %s", (victim,))
    assert store.verify_event_chain() == victim


def test_step_finishes_once_with_duration(store):
    rid = new_request(store)
    step = store.start_step(rid, "backup", job_id="req-1-backup")
    done = store.finish_step(step.id, "failed", error="pg_dump: connection refused")
    assert done.status == "failed" and done.duration_ms is not None and done.finished_at
    with pytest.raises(TransitionConflict):
        store.finish_step(step.id, "succeeded")
    assert store.start_step(rid, "backup").attempt == 2


def test_freeze_is_active_until_lifted(store):
    ends = datetime.now(timezone.utc) + timedelta(hours=2)
    freeze = store.create_freeze("production", reason="launch", created_by="U1", ends_at=ends)
    assert store.get_active_freeze("production").id == freeze.id
    assert store.get_active_freeze("staging") is None
    assert store.get_active_freeze("production", at=ends + timedelta(seconds=1)) is None
    assert store.lift_freezes("production", lifted_by="U2") == 1
    assert store.get_active_freeze("production") is None


def test_backups_and_expiry(store):
    rid = new_request(store)
    now = datetime.now(timezone.utc)
    old = store.create_backup("staging", "/b/old.dump", request_id=rid, sha256="0" * 64, size_bytes=10,
                              duration_ms=5, verified=True, expires_at=now - timedelta(days=1))
    new = store.create_backup("staging", "/b/new.dump", request_id=rid, sha256="1" * 64, size_bytes=10,
                              duration_ms=5, verified=True, expires_at=now + timedelta(days=29))
    assert [b.id for b in store.list_backups(request_id=rid)] == [old.id, new.id]
    assert [b.id for b in store.list_backups(expired_at=now)] == [old.id]
    store.mark_backup_deleted(old.id)
    assert store.list_backups(expired_at=now) == []
    assert store.get_backup(old.id).deleted_at is not None


def test_succeeded_environments_match_exact_sha256s(store):
    rid = new_request(store)
    for a, b in [(S.ANALYZING, S.AWAITING_APPROVAL), (S.AWAITING_APPROVAL, S.APPROVED), (S.APPROVED, S.QUEUED),
                 (S.QUEUED, S.BACKING_UP), (S.BACKING_UP, S.APPLYING), (S.APPLYING, S.VERIFYING),
                 (S.VERIFYING, S.SUCCEEDED)]:
        store.transition(rid, a, b, actor="guardian")
    sha = store.get_request(rid).sha256s
    assert store.succeeded_environments(sha) == ["staging"]
    assert store.succeeded_environments({"20240101_add_x": "f" * 64}) == []


def test_incident_lifecycle_and_idempotent_notes(store):
    from bot.models import IncidentStatus as I

    rid = new_request(store)
    incident, created = store.create_incident(rid, opened_by="guardian", summary="apply failed")
    again, created_again = store.create_incident(rid, opened_by="U1", summary="dup")
    assert created and not created_again and again.id == incident.id
    store.update_incident(incident.id, channel="C1", thread_ts="1.1")
    assert store.find_incident(channel="C1", thread_ts="1.1").id == incident.id
    assert store.add_incident_note(incident.id, author="U1", text="looking", source="thread", slack_ts="1.2")
    assert not store.add_incident_note(incident.id, author="U1", text="looking", source="thread", slack_ts="1.2")
    assert store.add_incident_note(incident.id, author="U1", text="looking", source="pin", slack_ts="1.2")
    assert [n.source for n in store.list_incident_notes(incident.id)] == ["thread", "pin"]
    barrier = threading.Barrier(10)

    def mitigate(_: int) -> bool:
        barrier.wait()
        try:
            store.transition_incident(incident.id, I.OPEN, I.MITIGATING, actor="U2")
            return True
        except TransitionConflict:
            return False

    with ThreadPoolExecutor(10) as pool:
        assert sorted(pool.map(mitigate, range(10))) == [False] * 9 + [True]
    done = store.transition_incident(incident.id, [I.MITIGATING, I.MITIGATED], I.RESOLVED, actor="U2")
    assert done.resolved_at is not None
    # a resolved incident does not block a new one for the same request
    assert store.create_incident(rid, opened_by="U3", summary="again")[1]


def test_our_own_schema_passes_our_own_risk_analysis():
    from bot.risk import analyze

    for file in schema_files():
        report = analyze(file.sql)
        open_findings = [f for f in report.findings if not f.accepted and f.severity.value != "low"]
        assert report.risk.value == "low" and not open_findings, (file.name, open_findings)
