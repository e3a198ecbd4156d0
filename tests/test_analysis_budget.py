"""A request's analysis runs in a child process under a time and memory budget; past it, MG006 critical."""
from __future__ import annotations

import pytest

from bot.analysis_budget import AnalysisCrashed, analyse_within
from bot.config import AnalysisConfig, GuardianConfig
from bot.errors import ConfigError
from bot.risk import Context, TableStats, analyze

# ~3 MB, 60,000 statements on as many tables: ~4.5 s of analysis on an idle core, ~200 MB at its peak
BIG = "".join(f"ALTER TABLE t{i} ADD COLUMN c int DEFAULT {i};\n" for i in range(60_000))
SLOW = BIG


def test_reports_are_those_of_the_engine_in_process():
    ctx = Context(pg_version=14, tables={"users": TableStats(rows=50_000_000)})
    sqls = ["CREATE INDEX i ON users (email);", "SELECT 1;\nDROP TABLE users;", b"SELECT 'caf\xe9';"]
    reports = analyse_within(sqls, ctx, AnalysisConfig())
    assert [r.to_json() for r in reports] == [analyze(s, ctx).to_json() for s in sqls]


def test_a_file_past_the_time_budget_is_too_complex_and_the_files_before_it_keep_their_reports():
    reports = analyse_within(["DROP TABLE a;", SLOW, "SELECT 1;"], Context(), AnalysisConfig(time_budget="1s"))
    assert [f.code for f in reports[0].findings][:1] == ["MG501"]
    for report in reports[1:]:
        assert report.risk.value == "critical"
        (finding,) = report.findings
        assert finding.code == "MG006" and finding.name == "too-complex-to-analyse" and finding.line == 1
        assert "time budget (1 s)" in finding.message


def test_a_file_past_the_memory_budget_is_too_complex():
    reports = analyse_within(["SELECT 1;", BIG], Context(), AnalysisConfig(memory_budget_mb=128))
    assert reports[0].risk.value == "low"
    assert [f.code for f in reports[1].findings] == ["MG006"]
    assert "memory budget (128 MB)" in reports[1].findings[0].message
    assert reports[1].risk.value == "critical"


def test_the_budget_finding_is_reported_even_where_mg006_is_switched_off():
    reports = analyse_within([SLOW], Context(disabled=frozenset({"MG006"})), AnalysisConfig(time_budget="1s"))
    assert [f.code for f in reports[0].findings] == ["MG006"]


def test_a_crash_of_the_analysis_is_a_plain_error_not_a_too_complex_finding(caplog):
    with pytest.raises(AnalysisCrashed) as caught:
        analyse_within([12345], Context(), AnalysisConfig(), request_id=77)  # not SQL text: the engine raises
    assert "failed unexpectedly" in caught.value.message and "Traceback" not in caught.value.message
    assert any("request 77" in r.getMessage() and "AttributeError" in r.getMessage() for r in caplog.records)


def test_budget_keys_are_read_from_the_config_and_checked():
    config = GuardianConfig.model_validate({"analysis": {"time_budget": "2min", "memory_budget_mb": 512}})
    assert config.analysis.seconds == 120 and config.analysis.memory_mb == 512
    assert GuardianConfig().analysis.seconds == 30 and GuardianConfig().analysis.memory_mb == 1024
    for bad in ({"time_budget": "soon"}, {"time_budget": "0s"}, {"memory_budget_mb": 16}, {"budget": 1}):
        with pytest.raises(ValueError):
            GuardianConfig.model_validate({"analysis": bad})
