"""The fleet preview's estimated duration: assumed (a rewrite at 50 MB/s plus 1 s per target) until the environment
has rolled out before, then from the median per-target duration its past rollouts recorded; real PostgreSQL."""
from __future__ import annotations

import statistics

import pytest

from fleet_rig import fleet_toml, tenant_schemas
from test_flow_fleet_rollout import M1, plan_and_approve

M3 = ("20240301000000_add_note", "ALTER TABLE accounts ADD COLUMN note text;")


def preview(harness, rid: int) -> str:
    return next(t for t in harness.thread_texts(rid) if "Fleet tenants" in t)


@pytest.mark.parametrize("harness", [("prisma", fleet_toml())], indirect=True)
def test_the_estimate_is_assumed_first_then_taken_from_past_rollouts(harness, make_database, monkeypatch) -> None:
    tenant_schemas(harness, make_database, monkeypatch, (M1,), count=20)
    first = plan_and_approve(harness)
    estimate = harness.store.get_request(first).target["fleet"]["estimate"]
    assert "assumed 1 s per target" in estimate["basis"] and "no past rollout" in estimate["basis"]
    assert estimate["past_rollouts"] == 0 and estimate["seconds"] == pytest.approx(4 * 1.0, rel=0.05)  # 1 + ⌈19/8⌉
    assert "assumed 1 s per target" in preview(harness, first)
    harness.run_jobs()
    assert harness.store.get_request(first).status.value == "succeeded"
    took = [(t.finished_at - t.started_at).total_seconds() for t in harness.store.list_fleet_targets(first)]
    assert len(took) == 20

    harness.add_migration(*M3)
    _, reply = harness.command("plan tenants pending")
    assert any("opened" in t for t in harness.replies(reply))
    harness.run_jobs()  # analyze
    second = harness.latest_request_id()
    assert second != first and harness.store.get_request(second).status.value == "awaiting_approval"
    estimate = harness.store.get_request(second).target["fleet"]["estimate"]
    median = statistics.median(took)
    assert estimate["past_rollouts"] == 1 and estimate["per_target_s"] == pytest.approx(median, abs=1e-3)
    assert f"from 1 past rollout: median {median:.2f} s per target (20 targets)" in estimate["basis"]
    assert estimate["seconds"] == pytest.approx(round(4 * median, 1), abs=0.051)
    assert "no past rollout" not in estimate["basis"] and "from 1 past rollout" in preview(harness, second)
