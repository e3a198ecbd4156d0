"""Introspection reports the columns of validated CHECK constraints, and MG901 (#27) uses them."""
from __future__ import annotations

import psycopg

from bot.pg.introspect import gather_facts
from bot.risk import analyze


def test_introspection_reports_columns_of_validated_checks_and_the_rule_uses_them(target_db_url):
    with psycopg.connect(target_db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE acct (id bigint, bal int CHECK (bal >= 0), lo int, hi int, note text, "
                     "CONSTRAINT acct_range CHECK (lo <= hi), CONSTRAINT acct_bal_small CHECK (bal < 1000000))")
        conn.execute("ALTER TABLE acct ADD CONSTRAINT acct_note_len CHECK (length(note) < 50) NOT VALID")
        conn.execute("CREATE TABLE plain (id bigint)")
        facts = gather_facts(conn, "staging")
    tables = {t.name: t for t in facts.tables}
    assert tables["acct"].checks == ("bal", "lo", "hi") and tables["plain"].checks == ()
    ctx = facts.to_risk_context()
    assert ctx.tables["acct"].checks == ("bal", "lo", "hi")

    def codes(sql: str) -> list[str]:
        return [f.code for f in analyze(sql, ctx).findings]

    assert "MG901" in codes("ALTER TABLE acct ALTER COLUMN hi TYPE bigint;")
    assert "MG901" in codes("ALTER TABLE public.acct ALTER COLUMN bal TYPE bigint;")
    assert "MG901" not in codes("ALTER TABLE acct ALTER COLUMN note TYPE varchar(100);")  # NOT VALID: not re-checked
    assert "MG901" not in codes("ALTER TABLE plain ALTER COLUMN id TYPE numeric;")
