"""Fleet rollouts end to end on real PostgreSQL and Redis: 120 tenant schemas planned and approved over signed
HTTP, then rolled out by RQ jobs (one per target): canary first, waves, halts on a failure or a false health
gate with nothing started after it, targets added or drifted after the approval listed and not migrated."""
from __future__ import annotations

import threading

import psycopg
import pytest

from bot.slack.ids import ActionId
from fleet_rig import applied_names, fleet_toml, make_schemas, make_tenant_database, mark_applied, tenant_schemas
from flow_harness import APPROVER_A

M1 = ("20240101000000_add_plan", "ALTER TABLE accounts ADD COLUMN plan text;")
M2 = ("20240201000000_index_name", "CREATE INDEX accounts_name_idx ON accounts (name);")
GATE = ("SELECT (SELECT count(*) FROM information_schema.columns WHERE table_name = 'accounts' "
        "AND column_name = 'plan') < 10")


@pytest.fixture
def tenants(harness, make_database, monkeypatch) -> tuple[str, list[str]]:
    return tenant_schemas(harness, make_database, monkeypatch, (M1, M2))


def plan_and_approve(harness) -> int:
    _, reply = harness.command("plan tenants pending")
    assert any("opened" in t for t in harness.replies(reply))
    harness.run_jobs()  # analyze
    rid = harness.latest_request_id()
    assert harness.store.get_request(rid).status.value == "awaiting_approval", harness.store.get_request(rid).error
    _, reply = harness.click(ActionId.APPROVE.value, rid, APPROVER_A)
    harness.replies(reply)
    return rid


def targets(harness, rid: int) -> dict[str, object]:
    return {t.target: t for t in harness.store.list_fleet_targets(rid)}


def untouched(url: str, schema: str) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        cols = conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_schema = %s "
                            "AND table_name = 'accounts' AND column_name = 'plan'", (schema,)).fetchone()[0]
    return cols == 0 and applied_names(url, schema) == []


@pytest.mark.parametrize("harness", [("prisma", fleet_toml())], indirect=True)
def test_rollout_applies_each_pending_tenant_once_and_leaves_the_rest(harness, tenants) -> None:
    url, schemas = tenants
    for s in schemas[:5]:
        mark_applied(url, s, *M1)
        mark_applied(url, s, *M2)
    for s in schemas[5:8]:
        mark_applied(url, s, *M1)  # pending only the second file
    mark_applied(url, schemas[8], *M1, checksum="0" * 64)  # drifted: listed, never migrated
    rid = plan_and_approve(harness)
    harness.run_jobs()
    request = harness.store.get_request(rid)
    assert request.status.value == "succeeded", request.error
    rows = targets(harness, rid)
    assert sorted(t.state for t in rows.values()).count("succeeded") == 114
    assert {rows[s].state for s in schemas[:5]} == {"excluded"} and rows[schemas[8]].state == "excluded"
    assert "drifted at approval" in rows[schemas[8]].note
    for s in schemas[5:]:
        if s != schemas[8]:
            assert applied_names(url, s) == [M1[0], M2[0]], s  # each file once in each tenant's own ledger
    assert applied_names(url, schemas[8]) == [M1[0]]
    waves = sorted({t.wave for t in rows.values() if t.wave is not None})
    assert waves == [0, 1, 2, 3, 4, 5]
    canary = next(t for t in rows.values() if t.wave == 0)
    assert all(t.started_at >= canary.finished_at for t in rows.values() if t.wave and t.started_at)
    assert harness.store.get_rollout(rid).state == "succeeded"


@pytest.mark.parametrize("harness", [("prisma", fleet_toml())], indirect=True)
def test_a_failing_canary_halts_before_any_other_target_is_touched(harness, tenants) -> None:
    url, schemas = tenants
    rid = plan_and_approve(harness)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP TABLE "{schemas[0]}".accounts')  # the canary's apply fails: no such table
    harness.run_jobs()
    rows = targets(harness, rid)
    assert rows[schemas[0]].state == "failed" and "accounts" in rows[schemas[0]].note
    assert all(rows[s].state == "waiting" and rows[s].started_at is None for s in schemas[1:])
    assert all(untouched(url, s) for s in schemas[1:])
    rollout = harness.store.get_rollout(rid)
    assert rollout.state == "halted" and "1 target failed" in rollout.reason
    assert harness.store.get_request(rid).status.value == "applying"
    assert any("Rollout halted" in t and schemas[0] in t for t in harness.thread_texts(rid))


@pytest.mark.parametrize("harness", [("prisma", fleet_toml(wave="25", parallel=8))], indirect=True)
def test_a_failure_in_wave_two_halts_with_nothing_started_after_it(harness, tenants) -> None:
    url, schemas = tenants
    rid = plan_and_approve(harness)
    broken = schemas[30]  # wave 2: targets 27-51 in rollout order
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP TABLE "{broken}".accounts')
    harness.run_jobs()
    rows = targets(harness, rid)
    assert rows[broken].wave == 2 and rows[broken].state == "failed"
    failed_at = rows[broken].finished_at
    started_after = [t.target for t in rows.values() if t.started_at and t.started_at > failed_at]
    assert started_after == []
    assert not [t for t in rows.values() if t.state in ("queued", "running")]  # in flight ones finished
    assert all(t.state == "waiting" for t in rows.values() if t.wave and t.wave >= 3)
    assert all(untouched(url, s) for s, t in rows.items() if t.wave and t.wave >= 3)
    assert all(t.state == "succeeded" for t in rows.values() if t.wave is not None and t.wave <= 1)
    assert harness.store.get_rollout(rid).state == "halted"


@pytest.mark.parametrize("harness", [("prisma", fleet_toml(health=GATE))], indirect=True)
def test_a_health_gate_turning_false_halts_between_waves(harness, tenants) -> None:
    url, schemas = tenants
    rid = plan_and_approve(harness)
    harness.run_jobs()
    rows = targets(harness, rid)
    done = [t for t in rows.values() if t.state == "succeeded"]
    assert sorted({t.wave for t in done}) == [0, 1] and len(done) == 26  # healthy after the canary, not after wave 1
    assert all(t.state == "waiting" and t.started_at is None for t in rows.values() if t.wave and t.wave >= 2)
    rollout = harness.store.get_rollout(rid)
    assert rollout.state == "halted" and "health query returned False" in rollout.reason and "wave 1" in rollout.reason
    assert any("health query" in t for t in harness.thread_texts(rid))


@pytest.mark.parametrize("harness", [("prisma", fleet_toml())], indirect=True)
def test_tenants_added_or_drifted_after_approval_are_listed_not_migrated(harness, tenants) -> None:
    url, schemas = tenants
    rid = plan_and_approve(harness)
    make_schemas(url, 2, prefix="tenant_late_")  # created after the approval
    mark_applied(url, schemas[40], *M1, checksum="e" * 64)  # drifted after the approval
    harness.run_jobs()
    rows = targets(harness, rid)
    for late in ("tenant_late_001", "tenant_late_002"):
        assert rows[late].state == "excluded" and "added after the approval" in rows[late].note
        assert untouched(url, late)
    assert rows[schemas[40]].state == "skipped" and "drifted after the approval" in rows[schemas[40]].note
    assert applied_names(url, schemas[40]) == [M1[0]]  # only the row planted: nothing applied there
    assert any("added after the approval" in t and "tenant_late_001" in t for t in harness.thread_texts(rid))
    assert harness.store.get_request(rid).status.value == "succeeded"


@pytest.mark.parametrize("harness", [("prisma", fleet_toml())], indirect=True)
def test_tenant_databases_roll_out_from_their_variables(harness, tenants, make_database, monkeypatch) -> None:
    shards = [make_tenant_database(make_database) for _ in range(3)]
    for i, shard in enumerate(shards, 1):
        monkeypatch.setenv(f"GT_SHARD_{i}_URL", shard)
    monkeypatch.delenv("GT_SHARD_GONE_URL", raising=False)
    mark_applied(shards[2], "public", *M1)
    mark_applied(shards[2], "public", *M2)
    _, reply = harness.command("plan shards pending")
    assert any("opened" in t for t in harness.replies(reply))
    harness.run_jobs()
    rid = harness.latest_request_id()
    _, reply = harness.click(ActionId.APPROVE.value, rid, APPROVER_A)
    harness.replies(reply)
    harness.run_jobs()
    assert harness.store.get_request(rid).status.value == "succeeded", harness.store.get_request(rid).error
    rows = targets(harness, rid)
    assert [rows[f"GT_SHARD_{i}_URL"].state for i in (1, 2, 3)] == ["succeeded", "succeeded", "excluded"]
    assert rows["GT_SHARD_GONE_URL"].state == "excluded" and "unreachable at approval" in rows["GT_SHARD_GONE_URL"].note
    assert [applied_names(s) for s in shards] == [[M1[0], M2[0]]] * 3
    dumps = sorted(b.path.rsplit("/", 1)[-1].split("-")[1:3] for b in harness.store.list_backups(request_id=rid))
    assert [d for d in dumps if d[1].startswith("GT_")] == [[f"req{rid}", "GT_SHARD_1_URL"], [f"req{rid}", "GT_SHARD_2_URL"]]
    assert untouched(tenants[0], tenants[1][0])  # the schemas of the environment's own database: another fleet


SLOW_CANARY = ("20240301000000_slow_on_canary",
               "DO $$ BEGIN ALTER TABLE accounts ADD COLUMN slow int; IF current_schema() = 'tenant_001' THEN "
               "PERFORM pg_sleep(2.5); END IF; END $$;")


@pytest.mark.parametrize("harness", [("prisma", fleet_toml())], indirect=True)
def test_a_lock_wait_breach_on_the_canary_halts_before_wave_1(harness, make_database, monkeypatch) -> None:
    url = make_database(prefix="gt_fleet_tenants")
    monkeypatch.setenv("GT_TENANTS_URL", url)
    schemas = make_schemas(url, 30)
    harness.add_migration(*SLOW_CANARY)
    rid = plan_and_approve(harness)
    stop = threading.Event()

    def app_reads() -> None:  # the application reads the canary's table; its apply holds ACCESS EXCLUSIVE for 2.5 s
        with psycopg.connect(url, autocommit=True, application_name="test-app") as conn:
            while not stop.wait(0.05):
                conn.execute('SELECT count(*) FROM "tenant_001".accounts')

    reader = threading.Thread(target=app_reads, daemon=True)
    reader.start()
    try:
        harness.run_jobs()
    finally:
        stop.set()
        reader.join(timeout=30)
    rows = targets(harness, rid)
    assert rows[schemas[0]].wave == 0 and rows[schemas[0]].state == "succeeded"
    assert all(t.state == "waiting" and t.started_at is None for t in rows.values() if t.wave)
    rollout = harness.store.get_rollout(rid)
    assert rollout.state == "halted" and "lock-wait watchdog" in rollout.reason
    assert "tenant_001" in rollout.reason and "wave 0" in rollout.reason
    assert any("lock-wait watchdog" in t for t in harness.thread_texts(rid))
