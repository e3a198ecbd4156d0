"""What observing each statement costs the rehearsal: a 50-statement file rehearsed vs run plainly; and how well a
rehearsal on a copy predicts the real run (duration, lock hold time) and how long it delays the preview.

Usage::

    .venv/bin/python bench/rehearsal.py                 # 40 tables of 10,000 rows, best of 5
    .venv/bin/python bench/rehearsal.py --tables 200    # the look's cost grows with the relations it reads
    .venv/bin/python bench/rehearsal.py --rows 1000000  # plus predicted vs actual on a 1 M-row table (0: skip)
    .venv/bin/python bench/rehearsal.py --documenso-from 143   # the documenso replay's first rehearsed file

Predicted vs actual: a table of ``--rows`` rows; for a rewrite (ALTER COLUMN TYPE) and an index build, a
template copy of the target is made and the file rehearsed on it with ``rehearse(commit=True)`` (what the
preview shows), then the file runs on the target itself in one transaction with the environment's timeouts, as
the apply's fast path sends it, timed from the client: duration of the statement, and its locks' hold time
from its start to the commit's end.

The documenso replay: the real Prisma migrations of the documenso corpus (GUARDIAN_CORPUS, else
../shared/corpus/documenso-prisma, in folder order) up to ``--documenso-from`` (default 143: all of 1-142, through
the envelope rework) are applied to a fresh database, whose big tables are then filled in proportion to
``--rows`` R: Field R, DocumentAuditLog R, Recipient R/2 (two per envelope), Envelope / EnvelopeItem /
DocumentMeta / DocumentData R/4, Session R/5, User R/10, Organisation / Team R/100 (each organisation's own
claim, settings and portal), then VACUUM ANALYZE. The remaining files (143-163: a dozen index builds on
Envelope, Field, Session, Recipient and DocumentAuditLog, two trigram GIN indexes, a foreign key re-added and
validated over DocumentAuditLog, ADD COLUMNs, enum values, new tables) are one request: rehearsed on one
template copy of the target with ``rehearse(commit=True)`` as the preview does (the time from the copy's start
to its drop is what the rehearsal adds before the preview), then applied on the target as the apply's fast
path sends them: each file in one transaction with its ``_prisma_migrations`` and sidecar rows
(``apply_migration``), statement by statement and timed (``workers.apply.run_timed``), locks held from each
statement's start to its file's commit. Printed per file (its statements' durations summed, its longest
statement hold) and per statement: predicted vs actual duration and lock hold time, the prediction's error and
whether it is within +-30 %. Most of these statements take under a
millisecond, where a ratio says nothing (scheduling noise is larger than the work): the +-30 % target is judged
only where the prediction or the actual reaches ``--floor-ms`` (default 50 ms); smaller ones are counted, not
judged.

A throwaway database (dropped at the end) on GUARDIAN_TEST_DATABASE_URL's server, else 127.0.0.1:5432, gets
`--tables` tables with two indexes each. The file: 50 cheap statements over them (ADD COLUMN, SET DEFAULT,
small UPDATEs, CREATE INDEX, COMMENT, SET NOT NULL), so the observation, not the work, shows. It runs
plainly in a transaction that is rolled back, then through `rehearse()` (one look after each statement, the
previous one serving as its before: locks, relfilenodes, scan counters); the difference per statement is the
overhead. Best (minimum) times, since the machine is usually shared.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402

from bot.local_services import create_database, drop_database  # noqa: E402
from bot.pg.locks import look  # noqa: E402
from bot.pg.rehearsal import rehearse  # noqa: E402
from bot.risk.parse import split_statements  # noqa: E402

ADMIN = os.environ.get("GUARDIAN_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _schema(tables: int) -> str:
    return "".join(
        f"CREATE TABLE t{i} (id bigint PRIMARY KEY, a int, b text);\n"
        f"INSERT INTO t{i} SELECT g, g, 'x' FROM generate_series(1, 10000) g;\n"
        f"CREATE INDEX t{i}_a_idx ON t{i} (a);\n" for i in range(tables)) + "ANALYZE;\n"


def _file(tables: int) -> str:
    kinds = ("ALTER TABLE t{i} ADD COLUMN c{k} int;", "ALTER TABLE t{i} ALTER COLUMN b SET DEFAULT 'y';",
             "UPDATE t{i} SET a = a WHERE id = {k};", "COMMENT ON TABLE t{i} IS 'bench {k}';",
             "CREATE INDEX t{i}_b{k}_idx ON t{i} (b);")
    return "\n".join(kinds[k % len(kinds)].format(i=k % tables, k=k) for k in range(50)) + "\n"


def _plain(conn: psycopg.Connection, sql: str) -> float:
    started = time.perf_counter()
    with conn.transaction(force_rollback=True):
        for piece in split_statements(sql):
            conn.execute(piece.text.encode("utf-8"))
    return time.perf_counter() - started


def _rehearsed(conn: psycopg.Connection, sql: str) -> float:
    started = time.perf_counter()
    rehearse(conn, [("bench.sql", sql)], reports=[None])
    return time.perf_counter() - started


ROWS_SCHEMA = ("CREATE TABLE big (id bigint PRIMARY KEY, a int NOT NULL, b text NOT NULL);\n"
               "INSERT INTO big SELECT g, g % 1000, md5(g::text) FROM generate_series(1, {rows}) g;\nANALYZE big;\n")
PREDICTED = (("rewrite", "ALTER TABLE big ALTER COLUMN a TYPE bigint;\n"),
             ("index build", "CREATE INDEX big_b_idx ON big (b);\n"))


def _actual(url: str, sql: str) -> tuple[float, float]:
    """(duration, hold) in ms of the file run on the target in one committed transaction with local timeouts."""
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("SELECT set_config('lock_timeout', '3s', true), set_config('statement_timeout', '15min', true)")
            started = time.perf_counter()
            conn.execute(sql.encode("utf-8"))
            ran = time.perf_counter()
        committed = time.perf_counter()
    return (ran - started) * 1000, (committed - started) * 1000


def _predicted_vs_actual(rows: int) -> None:
    from bot.config import EnvironmentConfig, RehearsalCopyConfig
    from bot.pg.copy import copy_of

    name, url = create_database(ADMIN, "rehearse_bench_big")
    os.environ["GUARDIAN_BENCH_TARGET_URL"] = url
    env = EnvironmentConfig(name="bench", database_url_env="GUARDIAN_BENCH_TARGET_URL",
                            rehearsal=RehearsalCopyConfig(copy="template"))
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(ROWS_SCHEMA.format(rows=rows))
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        print(f"\npredicted (rehearsal on a template copy, committed) vs actual (the target), {rows:,} rows, "
              f"{size / 1e6:.0f} MB")
        print(f"{'migration':<12} {'pred ms':>9} {'act ms':>9} {'err':>6}   {'pred hold':>9} {'act hold':>9} {'err':>6}"
              f"   {'copy s':>6} {'adds s':>6}")
        for label, sql in PREDICTED:
            started = time.perf_counter()
            with copy_of(env, 900_000_000 + os.getpid() % 1_000_000) as copy:
                with psycopg.connect(copy.url.get_secret_value(), autocommit=True) as conn:
                    result = rehearse(conn, [("bench.sql", sql)], lock_timeout="3s", statement_timeout="15min",
                                      commit=True)
            adds = time.perf_counter() - started
            (st,) = result.files[0].statements
            duration, hold = _actual(url, sql)
            print(f"{label:<12} {st.duration_ms:9.0f} {duration:9.0f} {(st.duration_ms / duration - 1) * 100:+5.0f}%"
                  f"   {st.held_ms:9.0f} {hold:9.0f} {(st.held_ms / hold - 1) * 100:+5.0f}%   {copy.made_s:6.1f} {adds:6.1f}"
                  + (f"   {result.warmed.summary}" if result.warmed is not None else ""))
    finally:
        drop_database(ADMIN, name)


DOCUMENSO_FILL = """
INSERT INTO "User" (id, name, email, "updatedAt") SELECT 100 + g, 'User ' || g, 'user' || g || '@example.com', now()
  FROM generate_series(1, {users}) g;
INSERT INTO "OrganisationClaim" (id, "updatedAt", "teamCount", "memberCount", flags, "envelopeItemCount")
  SELECT 'oc' || g, now(), 1, 5, '{{}}', 5 FROM generate_series(1, {orgs}) g;
INSERT INTO "OrganisationGlobalSettings" (id, "emailDocumentSettings") SELECT 'ogs' || g, '{{}}' FROM generate_series(1, {orgs}) g;
INSERT INTO "OrganisationAuthenticationPortal" (id) SELECT 'oap' || g FROM generate_series(1, {orgs}) g;
INSERT INTO "Organisation" (id, "updatedAt", type, name, url, "ownerUserId", "organisationClaimId",
                            "organisationGlobalSettingsId", "organisationAuthenticationPortalId")
  SELECT 'org' || g, now(), 'ORGANISATION', 'Org ' || g, 'org-' || g, 100 + g, 'oc' || g, 'ogs' || g, 'oap' || g
  FROM generate_series(1, {orgs}) g;
INSERT INTO "TeamGlobalSettings" (id) SELECT 'tgs' || g FROM generate_series(1, {orgs}) g;
INSERT INTO "Team" (id, name, url, "organisationId", "teamGlobalSettingsId")
  SELECT 100 + g, 'Team ' || g, 'team-' || g, 'org' || g, 'tgs' || g FROM generate_series(1, {orgs}) g;
INSERT INTO "DocumentMeta" (id) SELECT 'dm' || g FROM generate_series(1, {envelopes}) g;
INSERT INTO "Envelope" (id, "secondaryId", type, "updatedAt", "createdAt", title, source, "internalVersion", "userId",
                        "teamId", "documentMetaId", status)
  SELECT 'env' || g, 'document_' || g, (CASE WHEN g % 10 = 0 THEN 'TEMPLATE' ELSE 'DOCUMENT' END)::"EnvelopeType",
         now(), now() - (g % 5000) * interval '1 hour', 'Contract ' || g, 'DOCUMENT', 1, 101 + g % {users},
         101 + g % {orgs}, 'dm' || g, (ARRAY['DRAFT', 'PENDING', 'COMPLETED', 'REJECTED'])[1 + g % 4]::"DocumentStatus"
  FROM generate_series(1, {envelopes}) g;
INSERT INTO "DocumentData" (id, type, data, "initialData")
  SELECT 'dd' || g, 'S3_PATH', 'documents/' || md5(g::text) || '.pdf', 'documents/' || md5(g::text) || '.pdf'
  FROM generate_series(1, {envelopes}) g;
INSERT INTO "EnvelopeItem" (id, title, "documentDataId", "envelopeId", "order")
  SELECT 'ei' || g, 'Contract ' || g || '.pdf', 'dd' || g, 'env' || g, 1 FROM generate_series(1, {envelopes}) g;
INSERT INTO "Recipient" (id, email, name, token, "envelopeId", "signedAt")
  SELECT g, 'signer' || (g % {signers}) || '@example' || (g % 97) || '.com', 'Signer ' || (g % {signers}), md5(g::text),
         'env' || (1 + (g - 1) / 2), CASE WHEN g % 3 = 0 THEN now() - (g % 900) * interval '1 hour' END
  FROM generate_series(1, {recipients}) g;
INSERT INTO "Field" (id, "recipientId", type, page, "customText", inserted, "secondaryId", "envelopeId", "envelopeItemId")
  SELECT g, 1 + (g - 1) / 2, (ARRAY['SIGNATURE', 'DATE', 'NAME', 'TEXT'])[1 + g % 4]::"FieldType", 1 + g % 3, '',
         g % 2 = 0, 'field_' || g, 'env' || (1 + (g - 1) / 4), 'ei' || (1 + (g - 1) / 4)
  FROM generate_series(1, {fields}) g;
INSERT INTO "DocumentAuditLog" (id, type, data, "envelopeId", email, "ipAddress", "userAgent")
  SELECT 'dal' || g, 'DOCUMENT_OPENED', jsonb_build_object('recipientId', g % {recipients}),
         'env' || (1 + (g - 1) % {envelopes}), 'signer' || (g % {signers}) || '@example.com', '10.0.0.' || (g % 250),
         'Mozilla/5.0' FROM generate_series(1, {fields}) g;
INSERT INTO "Session" (id, "sessionToken", "userId", "expiresAt", "updatedAt")
  SELECT 's' || g, md5('s' || g), 101 + g % {users}, now() + interval '30 days', now() FROM generate_series(1, {sessions}) g;
SELECT setval(pg_get_serial_sequence(t, 'id'), 101 + {fields}) FROM unnest(ARRAY['"User"', '"Team"', '"Recipient"', '"Field"']) t;
"""


def _corpus() -> list[Path]:
    root = Path(os.environ.get("GUARDIAN_CORPUS") or Path(__file__).resolve().parents[2] / "shared" / "corpus"
                / "documenso-prisma")
    if not root.is_dir():
        sys.exit(f"corpus not found at {root}; set GUARDIAN_CORPUS to the documenso-prisma folder")
    return sorted(p for p in root.iterdir() if (p / "migration.sql").is_file())


def _migration(folder: Path):
    from bot.sources.models import Migration

    sql = (folder / "migration.sql").read_text(encoding="utf-8")
    data = sql.encode("utf-8")
    version, _, name = folder.name.partition("_")
    return Migration(version=version, name=name, ledger_name=folder.name, path=f"{folder.name}/migration.sql", sql=sql,
                     sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def _err(predicted: float | None, actual: float | None) -> float | None:
    return None if not predicted or not actual else predicted / actual - 1


def _judged(predicted: float | None, actual: float | None, floor: float) -> str:
    """'ok' / 'MISS' where the target is judged, '-' below the floor."""
    if max(predicted or 0, actual or 0) < floor:
        return "-"
    err = _err(predicted, actual)
    return "ok" if err is not None and abs(err) <= 0.30 else "MISS"


def _cell(predicted: float | None, actual: float | None, floor: float) -> str:
    err = _err(predicted, actual)
    pct = f"{err * 100:+5.0f}%" if err is not None else "    ?"
    return f"{predicted or 0:9.1f} {actual or 0:9.1f} {pct} {_judged(predicted, actual, floor):>4}"


def _documenso(rows: int, first: int, floor: float) -> None:
    """The documenso replay (see the module docstring)."""
    from bot.config import EnvironmentConfig, RehearsalCopyConfig
    from bot.pg.copy import copy_of
    from bot.sources.apply import apply_migration
    from bot.sources.models import Migration
    from workers.apply import Progress, run_timed
    from workers.plan import plan_parts

    folders = _corpus()
    setup, replay = folders[:first - 1], folders[first - 1:]
    scale = {"users": max(rows // 10, 10), "orgs": max(rows // 100, 2), "envelopes": max(rows // 4, 4),
             "recipients": max(rows // 2, 8), "fields": max(rows, 16), "sessions": max(rows // 5, 4),
             "signers": max(rows // 20, 4)}
    name, url = create_database(ADMIN, "rehearse_bench_documenso")
    os.environ["GUARDIAN_BENCH_DOCUMENSO_URL"] = url
    env = EnvironmentConfig(name="documenso", database_url_env="GUARDIAN_BENCH_DOCUMENSO_URL",
                            rehearsal=RehearsalCopyConfig(copy="template"))
    try:
        started = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SET client_min_messages = warning")
            for folder in setup:  # each file as Prisma sends it (one simple query), with its ledger rows
                apply_migration(conn, "prisma", _migration(folder))
            conn.execute(DOCUMENSO_FILL.format(**scale).encode("utf-8"))
            conn.execute("VACUUM ANALYZE")
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        print(f"\ndocumenso replay: corpus files 1-{first - 1} applied, then filled in "
              f"{time.perf_counter() - started:.0f} s ({size / 1e6:.0f} MB): Field and DocumentAuditLog "
              f"{scale['fields']:,}, Recipient {scale['recipients']:,}, Envelope/EnvelopeItem/DocumentMeta/DocumentData "
              f"{scale['envelopes']:,}, Session {scale['sessions']:,}, User {scale['users']:,}, Organisation/Team "
              f"{scale['orgs']:,}")
        files = [(f.name, (f / "migration.sql").read_text(encoding="utf-8")) for f in replay]
        started = time.perf_counter()
        with copy_of(env, 900_000_000 + os.getpid() % 1_000_000) as copy:
            copied = time.perf_counter()
            with psycopg.connect(copy.url.get_secret_value(), autocommit=True) as conn:
                result = rehearse(conn, files, lock_timeout="3s", statement_timeout="15min", commit=True)
            rehearsed = time.perf_counter()
        adds = time.perf_counter() - started
        if result.warmed is not None:
            print(f"  {result.warmed.summary}; our looks left out of the hold times: {result.observed_ms / 1000:.1f} s")
        failed = [(f.path, s.line, s.error) for f in result.files for s in f.statements if s.error]
        if failed:
            print(f"  the rehearsal failed: {failed[:3]}")
        actual: dict[str, list[dict]] = {}
        with psycopg.connect(url, autocommit=True) as conn:
            for folder, (path, sql) in zip(replay, files):
                progress = Progress()
                (part,) = plan_parts(sql, conn.info.server_version // 10000)  # the fast path: one transaction

                def execute(c: psycopg.Connection, _m: Migration, pieces=part.pieces, running=progress.running) -> None:
                    c.execute("SELECT set_config('lock_timeout', '3s', true), "
                              "set_config('statement_timeout', '15min', true)")
                    with c.transaction():  # the savepoint a lock-timeout retry rolls back to
                        run_timed(c, pieces, running)

                apply_migration(conn, "prisma", _migration(folder), request_id="bench", execute=execute)
                progress.committed_now()
                actual[path] = progress.statements
        print(f"{len(files)} files ({replay[0].name[:14]}…{replay[-1].name[:14]}) as one request: rehearsed on a template "
              f"copy, committed file by file, then applied on the target statement by statement (fast path); "
              f"+-30 % judged at >= {floor:.0f} ms ('-': below it)")
        print(f"{'file':<58} {'pred ms':>9} {'act ms':>9} {'err':>6} {'':>4}   {'pred hold':>9} {'act hold':>9} "
              f"{'err':>6} {'':>4}")
        judged: dict[str, list[str]] = {"duration": [], "hold": []}
        per_file: dict[str, list[str]] = {"duration": [], "hold": []}
        slow: list[tuple[str, object, dict]] = []
        for f in result.files:
            ran = {s.index: s for s in f.statements if s.rehearsed}
            act = actual.get(f.path, [])
            pred_ms = sum(s.duration_ms or 0 for s in ran.values())
            pred_hold = max((s.held_ms or 0 for s in ran.values()), default=0)
            act_ms = sum(a["duration_ms"] for a in act)
            act_hold = max((a["held_ms"] or 0 for a in act), default=0)
            print(f"{f.path[:58]:<58} {_cell(pred_ms, act_ms, floor)}   {_cell(pred_hold, act_hold, floor)}")
            per_file["duration"].append(_judged(pred_ms, act_ms, floor))
            per_file["hold"].append(_judged(pred_hold, act_hold, floor))
            slow += [(f.path, ran[a["index"]], a) for a in act if a["index"] in ran]
        print(f"statements at or above {floor:.0f} ms (of {len(slow)} rehearsed and applied):")
        print(f"{'statement':<58} {'pred ms':>9} {'act ms':>9} {'err':>6} {'':>4}   {'pred hold':>9} {'act hold':>9} "
              f"{'err':>6} {'':>4}")
        for path, st, a in slow:
            dur, hold = _judged(st.duration_ms, a["duration_ms"], floor), _judged(st.held_ms, a["held_ms"], floor)
            if dur != "-" or hold != "-":
                label = f"{path[:38]} #{st.index + 1} {st.kind or '?'}"
                print(f"{label[:58]:<58} {_cell(st.duration_ms, a['duration_ms'], floor)}   "
                      f"{_cell(st.held_ms, a['held_ms'], floor)}")
                judged["duration"].append(dur)
                judged["hold"].append(hold)
        tiny = sum(1 for _, st, a in slow if max(st.duration_ms or 0, a["duration_ms"]) < floor)
        for what in judged:
            files_kept = [m for m in per_file[what] if m != "-"]
            kept = [m for m in judged[what] if m != "-"]
            print(f"  {what}: {files_kept.count('ok')}/{len(files_kept)} judged files, {kept.count('ok')}/{len(kept)} "
                  "judged statements within +-30 %")
        print(f"  {tiny} statements ran under {floor:.0f} ms both predicted and actual: their duration is not judged "
              "(their hold is, where it reaches the floor)")
        print(f"total: predicted {sum((s.duration_ms or 0) for _, s, _ in slow) / 1000:.2f} s, actual "
              f"{sum(a['duration_ms'] for _, _, a in slow) / 1000:.2f} s of statements; the rehearsal adds {adds:.1f} s "
              f"before the preview (template copy {copy.made_s:.1f} s, rehearsal {rehearsed - copied:.1f} s, "
              f"drop {started + adds - rehearsed:.1f} s); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    finally:
        drop_database(ADMIN, name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the predicted-vs-actual table (0: skip)")
    parser.add_argument("--documenso-from", type=int, default=143,
                        help="documenso replay: the first corpus file (1-based) rehearsed and applied; earlier ones set up")
    parser.add_argument("--floor-ms", type=float, default=50.0,
                        help="the +-30 %% target is judged only where the prediction or the actual reaches this")
    args = parser.parse_args()
    name, url = create_database(ADMIN, "rehearse_bench")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(_schema(args.tables))
            sql = _file(args.tables)
            relations = conn.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace").fetchone()[0]
            plain = min(_plain(conn, sql) for _ in range(args.repeat))
            rehearsed = min(_rehearsed(conn, sql) for _ in range(args.repeat))
            with conn.transaction(force_rollback=True):
                looks = []
                for _ in range(200):
                    started = time.perf_counter()
                    look(conn)
                    looks.append(time.perf_counter() - started)
    finally:
        drop_database(ADMIN, name)
    per_statement = (rehearsed - plain) / 50 * 1000
    print(f"50 statements over {args.tables} tables ({relations} relations), best of {args.repeat}")
    print(f"plain run        {plain * 1000:8.1f} ms")
    print(f"rehearse()       {rehearsed * 1000:8.1f} ms   (+{per_statement:.2f} ms per statement)")
    print(f"one look         {min(looks) * 1000:8.2f} ms best, {statistics.median(looks) * 1000:.2f} ms median of 200 "
          "(one per statement)")
    if args.rows:
        _predicted_vs_actual(args.rows)
        _documenso(args.rows, args.documenso_from, args.floor_ms)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
