"""A worker imports its jobs' modules once, before RQ forks work horses from it (each horse then finds them
loaded instead of importing workers.fleet_target, apply, backup, checks… again: ~20 ms CPU of every fleet target's
job, bench/fleet.py profiled)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, sys
import workers.worker
before = set(sys.modules)
loaded = workers.worker.preload_jobs(sys.argv[1].split(","))
print(json.dumps({"loaded": loaded, "new": sorted(set(sys.modules) - before), "had": sorted(before)}))
"""


def probe(queues: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, queues], cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_the_main_queue_preloads_every_job_module_it_runs_and_not_the_analysis() -> None:
    found = probe("guardian")
    assert "workers.fleet_target" not in found["had"]  # a fresh worker process had not imported it
    for module in ("workers.fleet_target", "workers.apply", "workers.backup", "workers.verify", "workers.fleet"):
        assert module in found["loaded"]
    assert "workers.fleet_target" in found["new"] and "workers.checks" in found["new"]  # and what it imports
    assert "workers.analyze" not in found["loaded"]  # the analysis process's queue, not this one's


def test_the_analysis_queue_preloads_the_analysis() -> None:
    found = probe("guardian-analyze")
    assert found["loaded"] == ["workers.analyze"]
