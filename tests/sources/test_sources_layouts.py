"""Discovery of migrations per layout from real git repositories, at pinned commits and on disk."""
from __future__ import annotations

import hashlib
import os

import pytest

from bot.errors import SourceError
from bot.sources.layouts import load_snapshot


def test_prisma_documenso_discovered_in_prisma_order_at_pinned_commit(documenso_repo, project):
    snap = load_snapshot(project(documenso_repo, "prisma", "prisma/migrations"))
    assert snap.commit == documenso_repo.git("rev-parse", "HEAD") and len(snap.commit) == 40
    assert snap.ref == "main" and snap.layout == "prisma"
    assert len(snap.migrations) == 163
    names = [m.ledger_name for m in snap.migrations]
    assert names == sorted(names) and names[0] == "20230404095503_initial_migration"
    first = snap.migrations[0]
    data = (documenso_repo.path / first.path).read_bytes()
    assert first.sha256 == hashlib.sha256(data).hexdigest() and first.sql == data.decode()
    assert first.version == "20230404095503" and first.name == "initial_migration"
    assert first.path == "prisma/migrations/20230404095503_initial_migration/migration.sql"


def test_pinned_commit_does_not_see_a_later_edit(git_repo, project):
    git_repo.write("migrations/1_a.sql", "CREATE TABLE a (id int);\n")
    old = git_repo.commit("one")
    git_repo.write("migrations/1_a.sql", "CREATE TABLE a (id bigint);\n")
    git_repo.write("migrations/2_b.sql", "CREATE TABLE b (id int);\n")
    new = git_repo.commit("two")
    cfg = project(git_repo, "sql", "migrations")
    at_old = load_snapshot(cfg, ref=old)
    assert at_old.commit == old and [m.sql for m in at_old.migrations] == ["CREATE TABLE a (id int);\n"]
    at_head = load_snapshot(cfg)
    assert at_head.commit == new and [m.version for m in at_head.migrations] == ["1", "2"]
    assert at_head.migrations[0].sql.startswith("CREATE TABLE a (id bigint)")
    # an uncommitted edit is invisible to git reads, visible with working_tree = true
    git_repo.write("migrations/3_c.sql", "SELECT 1;\n")
    assert len(load_snapshot(cfg).migrations) == 2
    wt = load_snapshot(project(git_repo, "sql", "migrations", working_tree=True))
    assert wt.commit is None and [m.version for m in wt.migrations] == ["1", "2", "3"]


def test_supabase_layout_order_names_and_skips(supabase_repo, project):
    snap = load_snapshot(project(supabase_repo, "supabase", "supabase/migrations"))
    assert [m.version for m in snap.migrations] == ["20240101000000", "20240102000000", "20240103000000"]
    assert snap.migrations[1].name == "profiles_policies" and snap.migrations[1].ledger_name == "20240102000000"


def test_supabase_skips_a_legacy_first_init_file(git_repo, project):
    git_repo.write("supabase/migrations/20211101000000_init.sql", "select 1;")
    git_repo.write("supabase/migrations/20240101000000_real.sql", "select 2;")
    git_repo.commit()
    snap = load_snapshot(project(git_repo, "supabase", "supabase/migrations"))
    assert [m.version for m in snap.migrations] == ["20240101000000"]


def test_sql_layout_numeric_order_and_companions(sql_repo, project):
    snap = load_snapshot(project(sql_repo, "sql", "db/migrations"))
    assert [m.version for m in snap.migrations] == ["1", "2", "10"]
    one, two, ten = snap.migrations
    assert one.down_sql == "DROP TABLE accounts;\n" and one.down_path == "db/migrations/1_create_accounts.down.sql"
    assert one.verify_sql.startswith("SELECT id, email") and two.verify_sql is None
    assert two.down_sql.startswith("DROP INDEX") and ten.down_sql is None and ten.verify_sql is not None


def test_bom_and_crlf_are_kept_byte_for_byte(git_repo, project):
    raw = b"\xef\xbb\xbfCREATE TABLE t (id int);\r\n"
    git_repo.write("migrations/1_t.sql", raw)
    git_repo.commit()
    m = load_snapshot(project(git_repo, "sql", "migrations")).migrations[0]
    assert m.sha256 == hashlib.sha256(raw).hexdigest() and m.sql.encode() == raw


def _rejects(cfg, code, ref=None):
    with pytest.raises(SourceError) as info:
        load_snapshot(cfg, ref=ref)
    assert info.value.code == code, info.value.message
    return info.value.message


@pytest.mark.parametrize(
    ("layout", "path", "files", "code", "culprit"),
    [
        ("prisma", "prisma/migrations", {"prisma/migrations/20240101000000_x/up.sql": "select 1;"},
         "missing-migration-sql", "20240101000000_x"),
        ("sql", "migrations", {"migrations/v1-init.sql": "select 1;"}, "bad-name", "v1-init.sql"),
        ("sql", "migrations", {"migrations/3_x.down.sql": "select 1;"}, "orphan-companion", "3_x.down.sql"),
        ("supabase", "supabase/migrations", {"supabase/migrations/20240101000000_a.sql": "select 1;",
                                              "supabase/migrations/20240101000000_b.sql": "select 2;"},
         "duplicate-version", "20240101000000_b.sql"),
        ("sql", "migrations", {"migrations/001_a.sql": "select 1;", "migrations/1_b.sql": "select 2;"},
         "duplicate-version", "1_b.sql"),
    ],
)
def test_layout_violations_are_rejected(git_repo, project, layout, path, files, code, culprit):
    for rel, text in files.items():
        git_repo.write(rel, text)
    git_repo.commit()
    message = _rejects(project(git_repo, layout, path), code)
    assert culprit in message


def test_non_utf8_file_is_rejected(git_repo, project):
    git_repo.write("migrations/1_latin.sql", "INSERT INTO t VALUES ('café');".encode("latin-1"))
    git_repo.commit()
    assert "1_latin.sql" in _rejects(project(git_repo, "sql", "migrations"), "not-utf8")


def test_a_file_with_a_nul_byte_is_rejected_naming_it(git_repo, project):
    """libpq would send only what precedes the NUL (and our state database cannot store it): refused at reading."""
    git_repo.write("migrations/1_nul.sql", b"CREATE TABLE t (id int);\x00DROP TABLE users;")
    git_repo.commit()
    message = _rejects(project(git_repo, "sql", "migrations"), "nul-byte")
    assert "1_nul.sql" in message and "offset 24" in message


def test_oversize_file_is_rejected_in_git_and_working_tree(git_repo, project):
    git_repo.write("migrations/1_big.sql", "-- x\n" * 100)
    git_repo.commit()
    assert "max_file_bytes" in _rejects(project(git_repo, "sql", "migrations", max_file_bytes=100), "file-too-large")
    _rejects(project(git_repo, "sql", "migrations", max_file_bytes=100, working_tree=True), "file-too-large")
    assert load_snapshot(project(git_repo, "sql", "migrations", max_file_bytes=500)).migrations


def test_symlinked_file_escaping_the_repository_is_rejected(git_repo, project, tmp_path):
    outside = tmp_path / "secret.sql"
    outside.write_text("DROP TABLE users;")
    git_repo.write("migrations/1_ok.sql", "select 1;")
    os.symlink(outside, git_repo.path / "migrations" / "2_link.sql")
    git_repo.commit()
    assert "2_link.sql" in _rejects(project(git_repo, "sql", "migrations"), "path-escape")
    _rejects(project(git_repo, "sql", "migrations", working_tree=True), "path-escape")


def test_symlinked_folder_and_dotdot_are_rejected(git_repo, project, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "1_a.sql").write_text("select 1;")
    os.symlink(tmp_path / "elsewhere", git_repo.path / "migrations")
    git_repo.commit()
    _rejects(project(git_repo, "sql", "migrations"), "path-escape")
    _rejects(project(git_repo, "sql", "migrations", working_tree=True), "path-escape")
    _rejects(project(git_repo, "sql", "../elsewhere"), "path-escape")
    _rejects(project(git_repo, "sql", "/etc", working_tree=True), "path-escape")


def test_unknown_ref_missing_folder_and_not_a_repository(git_repo, project, tmp_path):
    git_repo.write("migrations/1_a.sql", "select 1;")
    git_repo.commit()
    cfg = project(git_repo, "sql", "migrations")
    assert "no-such-branch" in _rejects(cfg, "unknown-ref", ref="no-such-branch")
    _rejects(cfg, "unknown-ref", ref="--upload-pack=evil")
    _rejects(cfg, "unknown-ref", ref="0" * 40)
    _rejects(project(git_repo, "sql", "db/migrations"), "missing-folder")
    plain = tmp_path / "not_git"
    plain.mkdir()
    from bot.config import ProjectConfig

    _rejects(ProjectConfig(repo=plain, layout="sql", path="."), "not-a-repository")


def test_prisma_companions_and_down_sections(tmp_path):
    import subprocess

    from bot.config import ProjectConfig
    from bot.sources.layouts import load_snapshot

    repo = tmp_path / "r"
    (repo / "prisma/migrations/20240101000000_a").mkdir(parents=True)
    (repo / "prisma/migrations/20240102000000_b").mkdir(parents=True)
    (repo / "prisma/migrations/20240101000000_a/migration.sql").write_text("CREATE TABLE a (id int);\n")
    (repo / "prisma/migrations/20240101000000_a/down.sql").write_text("DROP TABLE a;\n")
    (repo / "prisma/migrations/20240101000000_a/verify.sql").write_text("SELECT count(*) >= 0 FROM a;\n")
    (repo / "prisma/migrations/20240102000000_b/migration.sql").write_text(
        "ALTER TABLE a ADD COLUMN b int;\n-- down: ALTER TABLE a\n-- down:   DROP COLUMN b;\n")
    for args in (["init", "-q", "-b", "main"], ["config", "user.email", "t@e.x"], ["config", "user.name", "t"],
                 ["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    snap = load_snapshot(ProjectConfig(repo=repo, layout="prisma", path="prisma/migrations"))
    a, b = snap.migrations
    assert a.down_sql == "DROP TABLE a;\n" and a.verify_sql.startswith("SELECT count(*)")
    assert a.down_path.endswith("20240101000000_a/down.sql")
    assert b.down_sql == "ALTER TABLE a\n  DROP COLUMN b;\n" and b.verify_sql is None
    assert a.sha256 != b.sha256  # the migration's own bytes, companions excluded
