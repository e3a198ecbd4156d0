"""Real git repositories in tmp_path (subprocess git) holding migration projects, for the sources tests."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bot.config import ProjectConfig

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DOCUMENSO = Path("/work/shared/corpus/documenso-prisma")


class GitRepo:
    """A throwaway repository: ``write`` files, ``commit`` them, get the sha back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")
        self.git("config", "user.email", "tests@guardian.invalid")
        self.git("config", "user.name", "Guardian Tests")
        self.git("config", "core.autocrlf", "false")

    def git(self, *args: str) -> str:
        proc = subprocess.run(["git", "-C", str(self.path), *args], capture_output=True, check=True)
        return proc.stdout.decode().strip()

    def write(self, rel: str, content: str | bytes) -> Path:
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        return target

    def copy_tree(self, source: Path, rel: str) -> None:
        shutil.copytree(source, self.path / rel, dirs_exist_ok=True)

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def git_repo(tmp_path: Path) -> GitRepo:
    return GitRepo(tmp_path / "repo")


@pytest.fixture
def new_repo(tmp_path: Path):
    """Factory: ``new_repo("name") -> GitRepo``."""
    return lambda name: GitRepo(tmp_path / name)


@pytest.fixture
def documenso_repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "documenso")
    repo.copy_tree(DOCUMENSO, "prisma/migrations")
    repo.write("prisma/migrations/migration_lock.toml", 'provider = "postgresql"\n')
    repo.commit("documenso migrations")
    return repo


@pytest.fixture
def supabase_repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "supa")
    repo.copy_tree(FIXTURES / "supabase_project", ".")
    repo.commit("supabase project")
    return repo


@pytest.fixture
def sql_repo(tmp_path: Path) -> GitRepo:
    repo = GitRepo(tmp_path / "plain")
    repo.copy_tree(FIXTURES / "sql_project", ".")
    repo.commit("plain sql project")
    return repo


@pytest.fixture
def project():
    """Factory: ``project(repo, layout, path, **extra) -> ProjectConfig``."""

    def make(repo: GitRepo, layout: str, path: str, **extra: object) -> ProjectConfig:
        return ProjectConfig(repo=repo.path, layout=layout, path=path, **extra)

    return make
