"""The reconciler terminates a dead apply's session by its name (guardian-req<id>[-t<hash>]) only in the target's own
database: another database on the same server may hold another installation's (or test session's) request of the
same id, whose live apply must not be killed. Real PostgreSQL."""
from __future__ import annotations

import psycopg

from workers.watchdog import application_name, ours

REQUEST = 987_654_321


def test_ours_sees_the_requests_sessions_in_this_database_only(make_database) -> None:
    here, elsewhere = make_database(prefix="gt_orphan_here"), make_database(prefix="gt_orphan_elsewhere")
    name = application_name(REQUEST)
    with psycopg.connect(elsewhere, application_name=name, autocommit=True), \
            psycopg.connect(here, autocommit=True) as conn:
        assert ours(conn, REQUEST) == []  # the same name in another database is not ours
        with psycopg.connect(here, application_name=name, autocommit=True) as apply:
            assert ours(conn, REQUEST) == [apply.info.backend_pid]
