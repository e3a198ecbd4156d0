"""squawk's own rule-test cases (tests/fixtures/squawk, vendored with attribution) as a precision check:
of the cases squawk passes, at most one is flagged at medium or above (timeout rules aside) unless it is
documented as a real hazard with the reason; every case squawk flags stays flagged."""
from __future__ import annotations

import json
from pathlib import Path

from bot.risk import Context, Severity, analyze
from bot.risk.catalogue import BY_CODE

HERE = Path(__file__).resolve().parents[1] / "fixtures" / "squawk"
CASES = json.loads((HERE / "cases.json").read_text(encoding="utf-8"))
REAL = json.loads((HERE / "real_hazards.json").read_text(encoding="utf-8"))
TIMEOUT_RULES = {"MG601", "MG602"}  # squawk's require-timeout-settings cases are left out too


def _ctx(case: dict, **extra) -> Context:
    return Context(pg_version=case["pg_version"] or 16, assume_in_transaction=case["assume_in_transaction"], **extra)


def _key(case: dict) -> str:
    return f"{case['rule']}/{case['test']}"


def _serious(case: dict) -> list:
    report = analyze(case["sql"], _ctx(case))
    return [f for f in report.findings if f.severity.rank >= Severity.MEDIUM.rank and f.code not in TIMEOUT_RULES]


def _cases(kind: str) -> list[dict]:
    return [c for c in CASES if c["kind"] == kind and c["rule"] != "require_timeout_settings"]


def test_the_vendored_cases_are_all_there():
    assert len(_cases("ok")) >= 100 and len(_cases("error")) >= 75


def test_at_most_one_case_squawk_passes_is_flagged_unless_documented_as_a_real_hazard():
    flagged = {_key(c): [f"{f.code} {f.message}" for f in _serious(c)] for c in _cases("ok")}
    undocumented = {k: v for k, v in flagged.items() if v and k not in REAL}
    assert len(undocumented) <= 1, undocumented
    # the documentation stays honest: every case documented as real is still flagged
    stale = [k for k in REAL if not flagged.get(k)]
    assert not stale, f"documented as real hazards but no longer flagged: {stale}"


def test_every_case_squawk_flags_stays_flagged():
    """squawk's tests switch the rule under test on, so ours run with the opt-in rules on too."""
    missed = []
    for c in _cases("error"):
        report = analyze(c["sql"], _ctx(c, enabled=frozenset(BY_CODE)))
        if not [f for f in report.findings if f.code not in TIMEOUT_RULES]:
            missed.append(_key(c))
    assert not missed, missed
