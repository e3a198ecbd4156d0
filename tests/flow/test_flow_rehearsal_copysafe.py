"""Issue 19, rehearsal on a copy: what a migration would change on the whole server (ALTER SYSTEM, a role created
in a DO block) is kept off the copy's server, and the request's rehearsal thread says so before approval."""
from __future__ import annotations

import re
import uuid

import psycopg

from bot.config import RehearsalCopyConfig

from flow_harness import CHANNEL, REQUESTER


def test_the_thread_says_what_was_kept_off_the_copys_server(harness, pg_admin_url):
    role = f"guardian_test_copysafe_{uuid.uuid4().hex[:10]}"
    auto = "SELECT count(*) FROM pg_file_settings WHERE name = 'work_mem' AND setting = '7MB'"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        before = admin.execute(auto).fetchone()[0]
    staging = harness.config.environments["staging"].model_copy(update={"rehearsal": RehearsalCopyConfig(copy="template")})
    harness.flow.config = harness.config.model_copy(update={"environments": {**harness.config.environments, "staging": staging}})
    harness.add_migration("20240101000000_roles", f"DO $$ BEGIN CREATE ROLE {role} NOLOGIN; "
                          "EXCEPTION WHEN duplicate_object THEN NULL; END $$;\n")
    harness.add_migration("20240101000001_system", "ALTER SYSTEM SET work_mem = '7MB';\n")
    try:
        rid = harness.flow.start_plan("staging", REQUESTER, CHANNEL).id
        harness.flow.analyze(rid)
        thread = "\n".join(harness.thread_texts(rid))
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            assert admin.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (role,)).fetchone()[0] == 0
            assert admin.execute(auto).fetchone()[0] == before
        assert "line 1: not rehearsed \\u2014 ALTER SYSTEM changes the whole server: not rehearsed on a copy" in thread
        assert ("kept off the copy's server: 20240101000000_roles line 1: changes server-wide objects (roles): "
                "rehearsed, rolled back, not committed on the copy") in thread
        # the rehearsal message: the rolled-back statement's own line says why, and each warning is listed
        shown = thread.replace("\\n", "\n")
        assert re.search(r"line 1 DoStmt: [^\n]*:warning: changes server-wide objects \(roles\): rehearsed, rolled back", shown)
        assert re.search(r"^:warning: 20240101000001_system line 1: ALTER SYSTEM changes the whole server", shown, re.M)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')
            if admin.execute(auto).fetchone()[0] != before:
                admin.execute("ALTER SYSTEM RESET work_mem")
