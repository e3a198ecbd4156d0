"""Every rule record is complete, fires on its bad example and stays silent on its good one."""
import re

import pytest

from bot.risk import RULES, analyze
from bot.risk.catalogue import FAMILIES, covered_hazards, example_context

# Rules from outside the SQL (families marked REPOSITORY: a file's place in the migration history; TRACE:
# what a rehearsal saw): the engine cannot fire them, so their examples are checked by
# test_repository_rules_never_fire_from_sql instead; tests/risk/test_repository_rules.py and
# tests/pg/test_pg_rehearsal.py attach them the way the flow and `guardian plan` do.
REPOSITORY_FAMILIES = [f for f in FAMILIES if getattr(f, "REPOSITORY", False) or getattr(f, "TRACE", False)]
REPOSITORY_CODES = {r.code for f in REPOSITORY_FAMILIES for r in f.RULES}
SQL_RULES = [r for r in RULES if r.code not in REPOSITORY_CODES]


def _codes(sql: str, rule) -> list[str]:
    report = analyze(sql.encode("utf-8", "surrogateescape"), example_context(rule))
    return [f.code for f in report.findings]


@pytest.mark.parametrize("rule", SQL_RULES, ids=lambda r: f"{r.code}-{r.name}")
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


def test_only_families_that_look_at_no_statement_are_repository_level():
    assert REPOSITORY_FAMILIES, "the out-of-order rule's family is marked REPOSITORY"
    for fam in REPOSITORY_FAMILIES:
        assert fam.TYPES == frozenset(), f"{fam.__name__} looks at SQL statements, so its examples must fire"
    assert len(SQL_RULES) == len(RULES) - len(REPOSITORY_CODES)


@pytest.mark.parametrize("rule", [r for r in RULES if r.code in REPOSITORY_CODES], ids=lambda r: r.code)
def test_repository_rules_never_fire_from_sql(rule):
    assert rule.code not in _codes(rule.bad, rule)


def test_codes_and_names_are_unique():
    assert len({r.code for r in RULES}) == len(RULES)
    assert len({r.name for r in RULES}) == len(RULES)


def test_catalogue_covers_at_least_60_reference_hazards():
    covered = covered_hazards()
    assert len(covered) >= 60, sorted(set(range(1, 82)) - covered)
    # the ones no other tool flags
    assert {38, 40, 64, 70} <= covered


def test_every_rule_record_in_the_source_is_a_complete_keyword_record():
    """R(code=…, name=…, …) in bot/risk/rules/*.py: no positional fields, and each names every required one."""
    import ast
    import inspect
    from pathlib import Path

    from bot.risk import rules

    required = {"code", "name", "severity", "summary", "why", "fix", "bad", "good"}
    calls = [node for path in Path(rules.__file__).parent.glob("*.py")
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "R"]
    assert len(calls) == len(RULES)
    for call in calls:
        named = {k.arg for k in call.keywords}
        assert not call.args and required <= named, ast.unparse(call)[:80]
    params = inspect.signature(rules.rule("x")).parameters.values()
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
