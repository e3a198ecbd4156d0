"""Every rule record is complete, fires on its bad example and stays silent on its good one."""
import re

import pytest

from bot.risk import RULES, analyze
from bot.risk.catalogue import covered_hazards, example_context


def _codes(sql: str, rule) -> list[str]:
    report = analyze(sql.encode("utf-8", "surrogateescape"), example_context(rule))
    return [f.code for f in report.findings]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.code}-{r.name}")
def test_rule_fires_on_bad_example(rule):
    assert rule.code in _codes(rule.bad, rule)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.code}-{r.name}")
def test_rule_silent_on_good_example(rule):
    assert rule.code not in _codes(rule.good, rule)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.code)
def test_rule_record_is_complete(rule):
    assert re.fullmatch(r"MG\d{3}", rule.code)
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", rule.name)
    for text in (rule.summary, rule.why, rule.fix, rule.bad, rule.good):
        assert text.strip()
    assert "\n" not in rule.summary


def test_codes_and_names_are_unique():
    assert len({r.code for r in RULES}) == len(RULES)
    assert len({r.name for r in RULES}) == len(RULES)


def test_catalogue_covers_at_least_60_reference_hazards():
    covered = covered_hazards()
    assert len(covered) >= 60, sorted(set(range(1, 82)) - covered)
    # the ones no other tool flags
    assert {38, 40, 64, 70} <= covered
