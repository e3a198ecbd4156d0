"""What a migrations folder holds, per layout (prisma, supabase, sql), in the order each tool applies it.

Usage::

    snapshot = load_snapshot(config.project)                 # at the configured branch, pinned sha
    snapshot = load_snapshot(config.project, ref="v1.2")     # at another ref
    [m.version for m in snapshot.migrations]
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from bot.config import ProjectConfig
from bot.errors import SourceError
from bot.sources.files import FileEntry, GitReader, WorkingTreeReader
from bot.sources.models import Migration, SourceSnapshot

_SUPABASE_FILE = re.compile(r"^([0-9]+)_(.*)\.sql$")
_SQL_FILE = re.compile(r"^(\d+)_([A-Za-z0-9][A-Za-z0-9_\-]*?)(\.down|\.verify)?\.sql$")
SUPABASE_LEGACY_INIT_BEFORE = "20211209000000"  # the CLI skips an older first `<ts>_init.sql`

Reader = GitReader | WorkingTreeReader


def load_snapshot(project: ProjectConfig, ref: str | None = None) -> SourceSnapshot:
    """Discover the project's migrations at ``ref`` (default: project.branch), or on disk if working_tree."""
    if project.working_tree and ref is None:
        reader: Reader = WorkingTreeReader(Path(project.repo), project.path)
    else:
        reader = GitReader(Path(project.repo), ref or project.branch, project.path)
    skipped: list[str] = []
    if project.layout == "supabase":
        migrations = _supabase(reader, reader.list(), project.max_file_bytes, skipped)
    else:
        build = {"prisma": _prisma, "sql": _plain}[project.layout]
        migrations = build(reader, reader.list(), project.max_file_bytes)
    return SourceSnapshot(
        layout=project.layout,
        repo=str(project.repo),
        folder=str(reader.folder),
        ref=reader.ref,
        commit=reader.commit,
        migrations=tuple(migrations),
        skipped=tuple(skipped),
    )


def _read_texts(reader: Reader, entries: list[FileEntry], max_bytes: int) -> dict[str, tuple[str, bytes]]:
    for entry in entries:
        if entry.size > max_bytes:
            raise SourceError(
                f"{reader.describe(entry.rel)} is {entry.size} bytes, over project.max_file_bytes ({max_bytes}); "
                "split the migration or raise the limit",
                code="file-too-large",
            )
    texts = {}
    for rel, data in reader.read(entries).items():
        if len(data) > max_bytes:
            raise SourceError(
                f"{reader.describe(rel)} is {len(data)} bytes, over project.max_file_bytes ({max_bytes}); split "
                "the migration or raise the limit",
                code="file-too-large",
            )
        try:
            texts[rel] = (data.decode("utf-8"), data)
        except UnicodeDecodeError as exc:
            raise SourceError(
                f"{reader.describe(rel)} is not UTF-8 (invalid byte at offset {exc.start}); re-save it as UTF-8",
                code="not-utf8",
            ) from None
        nul = data.find(b"\x00")
        if nul >= 0:  # libpq sends SQL as a C string: PostgreSQL would run only what precedes the NUL
            raise SourceError(
                f"{reader.describe(rel)} holds a NUL byte at offset {nul}, which PostgreSQL cannot "
                "take in SQL text (only what precedes it would run); remove it and commit again",
                code="nul-byte",
            )
    return texts


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _duplicate(reader: Reader, version: str, first: str, second: str) -> SourceError:
    return SourceError(
        f"version {version} is used twice ({reader.describe(first)} and {reader.describe(second)}); give one "
        "of them a new version",
        code="duplicate-version",
    )


def _bad_name(reader: Reader, rel: str, expected: str) -> SourceError:
    return SourceError(
        f"{reader.describe(rel)} does not follow the layout ({expected}); rename or move it", code="bad-name"
    )


# ICU root collation order of the printable ASCII characters (CLDR root, alternate=non-ignorable): what Node's
# String.prototype.localeCompare gives with the default locale. Letters compare case-blind first, lower before upper.
_ICU_ASCII = "_-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$0123456789aAbBcCdDeEfFgGhHiIjJkKlLmMnNoOpPqQrRsStTuUvVwWxXyYzZ"
_PRIMARY = {ch: i for i, ch in enumerate(_ICU_ASCII)}
for _ch in "abcdefghijklmnopqrstuvwxyz":
    _PRIMARY[_ch.upper()] = _PRIMARY[_ch]


def locale_compare_key(name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Sort key for `a.localeCompare(b)` as the Prisma CLI orders migration folders (packages/migrate
    listMigrations.ts); ``1_init`` sorts before ``10_add`` (`_` before digits), where code points put it after.
    Characters outside printable ASCII sort after it, by code point."""
    primary = tuple(_PRIMARY.get(ch, 1000 + ord(ch)) for ch in name)
    tertiary = tuple(1 if ch.isupper() else 0 for ch in name)
    return primary, tertiary


def _prisma(reader: Reader, entries: list[FileEntry], max_bytes: int) -> list[Migration]:
    """Every folder is a migration named by the folder, in `localeCompare` order, as the Prisma CLI lists them
    (listMigrations.ts: every directory, no name rule, files beside them ignored). The version shown is the part
    before the first `_` (the whole name when there is none); the ledger key is the folder name."""
    dirs: dict[str, FileEntry | None] = {}
    companions: dict[tuple[str, str], FileEntry] = {}  # (folder, "down.sql" | "verify.sql") -> file
    for entry in entries:
        head, sep, tail = entry.rel.partition("/")
        if not sep:
            continue  # migration_lock.toml, README, .gitkeep, a stray .sql: Prisma reads only directories
        dirs.setdefault(head, None)
        if tail == "migration.sql":
            dirs[head] = entry
        elif tail in ("down.sql", "verify.sql"):  # Guardian's companions; Prisma ignores them
            companions[(head, tail)] = entry
    lock = next((e for e in entries if e.rel == "migration_lock.toml"), None)
    if lock is not None:
        _check_lock_provider(reader, lock, max_bytes)
    wanted: list[tuple[str, FileEntry]] = []
    for folder in sorted(dirs, key=locale_compare_key):
        entry = dirs[folder]
        if entry is None:
            raise SourceError(
                f"{reader.describe(folder)} has no migration.sql, so `prisma migrate deploy` would fail on it too; "
                "add it or remove the folder",
                code="missing-migration-sql",
            )
        if len(folder.encode("utf-8")) > 255:
            raise _bad_name(reader, folder, "a folder name that fits _prisma_migrations.migration_name (255 bytes)")
        wanted.append((folder, entry))
    extra = [companions[k] for k in sorted(companions) if k[0] in {w[0] for w in wanted}]
    texts = _read_texts(reader, [w[1] for w in wanted] + extra, max_bytes)

    def companion(folder: str, name: str) -> tuple[str | None, str | None]:
        entry = companions.get((folder, name))
        return (reader.describe(entry.rel), texts[entry.rel][0]) if entry else (None, None)

    result = []
    for folder, entry in wanted:
        sql = texts[entry.rel][0]
        version, _, name = folder.partition("_")
        down_path, down_sql = companion(folder, "down.sql")
        verify_path, verify_sql = companion(folder, "verify.sql")
        result.append(Migration(
            version=version, name=name, ledger_name=folder,
            path=reader.describe(entry.rel), sql=sql, sha256=_sha(texts[entry.rel][1]),
            size=len(texts[entry.rel][1]), down_path=down_path, down_sql=down_sql or down_section(sql),
            verify_path=verify_path, verify_sql=verify_sql,
        ))
    return result


def lock_provider(text: str) -> str:
    """The provider in migration_lock.toml, read as prisma-engines reads it (migrations_directory.rs
    read_provider_from_lock_file): the first line starting with `provider`, `provider = ` and quotes trimmed."""
    line = next((ln for ln in text.splitlines() if ln.startswith("provider")), None)
    if line is None:
        return "<PROVIDER NOT FOUND>"
    if line.startswith("provider = "):
        line = line[len("provider = "):]
    return line.strip('"')


def _check_lock_provider(reader: Reader, lock: FileEntry, max_bytes: int) -> None:
    """Prisma's P3019: the lock file names another provider than PostgreSQL, so every Prisma command refuses."""
    text = _read_texts(reader, [lock], max_bytes)[lock.rel][0]
    provider = lock_provider(text)
    if provider != "postgresql":
        raise SourceError(
            f"{reader.describe(lock.rel)} says provider {provider!r}, not 'postgresql': Prisma refuses this history "
            "(P3019, the provider was switched). Point the project at the PostgreSQL migrations, or start a new "
            "history for this provider with `npx prisma migrate dev`",
            code="provider-switched",
        )


_DOWN_MARK = re.compile(r"^\s*--\s*down:\s?(.*)$", re.IGNORECASE)


def down_section(sql: str) -> str | None:
    """The down SQL written as `-- down: <sql>` comment lines in a migration (commented, so the up run skips it)."""
    lines = [m.group(1) for m in map(_DOWN_MARK.match, sql.splitlines()) if m]
    text = "\n".join(lines).strip()
    return text + "\n" if text else None


_SUPABASE_LEGACY_INIT = re.compile(r"([0-9]{14})_init\.sql")  # unanchored, as pkg/migration/list.go has it


def _supabase(reader: Reader, entries: list[FileEntry], max_bytes: int, skipped: list[str]) -> list[Migration]:
    """`<digits>_<name>.sql` directly in the folder, in file-name order, as `supabase db push` reads them
    (pkg/migration/list.go ListLocalMigrations): any other entry is skipped with a warning (appended to
    ``skipped``), and a pre-2021-12-09 `<ts>_init.sql` is skipped only when it is the folder's first entry
    (directories and dot files count)."""
    wanted: list[tuple[re.Match[str], FileEntry]] = []
    seen: dict[str, str] = {}
    top = sorted({e.rel.partition("/")[0] for e in entries})
    files = {e.rel: e for e in entries if "/" not in e.rel}
    for index, name in enumerate(top):
        entry = files.get(name)
        if entry is None:
            continue  # a directory: the CLI passes over it
        if index == 0:
            legacy = _SUPABASE_LEGACY_INIT.search(name)
            if legacy and int(legacy.group(1)) < int(SUPABASE_LEGACY_INIT_BEFORE):
                skipped.append(f"{reader.describe(name)}: skipped, as the Supabase CLI skips a legacy first "
                               "`<timestamp>_init.sql` (rename it to apply it)")
                continue
        match = _SUPABASE_FILE.match(name)
        if not match:
            skipped.append(f"{reader.describe(name)}: skipped, as the Supabase CLI skips it (file name must match "
                           "`<timestamp>_name.sql`)")
            continue
        if match.group(1) in seen:
            raise _duplicate(reader, match.group(1), seen[match.group(1)], name)
        seen[match.group(1)] = name
        wanted.append((match, entry))
    texts = _read_texts(reader, [w[1] for w in wanted], max_bytes)
    return [
        Migration(
            version=m.group(1), name=m.group(2), ledger_name=m.group(1), path=reader.describe(e.rel),
            sql=texts[e.rel][0], sha256=_sha(texts[e.rel][1]), size=len(texts[e.rel][1]),
            down_sql=down_section(texts[e.rel][0]),
        )
        for m, e in wanted
    ]


def _plain(reader: Reader, entries: list[FileEntry], max_bytes: int) -> list[Migration]:
    """`<version>_<name>.sql` (+ `.down.sql`, `.verify.sql`), ordered by the version's numeric value."""
    groups: dict[str, dict[str, FileEntry]] = {}
    names: dict[str, tuple[str, str]] = {}  # numeric version -> (written version, first file)
    for entry in sorted(entries, key=lambda e: e.rel):
        if "/" in entry.rel or not entry.rel.endswith(".sql"):
            continue
        match = _SQL_FILE.match(entry.rel)
        if not match:
            raise _bad_name(reader, entry.rel, "<version>_<name>.sql with optional .down.sql and .verify.sql")
        version, name, kind = match.group(1), match.group(2), (match.group(3) or ".up")[1:]
        key = str(int(version))
        stem = f"{version}_{name}"
        if key in names and names[key][0] != stem:
            raise _duplicate(reader, version, names[key][1], entry.rel)
        names.setdefault(key, (stem, entry.rel))
        groups.setdefault(key, {})[kind] = entry
    for key, group in groups.items():
        if "up" not in group:
            orphan = next(iter(group.values()))
            raise SourceError(
                f"{reader.describe(orphan.rel)} has no matching {names[key][0]}.sql; add the migration or "
                "remove the companion file",
                code="orphan-companion",
            )
    texts = _read_texts(reader, [e for g in groups.values() for e in g.values()], max_bytes)
    result = []
    for key in sorted(groups, key=int):
        group, stem = groups[key], names[key][0]
        version, _, name = stem.partition("_")
        up, down, verify = group["up"], group.get("down"), group.get("verify")
        result.append(
            Migration(
                version=version, name=name, ledger_name=version, path=reader.describe(up.rel),
                sql=texts[up.rel][0], sha256=_sha(texts[up.rel][1]), size=len(texts[up.rel][1]),
                down_path=reader.describe(down.rel) if down else None,
                down_sql=texts[down.rel][0] if down else down_section(texts[up.rel][0]),
                verify_path=reader.describe(verify.rel) if verify else None,
                verify_sql=texts[verify.rel][0] if verify else None,
            )
        )
    return result

