"""bot/pg/summary.py: what an approval binds of a rehearsal — its outcome without timings — and how a new outcome
differs from the approved one, in words."""
from __future__ import annotations

from bot.pg.appqueries import AppQuery, AppQueryReport, QueryProblem
from bot.pg.datafail import OffendingRows
from bot.pg.rehearsal import FileRehearsal, ObservedLock, Rehearsal, StatementRehearsal
from bot.pg.summary import outcome_change, outcome_digest, rehearsal_outcome


def _rehearsal(*, ms: float = 5.0, locks=(("users", "SHARE"),), offending=(), sqlstate=None) -> Rehearsal:
    st = StatementRehearsal(index=0, line=1, kind="IndexStmt", transactional=True, rehearsed=sqlstate is None,
                            sqlstate=sqlstate, duration_ms=ms, held_ms=ms * 2, wal_bytes=int(ms * 1000),
                            observed_locks=tuple(ObservedLock(relation=r, mode=m) for r, m in locks),
                            offending=offending)
    return Rehearsal(server_version="15.2", lock_timeout="3s", statement_timeout="5min",
                     files=(FileRehearsal(path="001_x", statements=(st,)),))


def _broken(query: str) -> AppQueryReport:
    problem = QueryProblem(query=AppQuery(role="app", calls=12, query=query, queryid=1),
                           error='column "name" does not exist (SQLSTATE 42703)')
    return AppQueryReport(checked=3, broken=(problem,), unchecked=())


def test_timings_wal_and_call_counts_do_not_change_the_digest_locks_failures_and_broken_queries_do():
    base = outcome_digest(rehearsal_outcome(_rehearsal(), None))
    assert outcome_digest(rehearsal_outcome(_rehearsal(ms=900.0), None)) == base
    assert outcome_digest(rehearsal_outcome(_rehearsal(locks=(("users", "ACCESS EXCLUSIVE"),)), None)) != base
    dup = OffendingRows(problem="duplicates", table="users", columns=("email",), count=4, groups=1, query="q",
                        examples=("email=a ×4",))
    assert outcome_digest(rehearsal_outcome(_rehearsal(offending=(dup,), sqlstate="23505"), None)) != base
    assert outcome_digest(rehearsal_outcome(_rehearsal(), _broken("SELECT name FROM users"))) != base


def test_the_change_is_said_in_words():
    approved = rehearsal_outcome(_rehearsal(), None)
    dup = OffendingRows(problem="duplicates", table="users", columns=("email",), count=7, groups=3, query="q")
    now = rehearsal_outcome(_rehearsal(offending=(dup,), sqlstate="23505"), _broken("SELECT name FROM users"))
    assert outcome_change(approved, now) == (
        "finds 3 duplicated (email) in users, 7 rows (001_x line 1); breaks 1 more app query (app: SELECT name FROM "
        'users (column "name" does not exist (SQLSTATE 42703)))')
    assert outcome_change(approved, rehearsal_outcome(_rehearsal(locks=(("users", "ACCESS EXCLUSIVE"),)), None)) == \
        "takes ACCESS EXCLUSIVE on users at 001_x line 1"
    assert outcome_change(now, approved) == ("finds no data failure at 001_x line 1 (it found 3 duplicated (email) in "
                                             "users, 7 rows); no longer breaks 1 app query")
