"""`/migrate plan <fleet> pending` over signed HTTP: 120 tenant schemas and tenant databases discovered, each one's
ledger read and grouped (pending, already applied, drifted, unreachable); the approval binds the target set."""
from __future__ import annotations

import json

import pytest
from psycopg.conninfo import make_conninfo

from bot.fleet import discover
from bot.slack.ids import ActionId
from bot.sources.layouts import load_snapshot
from fleet_rig import applied_names, fleet_toml, make_schemas, make_tenant_database, mark_applied
from flow_harness import APPROVER_A

M1 = ("20240101000000_add_plan", "ALTER TABLE accounts ADD COLUMN plan text;")
M2 = ("20240201000000_index_name", "CREATE INDEX accounts_name_idx ON accounts (name);")


@pytest.fixture
def fleet(harness, make_database, monkeypatch):
    url = make_database(prefix="gt_fleet_tenants")
    monkeypatch.setenv("GT_TENANTS_URL", url)
    shards = [make_tenant_database(make_database) for _ in range(3)]
    for i, shard in enumerate(shards, 1):
        monkeypatch.setenv(f"GT_SHARD_{i}_URL", shard)
    monkeypatch.delenv("GT_SHARD_GONE_URL", raising=False)
    schemas = make_schemas(url, 120)
    harness.add_migration(*M1)
    harness.add_migration(*M2)
    return url, schemas, shards


pytestmark = pytest.mark.parametrize("harness", [("prisma", fleet_toml())], indirect=True)


def test_discovery_groups_every_tenant_by_its_ledger(harness, fleet) -> None:
    url, schemas, shards = fleet
    for s in schemas[:10]:  # already applied both
        mark_applied(url, s, *M1)
        mark_applied(url, s, *M2)
    for s in schemas[10:15]:  # applied the first: pending one file
        mark_applied(url, s, *M1)
    mark_applied(url, schemas[15], *M1, checksum="0" * 64)  # modified after apply
    mark_applied(url, schemas[16], "20231201000000_other_branch", "SELECT 1;")  # a different history
    plan = discover(harness.config.environment("tenants"), "prisma", load_snapshot(harness.config.project))
    groups = {label: [t.id for t in ts] for label, ts in plan.groups().items()}
    assert groups[f"pending 2 files: {M1[0]}, {M2[0]}"] == schemas[17:]
    assert groups[f"pending 1 file: {M2[0]}"] == schemas[10:15]
    assert groups["already applied"] == schemas[:10]
    assert groups["drifted"] == [schemas[15], schemas[16]]
    drifted = {t.id: t.reason for t in plan.targets if t.state == "drifted"}
    assert "modified" in drifted[schemas[15]] and "missing locally" in drifted[schemas[16]]
    # each schema is read with its own search_path: nothing was written anywhere
    assert applied_names(url, schemas[20]) == []


def test_tenant_databases_from_variables_and_unreachable_ones(harness, fleet, monkeypatch) -> None:
    _, _, shards = fleet
    mark_applied(shards[1], "public", *M1)
    mark_applied(shards[1], "public", *M2)
    monkeypatch.setenv("GT_SHARD_3_URL", make_conninfo(shards[2], dbname="gt_fleet_no_such_db", password="s3cret-pw"))
    plan = discover(harness.config.environment("shards"), "prisma", load_snapshot(harness.config.project))
    by_id = {t.id: t for t in plan.targets}
    assert by_id["GT_SHARD_1_URL"].state == "pending" and by_id["GT_SHARD_1_URL"].pending == (M1[0], M2[0])
    assert by_id["GT_SHARD_2_URL"].state == "applied"
    assert by_id["GT_SHARD_3_URL"].state == "unreachable" and "does not exist" in by_id["GT_SHARD_3_URL"].reason
    assert by_id["GT_SHARD_GONE_URL"].state == "unreachable"
    assert "GT_SHARD_GONE_URL is not set" in by_id["GT_SHARD_GONE_URL"].reason
    assert all("s3cret-pw" not in (t.reason or "") for t in plan.targets)


def test_plan_pending_previews_the_groups_and_binds_the_target_set(harness, fleet) -> None:
    url, schemas, _ = fleet
    for s in schemas[:3]:
        mark_applied(url, s, *M1)
        mark_applied(url, s, *M2)
    mark_applied(url, schemas[3], *M1, checksum="f" * 64)
    _, reply = harness.command("plan tenants pending")
    assert any("opened" in t for t in harness.replies(reply))
    harness.run_jobs()
    rid = harness.latest_request_id()
    request = harness.store.get_request(rid)
    assert request.status.value == "awaiting_approval", request.error
    assert [m.name for m in request.migrations] == [M1[0], M2[0]]
    fleet_set = request.target["fleet"]
    assert fleet_set["counts"] == {"pending": 116, "applied": 3, "drifted": 1, "unreachable": 0}
    assert request.target_fingerprint == fleet_set["fingerprint"]
    preview = next(t for t in harness.thread_texts(rid) if "Fleet tenants" in t)
    assert "120 targets" in preview and "116 pending" in preview
    assert "pending 2 files" in preview and schemas[4] in preview and "and 108 more" in preview
    assert "drifted" in preview and schemas[3] in preview and "modified" in preview
    assert "risk " in preview and "canary 1" in preview
    waves = [t["wave"] for t in fleet_set["targets"] if t["state"] == "pending"]
    assert waves[0] == 0 and waves[1:26] == [1] * 25 and max(waves) == 5
    # the estimate: canary 1 + waves of 25, 25, 25, 25, 15 at 8 at once = 19 rounds of one target's apply, no pause
    estimate = fleet_set["estimate"]
    assert "116 targets in 6 waves, ≤8 at once, pause 0s" in estimate["basis"] and "largest pending" in estimate["basis"]
    assert "assumed" in estimate["basis"] and "no past rollout" in estimate["basis"]  # none: this env never rolled out
    assert 19 * 1.0 <= estimate["seconds"] <= 19 * 1.05
    assert "Estimated duration" in preview and "about 19 s" in preview and "116 targets in 6 waves" in preview

    # a tenant created after the preview: planning again shows a different set, so the old approval would not bind
    make_schemas(url, 1, prefix="tenant_late_")
    _, reply = harness.command("plan tenants pending")
    assert any("opened" in t for t in harness.replies(reply))
    harness.run_jobs()
    again = harness.store.get_request(harness.latest_request_id())
    assert again.target["fleet"]["counts"]["pending"] == 117
    assert again.target_fingerprint != request.target_fingerprint
    assert "tenant_late_001" in json.dumps(again.target["fleet"]["targets"])
    _, reply = harness.click(ActionId.APPROVE.value, rid, APPROVER_A)
    harness.replies(reply)  # the first request's approval binds the 120 it showed
    assert harness.store.list_decisions(rid)[-1].target_fingerprint == fleet_set["fingerprint"]


def test_status_per_target_in_slack_and_the_cli(harness, fleet, monkeypatch, capsys) -> None:
    url, schemas, shards = fleet
    mark_applied(url, schemas[0], *M1)
    mark_applied(url, schemas[0], *M2)
    mark_applied(url, schemas[1], *M1, checksum="a" * 64)
    _, reply = harness.command("status tenants")
    text = "\n".join(harness.replies(reply))
    assert "pending 2 files" in text and "— 118:" in text and "already applied* — 1:" in text
    assert schemas[1] in text and "modified" in text

    from bot.cli import main

    monkeypatch.setenv("GUARDIAN_CONFIG", str(harness.settings.guardian_config))
    monkeypatch.setenv("DATABASE_URL", harness.settings.database_url.get_secret_value())
    assert main(["status", "tenants", "--format", "json"]) == 1  # not every target is applied
    doc = json.loads(capsys.readouterr().out)["environments"][0]
    assert doc["summary"] == {"pending": 118, "applied": 1, "drifted": 1, "unreachable": 0}
    by_id = {t["id"]: t for t in doc["targets"]}
    assert len(by_id) == 120 and by_id[schemas[0]]["state"] == "applied"
    assert by_id[schemas[5]]["pending"] == [M1[0], M2[0]] and by_id[schemas[1]]["state"] == "drifted"
    assert main(["status", "shards", "--format", "json"]) == 1
    shard_doc = json.loads(capsys.readouterr().out)["environments"][0]
    assert {t["id"]: t["state"] for t in shard_doc["targets"]}["GT_SHARD_GONE_URL"] == "unreachable"
    assert "postgresql://" not in json.dumps(shard_doc) and "password" not in json.dumps(shard_doc)
