"""A Prisma-generated migration with its own BEGIN ... COMMIT (what `prisma migrate dev` writes for an enum
change) through the whole pipeline on real PostgreSQL: backup, apply, ledger rows, verify."""
from __future__ import annotations

from bot.models import DbState, RequestStatus
from bot.risk import Context, analyze
from bot.sources.ledgers import PRISMA_DDL
from workers.pipeline import start_run
from workers.plan import plan_parts

# As Prisma 5 generates it when a value is removed from enum Role (the warning comment included).
ENUM_CHANGE = '''/*
  Warnings:

  - The values [GUEST] on the enum `Role` will be removed. If these variants are still used in the database, this will fail.

*/
-- AlterEnum
BEGIN;
CREATE TYPE "Role_new" AS ENUM ('USER', 'ADMIN');
ALTER TABLE "User" ALTER COLUMN "role" DROP DEFAULT;
ALTER TABLE "User" ALTER COLUMN "role" TYPE "Role_new" USING ("role"::text::"Role_new");
ALTER TYPE "Role" RENAME TO "Role_old";
ALTER TYPE "Role_new" RENAME TO "Role";
DROP TYPE "Role_old";
ALTER TABLE "User" ALTER COLUMN "role" SET DEFAULT 'USER';
COMMIT;

-- AlterTable
ALTER TABLE "User" ADD COLUMN "nickname" TEXT;
'''
SETUP = '''CREATE TYPE "Role" AS ENUM ('USER', 'ADMIN', 'GUEST');
CREATE TABLE "User" ("id" SERIAL NOT NULL, "role" "Role" NOT NULL DEFAULT 'USER', CONSTRAINT "User_pkey" PRIMARY KEY ("id"));
INSERT INTO "User" ("role") SELECT 'ADMIN' FROM generate_series(1, 20);
''' + PRISMA_DDL + ";\n"  # a baselined Prisma database (else P3005: a non-empty schema with no history)


def test_prisma_enum_change_with_its_own_begin_commit_runs_like_prisma_runs_it(make_pipeline):
    p = make_pipeline(layout="prisma")
    with p.target() as conn:
        conn.execute(SETUP)
    req = p.request([("20240301000000_drop_guest_role", ENUM_CHANGE)],
                    verify_sql={"20240301000000_drop_guest_role":
                                "SELECT count(*) = 20 FROM \"User\" WHERE role = 'ADMIN'"})
    assert start_run(p.rt, req.id) is True
    p.work()

    done = p.store.get_request(req.id)
    assert done.status is RequestStatus.SUCCEEDED, done.error
    steps = [(s.step, s.status) for s in p.store.list_steps(req.id)]
    assert steps == [("backup", "succeeded"), ("apply", "succeeded"), ("verify", "succeeded")]
    with p.target() as conn:
        rows = conn.execute("SELECT migration_name, finished_at IS NOT NULL, rolled_back_at, logs, "
                            "applied_steps_count FROM _prisma_migrations").fetchall()
        values = conn.execute("SELECT enum_range(NULL::\"Role\")::text").fetchone()[0]
        nickname = conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'User' "
                                "AND column_name = 'nickname'").fetchone()[0]
        sidecar = conn.execute("SELECT succeeded FROM guardian.applied_migrations").fetchall()
    assert rows == [("20240301000000_drop_guest_role", True, None, None, 1)]
    assert values == "{USER,ADMIN}" and nickname == 1
    assert sidecar == [(True,)]


def test_a_failure_after_the_files_commit_says_what_committed(make_pipeline):
    """The BEGIN ... COMMIT block commits on its own (as under Prisma); a later statement that fails leaves
    the file partially applied, and the request says so instead of claiming nothing happened."""
    p = make_pipeline(layout="prisma")
    with p.target() as conn:
        conn.execute(SETUP)
    broken = ENUM_CHANGE.replace('ADD COLUMN "nickname" TEXT', 'ADD COLUMN "nickname" TEXT NOT NULL')
    broken += 'ALTER TABLE "Missing" ADD COLUMN "x" int;\n'
    req = p.request([("20240301000000_drop_guest_role", broken)])
    start_run(p.rt, req.id)
    p.work()
    done = p.store.get_request(req.id)
    assert done.status is RequestStatus.FAILED
    assert done.db_state is DbState.PARTIALLY_APPLIED
    with p.target() as conn:
        values = conn.execute("SELECT enum_range(NULL::\"Role\")::text").fetchone()[0]
        rows = conn.execute("SELECT finished_at IS NULL, logs IS NOT NULL FROM _prisma_migrations").fetchall()
    assert values == "{USER,ADMIN}"  # the block committed, as it does under prisma migrate deploy
    assert rows == [(True, True)]  # Prisma's failed row: P3009 until resolved, as Prisma itself would leave it


def test_the_plan_runs_the_block_as_one_part_and_lint_under_prisma_says_nothing_about_nesting():
    parts = plan_parts(ENUM_CHANGE, 16)
    assert [p.kind for p in parts] == ["tx", "tx"]
    assert all(p.node_type != "TransactionStmt" for part in parts for p in part.pieces)
    for ctx in (Context(runner="prisma"), Context()):
        codes = {f.code for f in analyze(ENUM_CHANGE, ctx).findings}
        assert not codes & {"MG605", "MG606", "MG103"}, codes
