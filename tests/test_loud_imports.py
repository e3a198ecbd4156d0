"""A broken import of our own code fails loudly where it is used: no `except ImportError` turns it into a
degraded command that still exits 0 (STYLE: no guards around our own imports).

Each case runs a real `guardian` process in which one of our modules cannot be imported (a meta-path
finder raises ModuleNotFoundError for it, as a refactor that deletes or renames it would).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

_BREAK = """
import importlib.abc, sys
class _Broken(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (broken on purpose)", name=name)
        return None
sys.meta_path.insert(0, _Broken())
sys.argv = ["guardian", *{argv!r}]
from bot.cli import main
sys.exit(main())
"""


def guardian_without(module: str, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
            "GUARDIAN_CONFIG": str(REPO / "tests" / "fixtures" / "empty.toml")}
    return subprocess.run([sys.executable, "-c", _BREAK.format(module=module, argv=list(argv))],
                          env={**base, **(env or {})}, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_the_cli_does_not_start_when_the_linter_cannot_be_imported():
    # before: the parser swallowed the ImportError and `guardian lint` silently lost all its options
    result = guardian_without("bot.lint", "--help")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "from bot import lint" in result.stderr, result.stderr
    assert "ImportError: cannot import name 'lint'" in result.stderr, result.stderr
    assert "usage: guardian" not in result.stdout


def test_the_cli_starts_when_nothing_is_broken():  # the control: the same harness, nothing blocked
    result = guardian_without("bot.no_such_module", "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: guardian" in result.stdout and "lint" in result.stdout


def test_plan_without_the_risk_engine_fails_instead_of_rehearsing_unanalysed(make_database, tmp_path):
    # before: `guardian plan` rehearsed with no risk analysis and exited 0, as if the file were clean
    url = make_database()
    sql = tmp_path / "001.sql"
    sql.write_text("CREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT random();\n")
    control = guardian_without("bot.no_such_module", "plan", "--target-url", url, "--format", "json", str(sql))
    assert control.returncode == 0, control.stderr
    assert '"risk": null' not in control.stdout
    result = guardian_without("bot.risk", "plan", "--target-url", url, "--format", "json", str(sql))
    assert result.returncode != 0
    assert "ModuleNotFoundError" in result.stderr and "'bot.risk'" in result.stderr, result.stderr
    assert result.stdout == ""


def test_status_says_what_broke_not_that_the_command_is_missing():
    # before: "`guardian status` is not available in this build yet" hid the real error
    result = guardian_without("bot.sources.status", "status")
    assert result.returncode != 0
    assert "not available in this build" not in result.stderr
    assert "ModuleNotFoundError" in result.stderr and "'bot.sources.status'" in result.stderr, result.stderr
