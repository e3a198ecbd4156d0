"""Verdicts that match what the runner will do: statements that fail under it are critical, with the reason."""
from __future__ import annotations

from bot.risk import Context, Severity, analyze

PRISMA = Context(runner="prisma")


def _by_code(sql: str, ctx: Context = Context()) -> dict:
    return {f.code: f for f in analyze(sql, ctx).findings}


def test_add_value_then_use_in_the_same_transaction_is_critical():
    sql = ('ALTER TYPE "Status" ADD VALUE \'ARCHIVED\';\n'
           'UPDATE "Post" SET "status" = \'ARCHIVED\' WHERE "deletedAt" IS NOT NULL;\n')
    for ctx in (PRISMA, Context()):
        f = _by_code(sql, ctx)["MG608"]
        assert f.severity is Severity.CRITICAL and f.line == 2
        assert "unsafe use of new value" in f.message and "ARCHIVED" in f.message


def test_add_value_used_after_a_commit_or_in_the_next_file_is_fine():
    assert "MG608" not in _by_code("BEGIN;\nALTER TYPE s ADD VALUE 'x';\nCOMMIT;\nUPDATE t SET c = 'x' WHERE id = 1;")
    assert "MG608" not in _by_code("UPDATE t SET c = 'x' WHERE id = 1;")


def test_concurrently_in_a_multi_statement_prisma_file_is_critical():
    sql = ('-- CreateIndex\nCREATE INDEX CONCURRENTLY "Post_authorId_idx" ON "Post"("authorId");\n'
           '-- AlterTable\nALTER TABLE "Post" ADD COLUMN "views" INTEGER;\n')
    f = _by_code(sql, PRISMA)["MG103"]
    assert f.severity is Severity.CRITICAL and f.line == 2
    assert "cannot run inside a transaction block" in f.message
    assert 'CREATE INDEX CONCURRENTLY "Post_authorId_idx" ON "Post"("authorId");' in f.fix
    assert "migration folder holding only this statement" in f.fix


def test_concurrently_alone_in_its_prisma_file_is_fine():
    sql = 'CREATE INDEX CONCURRENTLY IF NOT EXISTS "Post_authorId_idx" ON "Post"("authorId");\n'
    assert "MG103" not in _by_code(sql, PRISMA)


def test_concurrently_after_other_statements_under_guardian_is_not_critical():
    """Guardian's apply runs CONCURRENTLY statements alone in autocommit: no failure, so no MG103."""
    sql = 'ALTER TABLE "Post" ADD COLUMN "views" INTEGER;\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON "Post"(a);\n'
    assert "MG103" not in _by_code(sql)


def test_a_backfill_of_unknown_size_is_an_unbatched_data_change_pointing_to_the_batch_comment():
    from bot.risk import TableStats

    for sql in ('UPDATE "Post" SET "views" = 0 WHERE "views" IS NULL;',
                'UPDATE scores SET project_id = t.project_id FROM traces t WHERE scores.trace_id = t.id;',
                "DELETE FROM events WHERE created_at < now() - interval '1 year';"):
        f = _by_code(sql)["MG702"]
        assert f.severity is Severity.MEDIUM and "size unknown" in f.message and "-- guardian: batch" in f.message
        assert "-- guardian: batch 1000" in f.fix
    batched = '-- guardian: batch 500\nUPDATE "Post" SET "views" = 0 WHERE "views" IS NULL;'
    assert "MG702" not in _by_code(batched)
    assert "MG702" not in _by_code("DELETE FROM models WHERE id IN ('a', 'b');")  # named rows
    assert "MG702" not in _by_code("UPDATE t SET c = 1 WHERE id = 5;")
    small = Context(tables={"Post": TableStats(rows=500)})  # with sizes, today's sizing decides
    assert "MG702" not in _by_code('UPDATE "Post" SET "views" = 0 WHERE "views" IS NULL;', small)
