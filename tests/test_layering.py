"""Dependency direction (STYLE): risk is pure, workers never reach listeners, listeners write no SQL."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            names.add("." * node.level + (node.module or ""))
    return names


def files(package: str) -> list[Path]:
    found = sorted((ROOT / package).rglob("*.py"))
    assert found, f"{package} has no modules"
    return found


def test_risk_imports_nothing_of_ours_and_no_io():
    forbidden_io = {"psycopg", "redis", "rq", "socket", "subprocess", "requests", "urllib.request", "slack_sdk", "slack_bolt"}
    for path in files("bot/risk"):
        for name in imports_of(path):
            assert not (name.startswith("bot") and not name.startswith("bot.risk")), f"{path}: imports {name}"
            assert name.split(".")[0] not in {"workers"}, f"{path}: imports {name}"
            assert name not in forbidden_io and name.split(".")[0] not in forbidden_io, f"{path}: does I/O via {name}"


def test_workers_never_import_slack_listeners():
    for path in files("workers"):
        for name in imports_of(path):
            assert not name.startswith("bot.slack.listeners"), f"{path}: imports {name}"
            assert not name.startswith("bot.slack.app"), f"{path}: imports {name}"


def test_listeners_write_no_sql():
    for path in files("bot/slack"):
        if "listeners" not in path.parts:
            continue
        for name in imports_of(path):
            assert name.split(".")[0] != "psycopg", f"{path}: imports {name}; SQL belongs in bot/store.py"
