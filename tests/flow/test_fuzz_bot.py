"""bench/fuzz_bot.py, smaller: mutated corpus files planned through the bot (real flow, real analysis job, strict
Slack stand-in) leave no request stuck and no message Slack would refuse (the bench runs 10,000)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_fuzz_bot", ROOT / "bench" / "fuzz_bot.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_fuzzed_files_through_the_bot_leave_no_request_stuck(pg_admin_url, monkeypatch, capsys):
    monkeypatch.setenv("GUARDIAN_BENCH_DATABASE_URL", pg_admin_url)
    assert _bench().main(["-n", "120", "--per-plan", "20", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert "failures            0" in out and "messages refused    0" in out
    assert "awaiting_approval" in out  # some plans reached the analysis, not only the reading


def test_a_plan_holding_a_nul_byte_fails_saying_so_instead_of_crashing_the_analysis(pg_admin_url, monkeypatch,
                                                                                    capsys):
    monkeypatch.setenv("GUARDIAN_BENCH_DATABASE_URL", pg_admin_url)
    bench = _bench()
    monkeypatch.setattr(bench, "inputs", lambda n, seed, corpus: iter(
        [(0, b"CREATE TABLE a (id int);\x00DROP TABLE users;", "nul")]))
    assert bench.main(["-n", "1", "--per-plan", "1"]) == 0
    out = capsys.readouterr().out
    assert "failed 1" in out and "holds a NUL byte" in out
