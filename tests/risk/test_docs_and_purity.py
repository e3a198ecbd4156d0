"""docs/rules.md matches the rule records; bot/risk stays pure (no I/O, clock or other bot modules)."""
import ast
from pathlib import Path

from bot.risk import RULES
from bot.risk.docs import render

ROOT = Path(__file__).resolve().parents[2]
RISK = ROOT / "bot" / "risk"


def test_docs_rules_md_is_up_to_date():
    current = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    assert current == render(), "docs/rules.md is stale: run  python -m bot.risk.docs > docs/rules.md"


def test_docs_have_a_section_per_rule():
    text = render()
    for r in RULES:
        assert f"### {r.code} {r.name}" in text
        assert f"| [{r.code}]" in text


FORBIDDEN = {"os", "io", "time", "datetime", "socket", "subprocess", "pathlib", "random", "requests", "psycopg",
             "shutil", "tempfile", "logging"}


def test_risk_package_imports_nothing_of_ours_and_no_io():
    for path in RISK.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    continue
                names = [node.module or ""]
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "open":
                raise AssertionError(f"{path}: open() call")
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top != "bot", f"{path}: imports {name}"
                assert top not in FORBIDDEN, f"{path}: imports {name}"
