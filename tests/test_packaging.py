"""Where teams already work: a wheel built from a copy of the source in a temporary directory, installed into a
fresh virtual environment by the GitHub Action's own install step; the pre-commit hook's entry and the Action's
lint commands run exactly as declared (.pre-commit-hooks.yaml, action.yml) against a sample repository."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from bot.schema import schema_files

REPO = Path(__file__).resolve().parent.parent
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
# The table form of project.license made setuptools warn at every build and install
LICENSE_WARNINGS = ("project.license` as a TOML table is deprecated", "License classifiers are deprecated")

RISKY = "CREATE INDEX orders_customer_idx ON orders (customer_id);\n"  # no CONCURRENTLY: blocks writes (high)
SAFE = "CREATE INDEX CONCURRENTLY orders_created_idx ON orders (created_at);\n"


@dataclass
class Installed:
    wheel: Path
    venv_bin: Path
    build_log: str
    tmp: Path

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment whose PATH starts with the fresh venv (as $GITHUB_PATH leaves it on a runner)."""
        return {"PATH": f"{self.venv_bin}:/usr/local/bin:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"),
                **{k: v for k, v in os.environ.items() if k.startswith("PIP_")}, **extra}


def _source_copy(dest: Path) -> Path:
    """The files git tracks (what a clone or an sdist holds), without the checkout's venv, caches or build dirs."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=False)
    names = [n for n in listed.stdout.decode().split("\0") if n] if listed.returncode == 0 else []
    if not names:  # not a git checkout: everything but the obvious
        shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info",
                                                                   "__pycache__", ".pytest_cache"))
        return dest
    for name in names:
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def _step(name: str) -> dict:
    action = yaml.safe_load((REPO / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    return next(s for s in action["runs"]["steps"] if s.get("name") == name)


def run_action_step(name: str, *, inputs: dict[str, str], cwd: Path, env: dict[str, str], tmp: Path,
                    context: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """Run one `run:` step of action.yml as the runner does: its env with ${{ … }} expressions filled in from the
    inputs (their declared defaults otherwise) and ``context``, `bash --noprofile --norc -eo pipefail {0}`, and
    GITHUB_OUTPUT / GITHUB_PATH files. Returns the process and the step's outputs."""
    declared = yaml.safe_load((REPO / "action.yml").read_text())["inputs"]
    values = {f"inputs.{k}": inputs.get(k, v.get("default", "")) for k, v in declared.items()} | (context or {})
    step = _step(name)
    assert step["shell"] == "bash"

    def fill(text: str) -> str:
        def one(match: re.Match[str]) -> str:
            assert match.group(1) in values, f"{name}: no value for ${{{{ {match.group(1)} }}}}"
            return values[match.group(1)]
        return re.sub(r"\$\{\{\s*([\w.-]+)\s*\}\}", one, text)

    output, path_file = tmp / f"output-{len(list(tmp.glob('output-*')))}", tmp / "github_path"
    output.write_text("")
    script = tmp / "step.sh"
    script.write_text(step["run"])
    step_env = {**env, **{k: fill(str(v)) for k, v in (step.get("env") or {}).items()},
                "GITHUB_OUTPUT": str(output), "GITHUB_PATH": str(path_file), "RUNNER_TEMP": str(tmp)}
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=cwd, env=step_env,
                          capture_output=True, text=True, timeout=600)
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
    return proc, outputs


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("wheel")
    src = _source_copy(tmp / "src")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp / "dist"), str(src)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = (tmp / "dist").glob("migration_guardian-*.whl")
    # the Action's install step, given the wheel: a fresh venv under $RUNNER_TEMP, put on $GITHUB_PATH
    runner = tmp / "runner"
    runner.mkdir()
    proc, _ = run_action_step("Install Migration Guardian", inputs={"package": str(wheel)}, cwd=runner,
                              env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
                                   "HOME": os.environ.get("HOME", "/root"),
                                   **{k: v for k, v in os.environ.items() if k.startswith("PIP_")}},
                              tmp=runner, context={"github.action_path": str(src)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    venv_bin = Path((runner / "github_path").read_text().strip())
    assert venv_bin == runner / "guardian-venv" / "bin"
    assert proc.stdout.strip() == f"guardian {VERSION}"  # the step's own check
    return Installed(wheel=wheel, venv_bin=venv_bin, build_log=build.stdout + build.stderr, tmp=tmp)


@pytest.fixture
def sample_repo(tmp_path: Path) -> Path:
    """An application repository: Prisma migrations (one risky, one safe, a down companion), other SQL, a config."""
    repo = tmp_path / "app"
    for name, sql in (("20240101000000_risky_index", RISKY), ("20240102000000_safe_index", SAFE)):
        (repo / "prisma" / "migrations" / name).mkdir(parents=True)
        (repo / "prisma" / "migrations" / name / "migration.sql").write_text(sql)
    (repo / "prisma" / "migrations" / "20240101000000_risky_index" / "down.sql").write_text("DROP TABLE orders;\n")
    (repo / "queries").mkdir()
    (repo / "queries" / "report.sql").write_text("DELETE FROM orders;\n")  # not a migration
    (repo / "guardian.toml").write_text('[project]\nlayout = "prisma"\npath = "prisma/migrations"\n\n'
                                        '[lint]\nfail_on = "high"\n')
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    return repo


# ----------------------------------------------------------------------------------------------- the wheel
def test_wheel_holds_the_package_its_schema_and_license(installed: Installed):
    with zipfile.ZipFile(installed.wheel) as whl:
        names = set(whl.namelist())
        metadata = whl.read(f"migration_guardian-{VERSION}.dist-info/METADATA").decode()
    assert {f"bot/_schema/{f.name}" for f in schema_files()} <= names  # `guardian db upgrade` from the wheel
    assert {"bot/cli.py", "workers/worker.py", "bot/demo/guardian.toml", "bot/devpage/static/index.html"} <= names
    assert f"migration_guardian-{VERSION}.dist-info/licenses/LICENSE" in names
    assert "License-Expression: Apache-2.0" in metadata and f"Version: {VERSION}" in metadata
    assert "Requires-Dist: prometheus-client" in metadata
    assert not any(w in installed.build_log for w in LICENSE_WARNINGS), "the build still warns about the license"
    assert not any(n.startswith(("tests/", "bench/")) for n in names)


def test_installed_wheel_runs_version_lint_and_db_upgrade(installed: Installed, tmp_path: Path, make_database):
    env = installed.env()
    where = subprocess.run([str(installed.venv_bin / "python"), "-c", "import bot; print(bot.__file__)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True)
    assert where.stdout.startswith(str(installed.venv_bin.parent)), where  # the installed copy, not the checkout
    version = subprocess.run(["guardian", "--version"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert (version.returncode, version.stdout) == (0, f"guardian {VERSION}\n")

    (tmp_path / "risky.sql").write_text(RISKY)
    (tmp_path / "safe.sql").write_text(SAFE)
    risky = subprocess.run(["guardian", "lint", "--format", "json", "risky.sql"], cwd=tmp_path, env=env,
                           capture_output=True, text=True)
    assert risky.returncode == 1, risky.stderr
    report = json.loads(risky.stdout)["files"][0]
    assert report["risk"] == "high" and report["statements"][0]["locks"][0]["mode"] == "SHARE"
    safe = subprocess.run(["guardian", "lint", "safe.sql"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert safe.returncode == 0, safe.stdout + safe.stderr

    url = make_database()
    upgrade = subprocess.run(["guardian", "db", "upgrade"], cwd=tmp_path, env={**env, "DATABASE_URL": url},
                             capture_output=True, text=True)
    assert upgrade.returncode == 0, upgrade.stderr
    assert upgrade.stdout.startswith(f"applied {len(schema_files())} schema files")


# ----------------------------------------------------------------------------------------------- pre-commit
def _hook() -> dict:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    return next(h for h in hooks if h["id"] == "guardian-lint")


def _selected(hook: dict, files: list[str]) -> list[str]:
    """The files pre-commit passes the hook: `files` matches and `exclude` does not (re.search, as pre-commit)."""
    return [f for f in files if re.search(hook["files"], f) and not re.search(hook.get("exclude", "^$"), f)]


def _run_hook(hook: dict, repo: Path, files: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [*hook["entry"].split(), *hook.get("args", []), *files]  # pre-commit: entry + args + filenames
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=120)


def test_pre_commit_hook_flags_a_risky_migration_and_passes_a_safe_one(installed: Installed, sample_repo: Path):
    hook = _hook()
    assert hook["language"] == "python" and hook["entry"] == "guardian lint"  # pre-commit pip-installs this repo
    tracked = subprocess.run(["git", "ls-files"], cwd=sample_repo, capture_output=True, text=True).stdout.split()
    selected = _selected(hook, tracked)
    assert selected == ["prisma/migrations/20240101000000_risky_index/migration.sql",
                        "prisma/migrations/20240102000000_safe_index/migration.sql"]  # not down.sql, not queries/
    env = installed.env()

    both = _run_hook(hook, sample_repo, selected, env)
    assert both.returncode == 1, both.stdout + both.stderr
    assert "20240101000000_risky_index/migration.sql" in both.stdout and "CONCURRENTLY" in both.stdout

    safe = _run_hook(hook, sample_repo, [selected[1]], env)
    assert safe.returncode == 0, safe.stdout + safe.stderr

    # the threshold comes from the repository's guardian.toml: at critical, the risky index passes too
    (sample_repo / "guardian.toml").write_text('[lint]\nfail_on = "critical"\n')
    assert _run_hook(hook, sample_repo, selected, env).returncode == 0


# ----------------------------------------------------------------------------------------------- the Action
def test_action_annotates_and_fails_on_a_risky_migration_and_passes_a_safe_one(installed: Installed,
                                                                               sample_repo: Path, tmp_path: Path):
    env = installed.env()
    # default paths: [project] path of the repository's guardian.toml
    proc, out = run_action_step("Which migrations", inputs={}, cwd=sample_repo, env=env, tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert out == {"paths": "prisma/migrations/20240101000000_risky_index/migration.sql "
                            "prisma/migrations/20240102000000_safe_index/migration.sql"}  # not down.sql
    context = {"steps.paths.outputs.paths": out["paths"]}

    lint, _ = run_action_step("guardian lint", inputs={}, cwd=sample_repo, env=env, tmp=tmp_path, context=context)
    assert lint.returncode == 1, lint.stdout + lint.stderr
    errors = [line for line in lint.stdout.splitlines() if line.startswith("::error ")]
    assert errors and all("file=prisma/migrations/20240101000000_risky_index/migration.sql" in e for e in errors)
    assert not any("20240102000000_safe_index" in line for line in errors)  # below the threshold: no error
    assert "down.sql" not in lint.stdout  # Prisma's down.sql is not linted as a migration

    safe_only = {"steps.paths.outputs.paths": "prisma/migrations/20240102000000_safe_index/migration.sql"}
    safe, _ = run_action_step("guardian lint", inputs={}, cwd=sample_repo, env=env, tmp=tmp_path, context=safe_only)
    assert safe.returncode == 0, safe.stdout + safe.stderr

    # fail-on from the workflow wins over the config
    lenient, _ = run_action_step("guardian lint", inputs={"fail-on": "critical"}, cwd=sample_repo, env=env,
                                 tmp=tmp_path, context=context)
    assert lenient.returncode == 0 and "::error " in lenient.stdout

    sarif, sarif_out = run_action_step("SARIF for code scanning", inputs={"sarif": "true"}, cwd=sample_repo, env=env,
                                       tmp=tmp_path, context=context)
    assert sarif.returncode == 0, sarif.stderr  # findings are the next step's failure, not this one's
    assert sarif_out == {"file": "guardian.sarif"}
    doc = json.loads((sample_repo / "guardian.sarif").read_text())
    assert doc["version"] == "2.1.0" and doc["runs"][0]["results"]
    located = doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert located.endswith("20240101000000_risky_index/migration.sql")


def test_pre_commit_itself_installs_and_runs_the_hook_from_this_repository(sample_repo: Path, tmp_path: Path):
    """pre-commit clones the hook repository at a commit, pip-installs it into an environment of its own and runs
    the hook on the files its `files`/`exclude` select: a commit with the risky migration is refused."""
    hooks = _source_copy(tmp_path / "hook-repo")
    git = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(hooks)], check=True)
    subprocess.run([*git, "-C", str(hooks), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(hooks), "commit", "-q", "-m", "hook"], check=True)
    rev = subprocess.run(["git", "-C", str(hooks), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    (sample_repo / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {hooks}\n    rev: {rev}\n    hooks:\n      - id: guardian-lint\n")
    subprocess.run(["git", "-C", str(sample_repo), "add", "-A"], check=True)
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path),
           "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-cache"),
           **{k: v for k, v in os.environ.items() if k.startswith("PIP_")}}
    run = [sys.executable, "-m", "pre_commit", "run", "guardian-lint", "--all-files", "--color", "never"]

    refused = subprocess.run(run, cwd=sample_repo, env=env, capture_output=True, text=True, timeout=900)
    assert refused.returncode == 1, refused.stdout[-3000:] + refused.stderr[-3000:]
    assert "Failed" in refused.stdout and "20240101000000_risky_index/migration.sql" in refused.stdout
    assert "down.sql" not in refused.stdout and "queries/report.sql" not in refused.stdout

    shutil.rmtree(sample_repo / "prisma" / "migrations" / "20240101000000_risky_index")
    subprocess.run(["git", "-C", str(sample_repo), "add", "-A"], check=True)
    passed = subprocess.run(run, cwd=sample_repo, env=env, capture_output=True, text=True, timeout=900)
    assert passed.returncode == 0, passed.stdout[-3000:] + passed.stderr[-3000:]
    assert "Passed" in passed.stdout
