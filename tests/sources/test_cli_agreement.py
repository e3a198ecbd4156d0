"""Guardian's status and plan agree with what the real Prisma and Supabase CLIs would conclude, after successes,
failures, the CLIs' own repairs, Guardian's rollbacks, crashes, edits, out-of-order files and odd names.

The database is set up exactly as each CLI's source writes it (tests/sources/cli_oracle.py, which cites the source
file by file), or as Guardian writes it; the CLI's conclusion is re-derived from the rows with the CLI's rules and
compared with compute_status / plannable, the functions behind `guardian status` and `/migrate plan <env> pending`.
"""
from __future__ import annotations

import psycopg
import pytest

from bot.errors import SourceError
from bot.sources.apply import ApplyError, apply_migration, mark_reverted, record_started
from bot.sources.layouts import load_snapshot
from bot.sources.ledgers import LedgerError, read_ledger
from bot.sources.models import MigrationState as S
from bot.sources.status import compute_status, plannable
from cli_oracle import (
    CliError,
    prisma_deploy,
    prisma_deploy_plan,
    prisma_resolve_applied,
    prisma_resolve_rolled_back,
    prisma_rows,
    prisma_status,
    supabase_local,
    supabase_pending,
    supabase_push,
    supabase_remote,
    supabase_repair,
)

PRISMA = "prisma/migrations"
SUPA = "supabase/migrations"
INIT = "20240101000000_init"
EMAIL = "20240102000000_add_email"
INDEX = "20240103000000_add_index"
GOOD = {
    INIT: "CREATE TABLE account (id int PRIMARY KEY);\n",
    EMAIL: "ALTER TABLE account ADD COLUMN email text;\n",
    INDEX: "CREATE INDEX account_email ON account (email);\n",
}
BROKEN_EMAIL = "ALTER TABLE account ADD COLUMN email text;\nALTER TABLE no_such_table ADD COLUMN x int;\n"


# ------------------------------------------------------------------------------------------------ helpers
def _prisma_repo(repo, files: dict[str, str]) -> None:
    for name, sql in files.items():
        repo.write(f"{PRISMA}/{name}/migration.sql", sql)
    repo.write(f"{PRISMA}/migration_lock.toml", 'provider = "postgresql"\n')
    repo.commit()


def _guardian(conn, cfg):
    snap = load_snapshot(cfg)
    report = compute_status(snap, read_ledger(conn, cfg.layout))
    return snap, report, {m.ledger_name or m.version: m.state for m in report.migrations}


def assert_prisma_agrees(conn, cfg):
    """Guardian's status and plan against `migrate deploy` and `migrate status` on the same rows and folders."""
    snap, report, states = _guardian(conn, cfg)
    rows = prisma_rows(conn)
    folders = {m.ledger_name: m.sql for m in snap.migrations}
    verdict, names = prisma_deploy_plan(rows, list(folders))
    status = prisma_status(rows, folders)
    failed = sorted(n for n, s in states.items() if s is S.FAILED)
    assert failed == sorted(set(status.failed))
    if verdict == "P3009":
        assert failed == sorted(set(names))
        with pytest.raises(SourceError) as refused:
            plannable(report, "prod")
        assert refused.value.code == "failed-migration-blocks"
        for name in names:
            assert f'`npx prisma migrate resolve --rolled-back "{name}"`' in refused.value.message
    else:
        assert failed == []
        assert plannable(report, "prod") == names  # the same migrations, in the same order, as the next deploy
    applied = [n for n in folders if any(r["migration_name"] == n and r["finished_at"] is not None
                                         and r["rolled_back_at"] is None for r in rows)]
    assert [n for n, s in states.items() if s in (S.APPLIED, S.MODIFIED)] == applied
    return verdict, names, status, states, report


def _apply(conn, layout, snap, names, **kw):
    for m in snap.migrations:
        if (m.ledger_name if layout == "prisma" else m.version) in names:
            apply_migration(conn, layout, m, **kw)


@pytest.fixture
def prisma_cfg(git_repo, project):
    return lambda files: (_prisma_repo(git_repo, files), project(git_repo, "prisma", PRISMA))[1]


@pytest.fixture
def conn(target_db_url):
    with psycopg.connect(target_db_url, autocommit=True) as c:
        yield c


# ------------------------------------------------------------------------------------------------ Prisma
def test_prisma_success_by_the_cli_and_by_guardian(prisma_cfg, conn):
    cfg = prisma_cfg(GOOD)
    assert prisma_deploy(conn, {INIT: GOOD[INIT]}) == [INIT]  # the CLI applied the first
    verdict, names, _, states, _ = assert_prisma_agrees(conn, cfg)
    assert (verdict, names) == ("ok", [EMAIL, INDEX]) and states[INIT] is S.APPLIED
    _apply(conn, "prisma", load_snapshot(cfg), {EMAIL, INDEX})  # Guardian applies the rest
    verdict, names, status, states, _ = assert_prisma_agrees(conn, cfg)
    assert (verdict, names) == ("ok", []) and status.unapplied == [] and status.edited == []
    assert set(states.values()) == {S.APPLIED}


@pytest.mark.parametrize("who", ["cli", "guardian"])
def test_prisma_failure_blocks_as_p3009_with_the_exact_command(prisma_cfg, conn, who):
    cfg = prisma_cfg({INIT: GOOD[INIT], EMAIL: BROKEN_EMAIL})
    if who == "cli":
        with pytest.raises(CliError, match="P3018"):
            prisma_deploy(conn, {INIT: GOOD[INIT], EMAIL: BROKEN_EMAIL})
    else:
        _apply(conn, "prisma", load_snapshot(cfg), {INIT})
        with pytest.raises(ApplyError):
            _apply(conn, "prisma", load_snapshot(cfg), {EMAIL})
    verdict, names, _, states, _ = assert_prisma_agrees(conn, cfg)
    assert (verdict, names) == ("P3009", [EMAIL]) and states[EMAIL] is S.FAILED
    with pytest.raises(CliError, match="P3009"):  # and the CLI itself refuses the next deploy
        prisma_deploy(conn, {INIT: GOOD[INIT], EMAIL: BROKEN_EMAIL})


@pytest.mark.parametrize("who", ["cli", "guardian"])
def test_prisma_resolve_rolled_back_then_the_fixed_file_plans_and_applies(prisma_cfg, git_repo, project, conn, who):
    cfg = prisma_cfg({INIT: GOOD[INIT], EMAIL: BROKEN_EMAIL})
    snap = load_snapshot(cfg)
    if who == "cli":
        with pytest.raises(CliError):
            prisma_deploy(conn, {INIT: GOOD[INIT], EMAIL: BROKEN_EMAIL})
    else:
        _apply(conn, "prisma", snap, {INIT})
        with pytest.raises(ApplyError):
            _apply(conn, "prisma", snap, {EMAIL}, request_id="r1")
    prisma_resolve_rolled_back(conn, EMAIL)  # the command Guardian named
    verdict, names, _, states, report = assert_prisma_agrees(conn, cfg)
    assert (verdict, names) == ("ok", [EMAIL]) and states[EMAIL] is S.PENDING
    assert "rolled back at" in report.migrations[1].detail
    # the team fixes the file on the branch: still pending for Guardian and for deploy
    _prisma_repo(git_repo, {EMAIL: GOOD[EMAIL]})
    verdict, names, status, states, _ = assert_prisma_agrees(conn, cfg)
    assert (verdict, names) == ("ok", [EMAIL]) and states[EMAIL] is S.PENDING
    # `migrate status` compares the FIRST row of a name (the rolled-back one) and calls it edited (prisma#9829)
    # while listing nothing as unapplied; Guardian follows deploy, which applies it
    assert status.edited == [EMAIL] and status.unapplied == []
    _apply(conn, "prisma", load_snapshot(cfg), {EMAIL})
    verdict, names, _, states, _ = assert_prisma_agrees(conn, cfg)
    assert (verdict, names) == ("ok", []) and states[EMAIL] is S.APPLIED
    assert prisma_deploy(conn, {INIT: GOOD[INIT], EMAIL: GOOD[EMAIL]}) == []  # the CLI agrees: nothing to do


def test_prisma_resolve_applied_after_finishing_by_hand(prisma_cfg, conn):
    cfg = prisma_cfg({INIT: GOOD[INIT], EMAIL: BROKEN_EMAIL})
    with pytest.raises(CliError):
        prisma_deploy(conn, {INIT: GOOD[INIT], EMAIL: BROKEN_EMAIL})
    conn.execute("ALTER TABLE account ADD COLUMN email text")  # finished by hand
    prisma_resolve_applied(conn, EMAIL, BROKEN_EMAIL)
    verdict, names, status, states, _ = assert_prisma_agrees(conn, cfg)
    assert (verdict, names) == ("ok", []) and states[EMAIL] is S.APPLIED and status.edited == []
    with pytest.raises(CliError, match="P3008"):
        prisma_resolve_applied(conn, EMAIL, BROKEN_EMAIL)


def test_prisma_guardian_rollback_of_a_succeeded_migration_leaves_three_views_agreeing(prisma_cfg, conn):
    cfg = prisma_cfg(GOOD)
    prisma_deploy(conn, dict(GOOD))
    snap = load_snapshot(cfg)
    with pytest.raises(CliError, match="P3012"):  # the CLI cannot mark a succeeded migration rolled back
        prisma_resolve_rolled_back(conn, INDEX)
    with conn.transaction():
        conn.execute("DROP INDEX account_email")  # the down SQL
        assert mark_reverted(conn, "prisma", snap.get(INDEX)) == 1
    verdict, names, status, states, _ = assert_prisma_agrees(conn, cfg)
    # Guardian: pending; the next deploy: applies it; `migrate status`: lists it as not yet applied
    assert (verdict, names) == ("ok", [INDEX]) and states[INDEX] is S.PENDING and status.unapplied == [INDEX]
    assert not [r for r in prisma_rows(conn) if r["finished_at"] and r["rolled_back_at"]]  # no row Prisma never writes


def test_prisma_guardian_rollback_after_a_failure_is_resolve_rolled_back(prisma_cfg, conn):
    cfg = prisma_cfg({INIT: GOOD[INIT], EMAIL: BROKEN_EMAIL})
    snap = load_snapshot(cfg)
    _apply(conn, "prisma", snap, {INIT})
    with pytest.raises(ApplyError):
        _apply(conn, "prisma", snap, {EMAIL})
    with conn.transaction():
        assert mark_reverted(conn, "prisma", snap.get(EMAIL)) == 1
    failed_row = [r for r in prisma_rows(conn) if r["migration_name"] == EMAIL]
    assert len(failed_row) == 1 and failed_row[0]["rolled_back_at"] is not None and failed_row[0]["finished_at"] is None
    verdict, names, _, states, _ = assert_prisma_agrees(conn, cfg)
    assert (verdict, names) == ("ok", [EMAIL]) and states[EMAIL] is S.PENDING


def test_prisma_crash_mid_mixed_file_reads_as_p3009_everywhere(prisma_cfg, target_db_url):
    mixed = "CREATE INDEX CONCURRENTLY account_id2 ON account (id);\nALTER TABLE account ADD COLUMN note text;\n"
    cfg = prisma_cfg({INIT: GOOD[INIT], "20240104000000_mixed": mixed})
    snap = load_snapshot(cfg)
    crashed = psycopg.connect(target_db_url, autocommit=True)
    _apply(crashed, "prisma", snap, {INIT})
    row_id = record_started(crashed, "prisma", snap.get("20240104000000_mixed"))
    crashed.execute("CREATE INDEX CONCURRENTLY account_id2 ON account (id)")  # the first part commits
    crashed.close()  # the worker dies before the rest
    with psycopg.connect(target_db_url, autocommit=True) as conn:
        row = next(r for r in prisma_rows(conn) if r["id"] == row_id)
        # exactly the row record_migration_started writes, nothing after it
        assert (row["finished_at"], row["logs"], row["rolled_back_at"], row["applied_steps_count"]) == (None, None,
                                                                                                        None, 0)
        verdict, names, _, states, _ = assert_prisma_agrees(conn, cfg)
        assert (verdict, names) == ("P3009", ["20240104000000_mixed"])
        with pytest.raises(LedgerError) as blocked:  # and Guardian's apply refuses it, as deploy does
            apply_migration(conn, "prisma", snap.get("20240104000000_mixed"))
        assert "P3009" in blocked.value.message


def test_prisma_edited_file_after_apply(prisma_cfg, git_repo, conn):
    cfg = prisma_cfg(GOOD)
    prisma_deploy(conn, dict(GOOD))
    _prisma_repo(git_repo, {EMAIL: GOOD[EMAIL].replace("\n", "\r\n")})  # line endings only: Prisma accepts
    _, _, status, states, _ = assert_prisma_agrees(conn, cfg)
    assert status.edited == [] and states[EMAIL] is S.APPLIED
    _prisma_repo(git_repo, {EMAIL: "ALTER TABLE account ADD COLUMN email varchar(200);\n"})
    verdict, names, status, states, _ = assert_prisma_agrees(conn, cfg)
    assert status.edited == [EMAIL] and states[EMAIL] is S.MODIFIED and (verdict, names) == ("ok", [])


def test_prisma_out_of_order_folder_is_applied_by_deploy_and_planned_by_guardian(prisma_cfg, git_repo, conn):
    cfg = prisma_cfg({INIT: GOOD[INIT], INDEX: "CREATE INDEX account_id ON account (id);\n"})
    prisma_deploy(conn, {INIT: GOOD[INIT], INDEX: "CREATE INDEX account_id ON account (id);\n"})
    _prisma_repo(git_repo, {EMAIL: GOOD[EMAIL]})  # merged late, with an older timestamp
    verdict, names, _, states, _ = assert_prisma_agrees(conn, cfg)
    assert (verdict, names) == ("ok", [EMAIL]) and states[EMAIL] is S.OUT_OF_ORDER


def test_prisma_odd_names_in_the_clis_order(git_repo, project, conn):
    # localeCompare (listMigrations.ts): `_` sorts before digits and before `.`; letters after digits, case-blind
    expected = ["1_init", "10_add", "2_x.y", "20240101000000_a", "20240101000000_B", "20240101000000_c", "init"]
    for name in ["10_add", "1_init", "2_x.y", "20240101000000_c", "20240101000000_B", "20240101000000_a", "init"]:
        git_repo.write(f"{PRISMA}/{name}/migration.sql", f"CREATE TABLE \"t_{name}\" (id int);\n")
    git_repo.write(f"{PRISMA}/stray.sql", "SELECT 1;\n")  # not a folder: Prisma ignores it
    git_repo.commit()
    cfg = project(git_repo, "prisma", PRISMA)
    snap = load_snapshot(cfg)
    assert [m.ledger_name for m in snap.migrations] == expected
    verdict, names, *_ = assert_prisma_agrees(conn, cfg)
    assert (verdict, names) == ("ok", expected)
    prisma_deploy(conn, {m.ledger_name: m.sql for m in snap.migrations[:3]})
    _apply(conn, "prisma", snap, set(expected[3:]))  # two folders share one timestamp: both apply, apart
    verdict, names, _, states, _ = assert_prisma_agrees(conn, cfg)
    assert (verdict, names) == ("ok", []) and set(states.values()) == {S.APPLIED}


def test_prisma_p3019_and_p3005(git_repo, project, conn):
    git_repo.write(f"{PRISMA}/{INIT}/migration.sql", GOOD[INIT])
    git_repo.write(f"{PRISMA}/migration_lock.toml", '# comment\nprovider = "mysql"\n')
    git_repo.commit()
    with pytest.raises(SourceError) as switched:
        load_snapshot(project(git_repo, "prisma", PRISMA))
    assert switched.value.code == "provider-switched" and "P3019" in switched.value.message
    git_repo.write(f"{PRISMA}/migration_lock.toml", 'provider = "postgresql"\n')
    git_repo.commit()
    snap = load_snapshot(project(git_repo, "prisma", PRISMA))
    conn.execute("CREATE TABLE legacy (id int)")  # a database that predates the history
    with pytest.raises(CliError, match="P3005"):
        prisma_deploy(conn, {INIT: GOOD[INIT]})
    with pytest.raises(LedgerError) as baseline:
        apply_migration(conn, "prisma", snap.migrations[0])
    assert baseline.value.code == "baseline-needed" and "P3005" in baseline.value.message
    assert "npx prisma migrate resolve --applied" in baseline.value.message
    prisma_resolve_applied(conn, INIT, GOOD[INIT])  # the baseline the message asks for
    verdict, names, _, states, _ = assert_prisma_agrees(conn, project(git_repo, "prisma", PRISMA))
    assert (verdict, names) == ("ok", []) and states[INIT] is S.APPLIED


def test_prisma_url_schema_places_the_ledger_and_the_objects(git_repo, project, target_db_url):
    from bot.config import prisma_schema_url

    git_repo.write(f"{PRISMA}/{INIT}/migration.sql", GOOD[INIT])
    git_repo.commit()
    snap = load_snapshot(project(git_repo, "prisma", PRISMA))
    params = dict(p.split("=", 1) for p in target_db_url.split())
    url = f"postgresql://{params['user']}@{params['host']}:{params['port']}/{params['dbname']}?schema=tenant_a"
    with pytest.raises(psycopg.ProgrammingError):
        psycopg.connect(url)  # libpq refuses Prisma's parameter as it is
    with psycopg.connect(prisma_schema_url(url), autocommit=True) as conn, pytest.raises(LedgerError) as missing:
        apply_migration(conn, "prisma", snap.migrations[0])
    assert missing.value.code == "schema-missing" and "tenant_a" in missing.value.message
    with psycopg.connect(target_db_url, autocommit=True) as admin:
        admin.execute("CREATE SCHEMA tenant_a")
    with psycopg.connect(prisma_schema_url(url), autocommit=True) as conn:
        apply_migration(conn, "prisma", snap.migrations[0])
    with psycopg.connect(target_db_url) as admin:
        placed = admin.execute("SELECT to_regclass('tenant_a._prisma_migrations')::text, "
                               "to_regclass('tenant_a.account')::text, to_regclass('public._prisma_migrations')::text"
                               ).fetchone()
    assert placed == ("tenant_a._prisma_migrations", "tenant_a.account", None)


# ------------------------------------------------------------------------------------------------ Supabase
def _supa_files(repo) -> dict[str, str]:
    folder = repo.path / SUPA
    return {p.name: p.read_text("utf-8") for p in folder.iterdir() if p.is_file()}


def assert_supabase_agrees(conn, repo, cfg):
    snap, report, states = _guardian(conn, cfg)
    files = _supa_files(repo)
    local, skipped = supabase_local(list(files))
    assert [m.path.rsplit("/", 1)[1] for m in snap.migrations] == local
    assert len(snap.skipped) == len(skipped)
    verdict, todo = supabase_pending(local, supabase_remote(conn))
    assert not [s for s in states.values() if s is S.FAILED]  # Supabase has no failed state
    missing = [v for v, s in states.items() if s is S.MISSING_LOCALLY]
    late = [v for v, s in states.items() if s is S.OUT_OF_ORDER]
    if verdict == "missing-local":
        assert missing == todo
    elif verdict == "missing-remote":
        assert late == [f.split("_", 1)[0] for f in todo]
    else:
        assert missing == [] and late == []
        assert plannable(report, "prod") == [f.split("_", 1)[0] for f in todo]
    return verdict, todo, states, report


@pytest.fixture
def supa(git_repo, project):
    def make(files: dict[str, str]):
        for name, sql in files.items():
            git_repo.write(f"{SUPA}/{name}", sql)
        git_repo.commit()
        return project(git_repo, "supabase", SUPA)
    return make


SUPA_GOOD = {
    "20240101000000_init.sql": "-- accounts\ncreate table account (id int primary key);\n",
    "20240102000000_add_email.sql": "alter table account add column email text; -- why\n-- trailing note\n",
}


def test_supabase_success_rows_are_the_clis(supa, git_repo, conn):
    cfg = supa(SUPA_GOOD)
    supabase_push(conn, {"20240101000000_init.sql": SUPA_GOOD["20240101000000_init.sql"]})
    verdict, todo, states, _ = assert_supabase_agrees(conn, git_repo, cfg)
    assert (verdict, todo) == ("ok", ["20240102000000_add_email.sql"]) and states["20240101000000"] is S.APPLIED
    _apply(conn, "supabase", load_snapshot(cfg), {"20240102000000"})
    verdict, todo, states, _ = assert_supabase_agrees(conn, git_repo, cfg)
    assert (verdict, todo) == ("ok", []) and set(states.values()) == {S.APPLIED}
    rows = conn.execute("SELECT version, name, statements FROM supabase_migrations.schema_migrations "
                        "ORDER BY version").fetchall()
    assert rows[1] == ("20240102000000", "add_email", ["alter table account add column email text",
                                                       "-- why\n-- trailing note"])


@pytest.mark.parametrize("who", ["cli", "guardian"])
def test_supabase_failed_file_is_pending_and_the_fixed_file_applies(supa, git_repo, conn, who):
    broken = {"20240102000000_add_email.sql": "alter table nope add column email text;\n"}
    cfg = supa({**SUPA_GOOD, **broken})
    if who == "cli":
        supabase_push(conn, {"20240101000000_init.sql": SUPA_GOOD["20240101000000_init.sql"]})
        with pytest.raises(CliError, match="push-failed"):
            supabase_push(conn, _supa_files(git_repo))
    else:
        _apply(conn, "supabase", load_snapshot(cfg), {"20240101000000"})
        with pytest.raises(ApplyError):
            _apply(conn, "supabase", load_snapshot(cfg), {"20240102000000"})
    verdict, todo, states, report = assert_supabase_agrees(conn, git_repo, cfg)
    assert (verdict, todo) == ("ok", ["20240102000000_add_email.sql"]) and states["20240102000000"] is S.PENDING
    if who == "guardian":
        assert "last attempt failed" in report.migrations[1].detail
    supa({"20240102000000_add_email.sql": SUPA_GOOD["20240102000000_add_email.sql"]})  # fixed on the branch
    verdict, todo, states, report = assert_supabase_agrees(conn, git_repo, cfg)
    assert plannable(report, "prod") == ["20240102000000"]
    if who == "guardian":
        assert "the file has changed since" in report.migrations[1].detail
    _apply(conn, "supabase", load_snapshot(cfg), {"20240102000000"})
    verdict, todo, states, _ = assert_supabase_agrees(conn, git_repo, cfg)
    assert (verdict, todo) == ("ok", []) and states["20240102000000"] is S.APPLIED


def test_supabase_repair_applied_and_reverted(supa, git_repo, conn):
    cfg = supa(SUPA_GOOD)
    supabase_repair(conn, ["20240101000000", "20240102000000"], "applied", _supa_files(git_repo))
    verdict, todo, states, _ = assert_supabase_agrees(conn, git_repo, cfg)
    assert (verdict, todo) == ("ok", []) and set(states.values()) == {S.APPLIED}  # statements match the files
    supabase_repair(conn, ["20240102000000"], "reverted", _supa_files(git_repo))
    verdict, todo, states, _ = assert_supabase_agrees(conn, git_repo, cfg)
    assert todo == ["20240102000000_add_email.sql"] and states["20240102000000"] is S.PENDING


def test_supabase_guardian_rollback_is_repair_reverted(supa, git_repo, conn):
    cfg = supa(SUPA_GOOD)
    snap = load_snapshot(cfg)
    _apply(conn, "supabase", snap, {"20240101000000", "20240102000000"})
    with conn.transaction():
        conn.execute("ALTER TABLE account DROP COLUMN email")
        assert mark_reverted(conn, "supabase", snap.get("20240102000000")) == 1
    verdict, todo, states, _ = assert_supabase_agrees(conn, git_repo, cfg)
    assert todo == ["20240102000000_add_email.sql"] and states["20240102000000"] is S.PENDING
    assert supabase_push(conn, _supa_files(git_repo)) == ["20240102000000_add_email.sql"]  # the CLI re-applies it


def test_supabase_edited_file_is_seen_from_the_clis_own_row(supa, git_repo, conn):
    cfg = supa(SUPA_GOOD)
    supabase_push(conn, dict(SUPA_GOOD))  # rows written by the CLI alone: Guardian has no sidecar for them
    supa({"20240102000000_add_email.sql": "alter table account add column email varchar(5);\n"})
    verdict, todo, states, _ = assert_supabase_agrees(conn, git_repo, cfg)
    # the CLI has nothing to push (it keeps no checksum); Guardian reads its statements column and flags the edit
    assert (verdict, todo) == ("ok", []) and states["20240102000000"] is S.MODIFIED


def test_supabase_out_of_order_and_missing_locally(supa, git_repo, conn):
    cfg = supa(SUPA_GOOD)
    supabase_push(conn, dict(SUPA_GOOD))
    supa({"20240101120000_late.sql": "select 1;\n"})
    verdict, todo, states, _ = assert_supabase_agrees(conn, git_repo, cfg)
    assert (verdict, todo) == ("missing-remote", ["20240101120000_late.sql"])
    assert states["20240101120000"] is S.OUT_OF_ORDER
    assert supabase_push(conn, _supa_files(git_repo), include_all=True) == ["20240101120000_late.sql"]
    (git_repo.path / SUPA / "20240101000000_init.sql").unlink()
    git_repo.commit()
    verdict, todo, states, _ = assert_supabase_agrees(conn, git_repo, cfg)
    assert (verdict, todo) == ("missing-local", ["20240101000000"]) and states["20240101000000"] is S.MISSING_LOCALLY


def test_supabase_names_and_skips_as_the_cli(supa, git_repo, conn):
    legacy = {"20200101000000_init.sql": "create table old (id int);\n", "notes.md": "hi\n",
              "create_users.sql": "select 1;\n", "20240101000000_a.sql": "select 1;\n"}
    cfg = supa(legacy)
    snap, _, _ = _guardian(conn, cfg)
    # the legacy init is first in the folder: skipped; the others do not match the pattern: skipped with a warning
    assert [m.version for m in snap.migrations] == ["20240101000000"] and len(snap.skipped) == 3
    assert any("create_users.sql" in w and "<timestamp>_name.sql" in w for w in snap.skipped)
    assert_supabase_agrees(conn, git_repo, cfg)
    supa({".gitkeep": ""})  # now .gitkeep is the first entry, and the legacy init is applied by the CLI
    snap, _, _ = _guardian(conn, cfg)
    assert [m.version for m in snap.migrations] == ["20200101000000", "20240101000000"]
    assert_supabase_agrees(conn, git_repo, cfg)


def test_prisma_retry_resolves_only_the_same_requests_rolled_back_attempt(prisma_cfg, conn):
    cfg = prisma_cfg({INIT: GOOD[INIT], "20240102000000_team": "ALTER TABLE account ADD COLUMN t int REFERENCES team (id);\n"})
    snap = load_snapshot(cfg)
    _apply(conn, "prisma", snap, {INIT})
    with pytest.raises(ApplyError):
        apply_migration(conn, "prisma", snap.migrations[1], request_id="7")
    conn.execute("CREATE TABLE team (id int PRIMARY KEY)")
    with pytest.raises(LedgerError, match="P3009"):  # another request does not get to resolve it
        apply_migration(conn, "prisma", snap.migrations[1], request_id="8")
    apply_migration(conn, "prisma", snap.migrations[1], request_id="7")  # the same request's retry does
    verdict, names, _, states, _ = assert_prisma_agrees(conn, cfg)
    assert (verdict, names) == ("ok", []) and states["20240102000000_team"] is S.APPLIED
    assert [r["rolled_back_at"] is not None for r in prisma_rows(conn) if r["migration_name"].endswith("team")] == [
        True, False]
