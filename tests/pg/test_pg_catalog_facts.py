"""gather_facts reads the catalog facts the column and partition rules need, and the snapshot carries them."""
from __future__ import annotations

import json

import psycopg

from bot.pg.introspect import gather_facts
from bot.risk import analyze, catalog
from bot.risk.models import Column, Constraint, Index
from bot.risk.snapshot import context_values

SCHEMA = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN score AS int CHECK (VALUE BETWEEN 0 AND 10);
CREATE TABLE members (
    id bigserial PRIMARY KEY,
    email varchar(50) NOT NULL,
    nick varchar(20),
    code bigint GENERATED ALWAYS AS IDENTITY,
    token uuid DEFAULT gen_random_uuid(),
    created timestamp DEFAULT now(),
    feeling mood DEFAULT 'ok',
    moods mood[],
    rating score,
    bal numeric(10, 2) CHECK (bal >= 0)
);
CREATE INDEX members_lower_email_idx ON members (lower(email));
CREATE INDEX members_nick_idx ON members (nick) WHERE nick IS NOT NULL;
ALTER TABLE members ADD CONSTRAINT members_nick_nn CHECK (nick IS NOT NULL) NOT VALID;
ALTER TABLE members ADD CONSTRAINT members_created_nn CHECK (created IS NOT NULL);
CREATE TABLE orders (id int, member_id bigint);
ALTER TABLE orders ADD CONSTRAINT orders_member_fk FOREIGN KEY (member_id) REFERENCES members (id) NOT VALID;
CREATE VIEW member_emails AS SELECT id, email FROM members;
CREATE MATERIALIZED VIEW member_count AS SELECT count(*) AS n FROM members;
CREATE TABLE events (id int, at date) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_rest PARTITION OF events DEFAULT;
"""


def test_gather_facts_reads_columns_indexes_constraints_views_partitions_types_and_timezone(target_db_url):
    with psycopg.connect(target_db_url, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute("SET TimeZone = 'Europe/Paris'")
        facts = gather_facts(conn, "staging")
    assert facts.timezone == "Europe/Paris"
    ctx = facts.to_risk_context()
    m = ctx.tables["members"]
    assert ctx.tables["public.members"] is m and m.catalog
    cols = m.column_facts
    assert m.columns["email"] == "character varying(50)" and cols["email"].not_null
    assert cols["email"].views == ("public.member_emails",) and cols["nick"].views == ()
    assert cols["id"].nextval and cols["id"].default_volatile and cols["id"].not_null
    assert cols["token"].default_volatile and not cols["created"].default_volatile  # now() is stable
    assert cols["code"].identity == "always" and cols["code"].default is None
    assert cols["feeling"].type_ref == "public.mood" and cols["moods"].type_ref == "public.mood"
    assert cols["rating"].type_ref == "public.score" and not cols["rating"].not_null
    idx = {i.name: i for i in m.index_facts}
    assert idx["members_lower_email_idx"] == Index(name="members_lower_email_idx", columns=("",), expression=True,
                                                   uses=("email",))
    assert idx["members_nick_idx"].partial and idx["members_nick_idx"].columns == ("nick",)
    assert idx["members_pkey"].primary and idx["members_pkey"].unique
    assert ("nick",) in m.indexes and ("id",) in m.indexes  # the column lists the older rules read
    con = {c.name: c for c in m.constraints}
    assert con["members_nick_nn"].not_null_column == "nick" and not con["members_nick_nn"].validated
    assert con["members_created_nn"].not_null_column == "created" and con["members_created_nn"].validated
    assert con["members_bal_check"].not_null_column is None and con["members_bal_check"].columns == ("bal",)
    assert m.checks == ("created", "bal")  # validated CHECKs only, in column order
    fk = ctx.tables["orders"].constraints[0]
    assert fk == Constraint(name="orders_member_fk", kind="foreign_key", columns=("member_id",), validated=False,
                            references="public.members", definition=fk.definition)
    assert ctx.tables["member_count"].materialized
    events, rest = ctx.tables["events"], ctx.tables["events_rest"]
    assert events.partitioned and events.partition_key == "RANGE (at)"
    assert events.default_partition == "public.events_rest"
    assert rest.partition_of == "public.events" and rest.partition_bound == "DEFAULT"
    assert ctx.tables["events_2024"].partition_bound.startswith("FOR VALUES FROM ('2024-01-01')")
    assert ctx.types["mood"].values == ("sad", "ok", "happy") and ctx.types["public.mood"].kind == "enum"
    score = ctx.types["score"]
    assert score.kind == "domain" and score.base == "integer" and score.checks[0].startswith("CHECK")
    assert sorted(catalog.type_columns(ctx, "mood")) == ["members.feeling", "members.moods"]


def test_the_snapshot_json_round_trips_to_the_same_context(target_db_url):
    with psycopg.connect(target_db_url, autocommit=True) as conn:
        conn.execute(SCHEMA)
        facts = gather_facts(conn, "staging")
    text = json.dumps(facts.to_snapshot())
    doc = json.loads(text)
    assert doc["snapshot"] == 1 and doc["pg_version"] == facts.pg_version
    assert doc["tables"]["public.members"]["columns"]["email"] == {
        "type": "character varying(50)", "not_null": True, "views": ["public.member_emails"]}
    from bot.risk.models import Context

    assert Context(**context_values(doc)) == facts.to_risk_context()
    assert Column(not_null=True).nextval is False


def test_the_column_rules_decide_with_facts_read_from_a_real_database(target_db_url):
    with psycopg.connect(target_db_url, autocommit=True) as conn:
        conn.execute(SCHEMA)
        conn.execute("CREATE INDEX members_lower_nick_idx ON members (lower(nick))")
        conn.execute("INSERT INTO members (email, nick, created) SELECT 'm' || g, 'n' || g, now() "
                     "FROM generate_series(1, 200000) g")
        conn.execute("ANALYZE members")
        ctx = gather_facts(conn, "staging").to_risk_context(runner_lock_timeout=True, runner_statement_timeout=True)

    def found(sql: str) -> dict[str, str]:
        return {f.code: f.message for f in analyze(sql, ctx).findings if f.severity.value != "low"}

    assert "public.member_emails selects members.email" in found("ALTER TABLE members ALTER COLUMN email TYPE text;")[
        "MG314"]
    rebuilt = found("ALTER TABLE members ALTER COLUMN nick TYPE varchar(40);")["MG315"]
    assert "members_nick_idx (partial)" in rebuilt and "members_lower_nick_idx (expression)" in rebuilt
    assert "(~200,000 rows)" in rebuilt
    assert found("ALTER TABLE members ALTER COLUMN created SET NOT NULL;") == {}  # members_created_nn proves it
    assert "members_nick_nn is NOT VALID" in found("ALTER TABLE members ALTER COLUMN nick SET NOT NULL;")["MG208"]
    assert "domain score" in found("ALTER TABLE members ADD COLUMN rating2 score;")["MG316"]
