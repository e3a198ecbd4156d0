"""Reading a migrations folder out of a git commit (pinned sha) or the working tree, refusing escapes."""
from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bot.errors import SourceError

_SYMLINK = "120000"
_TREE = "040000"


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A regular file under the migrations folder; ``rel`` is relative to that folder."""

    rel: str
    size: int
    oid: str | None = None  # git blob id, None for the working tree


def safe_folder(folder: str) -> PurePosixPath:
    """The configured folder as a clean relative path; ``..`` or an absolute path is refused."""
    path = PurePosixPath(folder.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or folder.strip() == "":
        raise SourceError(
            f"migrations folder {folder!r} leaves the repository; set project.path to a folder inside it",
            code="path-escape",
        )
    return PurePosixPath(*[p for p in path.parts if p not in ("", ".")]) if path.parts else PurePosixPath(".")


def _git(repo: Path, *args: str, input_: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", "-C", str(repo), *args], input=input_, capture_output=True, check=False
    )


class GitReader:
    """Files of ``folder`` at one commit. ``GitReader(repo, 'main', 'prisma/migrations').commit`` is the sha."""

    def __init__(self, repo: Path, ref: str, folder: str) -> None:
        self.repo = Path(repo)
        self.folder = safe_folder(folder)
        if not (self.repo / ".git").exists() and _git(self.repo, "rev-parse", "--git-dir").returncode != 0:
            raise SourceError(
                "project.repo is not a git repository; set it to a local checkout",
                code="not-a-repository",
            )
        if not ref or ref.startswith("-") or any(c in ref for c in "\0\n"):
            raise SourceError(f"invalid git ref {ref!r}; name a branch, tag or commit", code="unknown-ref")
        proc = _git(self.repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
        if proc.returncode != 0:
            raise SourceError(
                f"git ref {ref!r} is not a commit in the repository; fetch it or name an existing branch, tag or sha",
                code="unknown-ref",
            )
        self.ref = ref
        self.commit = proc.stdout.decode().strip()
        self._check_folder()

    def _check_folder(self) -> None:
        parts = self.folder.parts
        if not parts or parts == (".",):
            return
        prefixes = [str(PurePosixPath(*parts[: i + 1])) for i in range(len(parts))]
        for prefix in prefixes:  # one call each: ls-tree with several paths lists only the deepest
            proc = _git(self.repo, "ls-tree", "-z", "--full-tree", self.commit, "--", prefix)
            line = proc.stdout.split(b"\0")[0]
            mode = line.split()[0].decode() if line else None
            if mode == _SYMLINK:
                raise SourceError(
                    f"{prefix} is a symbolic link at commit {self.commit[:12]}; migrations must live in real "
                    "folders inside the repository",
                    code="path-escape",
                )
            if mode != _TREE:
                raise SourceError(
                    f"folder {self.folder} does not exist at commit {self.commit[:12]} ({self.ref}); check "
                    "project.path and the ref",
                    code="missing-folder",
                )

    def list(self) -> list[FileEntry]:
        spec = "." if str(self.folder) == "." else f"{self.folder}/"
        proc = _git(self.repo, "ls-tree", "-r", "-z", "-l", "--full-tree", self.commit, "--", spec)
        if proc.returncode != 0:
            raise SourceError(f"git ls-tree failed in the repository: {self._stderr(proc)}")
        entries: list[FileEntry] = []
        prefix = "" if spec == "." else spec
        for line in proc.stdout.split(b"\0"):
            if not line:
                continue
            meta, _, raw_path = line.partition(b"\t")
            mode, kind, oid, size = meta.decode().split()
            path = raw_path.decode("utf-8", "surrogateescape")
            rel = path[len(prefix):]
            if mode == _SYMLINK:
                raise SourceError(
                    f"{path} is a symbolic link; migration files must be regular files inside the repository",
                    code="path-escape",
                )
            if kind != "blob":
                continue  # submodules are not migration files
            entries.append(FileEntry(rel=rel, size=int(size), oid=oid))
        return entries

    def read(self, entries: list[FileEntry]) -> dict[str, bytes]:
        if not entries:
            return {}
        proc = _git(self.repo, "cat-file", "--batch", input_="".join(f"{e.oid}\n" for e in entries).encode())
        if proc.returncode != 0:
            raise SourceError(f"git cat-file failed in the repository: {self._stderr(proc)}")
        out, pos, result = proc.stdout, 0, {}
        for entry in entries:
            header_end = out.index(b"\n", pos)
            size = int(out[pos:header_end].split()[2])
            start = header_end + 1
            result[entry.rel] = out[start:start + size]
            pos = start + size + 1
        return result

    def describe(self, rel: str) -> str:
        return str(self.folder / rel) if str(self.folder) != "." else rel

    def _stderr(self, proc: subprocess.CompletedProcess[bytes]) -> str:
        """git's complaint, naming paths relative to the repository (people never see the server's checkout path)."""
        return _relative(proc.stderr.decode(errors="replace").strip(), self.repo)


def _relative(text: str, repo: Path) -> str:
    for form in {str(repo), str(repo.resolve())}:
        text = text.replace(form + "/", "").replace(form, "the repository")
    return text


class WorkingTreeReader:
    """Files of ``folder`` as they are on disk (project.working_tree = true); symlinks are refused."""

    commit: str | None = None
    ref: str | None = None

    def __init__(self, repo: Path, folder: str) -> None:
        self.repo = Path(repo).resolve()
        self.folder = safe_folder(folder)
        current = self.repo
        for part in self.folder.parts:
            if part == ".":
                continue
            current = current / part
            if current.is_symlink():
                raise SourceError(
                    f"{current.relative_to(self.repo)} is a symbolic link; migrations must live in real folders "
                    "inside the repository",
                    code="path-escape",
                )
        self.root = self.repo / self.folder
        if not self.root.is_dir():
            raise SourceError(
                f"folder {self.folder} does not exist in the repository; check project.path", code="missing-folder"
            )

    def list(self) -> list[FileEntry]:
        entries: list[FileEntry] = []
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            for name in sorted(dirnames + filenames):
                full = Path(dirpath) / name
                info = full.lstat()
                rel = full.relative_to(self.root).as_posix()
                if stat.S_ISLNK(info.st_mode):
                    raise SourceError(
                        f"{self.describe(rel)} is a symbolic link; migration files must be regular files inside "
                        "the repository",
                        code="path-escape",
                    )
                if stat.S_ISREG(info.st_mode):
                    entries.append(FileEntry(rel=rel, size=info.st_size))
            dirnames[:] = [d for d in dirnames if d != ".git"]
        return entries

    def read(self, entries: list[FileEntry]) -> dict[str, bytes]:
        return {e.rel: (self.root / e.rel).read_bytes() for e in entries}

    def describe(self, rel: str) -> str:
        return str(self.folder / rel) if str(self.folder) != "." else rel
