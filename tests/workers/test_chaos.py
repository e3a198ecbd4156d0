"""The chaos suite's trials (bench/chaos.py's run_trial, imported) against a real `guardian worker`: each fault, each correct."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("guardian_bench_chaos", ROOT / "bench" / "chaos.py")
chaos = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = chaos
_spec.loader.exec_module(chaos)

TRIALS = [("kill", "apply", "parent"), ("kill", "apply", "horse"), ("kill", "backup", "both"),
          ("kill", "verify", "both"), ("redis", "apply", "flush"), ("redis", "backup", "down"),
          ("redis", "verify", "restart"), ("statedb", "apply", "cut"), ("target", "apply", "terminate"),
          ("target", "verify", "terminate")]


@pytest.fixture
def rig(pg_admin_url, state_db_url, target_db_url, tmp_path, monkeypatch):
    monkeypatch.setenv(chaos.ENV_VAR, target_db_url)
    made = chaos.Rig(admin_url=pg_admin_url, state_url=state_db_url, target_url=target_db_url, workdir=tmp_path)
    made.start_worker()
    yield made
    made.close()


def test_every_fault_leaves_the_truth_recorded_and_the_target_usable(rig):
    results = [chaos.run_trial(rig, chaos.Trial(number, kind, phase, fault, at=0.5))
               for number, (kind, phase, fault) in enumerate(TRIALS, start=1)]

    wrong = [(r.trial, r.status, r.db_state, r.note, r.problems) for r in results if not r.correct]
    assert not wrong, wrong
    assert all(r.status in ("succeeded", "failed") for r in results)
    assert {r.trial.kind for r in results} == {"kill", "redis", "statedb", "target"}
    terminated = [r for r in results if r.trial.kind == "target" and r.trial.phase == "apply"]
    assert terminated[0].status == "failed" and terminated[0].db_state == "partially_applied"
    error = rig.rt.store.get_request(terminated[0].request_id).error
    assert "[target-session-lost]" in error and "fix the file" not in error
    cut = [r for r in results if r.trial.kind == "statedb"]
    assert cut[0].status == "succeeded"  # a 2-second loss of the bot's database changes no outcome
    assert chaos.next_request_succeeds(rig, "final") is None

