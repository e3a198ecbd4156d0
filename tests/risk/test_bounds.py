"""proves_bound: when the attached table's validated CHECKs let ATTACH PARTITION skip its scan. Each verdict
below was observed on PostgreSQL 15 (seq_scan of the attached table before/after the ATTACH)."""
import json

from pglast import parser

from bot.risk.bounds import excludes_bound, key_column, proves_bound


def _bound(values: str) -> dict:
    tree = json.loads(parser.parse_sql_json(f"ALTER TABLE r ATTACH PARTITION r2 FOR VALUES {values}"))
    return tree["stmts"][0]["stmt"]["AlterTableStmt"]["cmds"][0]["AlterTableCmd"]["def"]["PartitionCmd"]["bound"]


RANGE = _bound("FROM (100) TO (200)")


def test_a_check_on_both_sides_of_a_not_null_key_proves_the_range():
    assert proves_bound(RANGE, "RANGE (id)", ["CHECK (((id >= 100) AND (id < 200)))"], key_not_null=True)
    assert proves_bound(RANGE, "RANGE (id)", ["CHECK ((id >= 100))", "CHECK ((id < 200))"], key_not_null=True)
    assert proves_bound(RANGE, "RANGE (id)", ["CHECK ((((id IS NOT NULL) AND (id >= 100)) AND (id < 200)))"],
                        key_not_null=False)


def test_what_postgres_still_scans_for():
    assert not proves_bound(RANGE, "RANGE (id)", ["CHECK (((id >= 100) AND (id < 200)))"], key_not_null=False)
    assert not proves_bound(RANGE, "RANGE (id)", ["CHECK (((id >= 0) AND (id < 1000)))"], key_not_null=True)
    assert not proves_bound(RANGE, "RANGE (id)", ["CHECK ((id >= 100))"], key_not_null=True)
    assert not proves_bound(RANGE, "RANGE (id)", ["CHECK (((id > 99) AND (id <= 199)))"], key_not_null=True)
    assert not proves_bound(RANGE, "RANGE (a, b)", ["CHECK (((a >= 100) AND (a < 200)))"], key_not_null=True)
    assert not proves_bound(_bound("IN (1)"), "HASH (id)", ["CHECK ((id = 1))"], key_not_null=True)


def test_dates_against_the_catalogs_timestamp_spelling():
    bound = _bound("FROM ('2024-01-01') TO ('2024-02-01')")
    check = ("CHECK (((ts >= '2024-01-01 00:00:00'::timestamp without time zone) AND "
             "(ts < '2024-02-01 00:00:00'::timestamp without time zone)))")
    assert proves_bound(bound, "RANGE (ts)", [check], key_not_null=True)
    wider = "CHECK (((ts >= '2024-01-01'::date) AND (ts < '2024-03-01'::date)))"
    assert not proves_bound(bound, "RANGE (ts)", [wider], key_not_null=True)


def test_list_values_and_unbounded_sides():
    bound = _bound("IN ('b', 'c')")
    assert proves_bound(bound, "LIST (k)", ["CHECK ((k = ANY (ARRAY['b'::text, 'c'::text])))"], key_not_null=True)
    assert proves_bound(bound, "LIST (k)", ["CHECK ((k = 'b'::text))"], key_not_null=True)
    assert not proves_bound(bound, "LIST (k)", ["CHECK ((k = ANY (ARRAY['b'::text, 'd'::text])))"], key_not_null=True)
    low = _bound("FROM (MINVALUE) TO (-5)")
    assert proves_bound(low, "RANGE (id)", ["CHECK ((id < '-5'::integer))"], key_not_null=True)
    assert proves_bound(low, "RANGE (id)", ["CHECK ((id < (- 5)))"], key_not_null=True)


def test_key_column():
    assert key_column("RANGE (created_at)") == "created_at"
    assert key_column('LIST ("Kind")') == "Kind"
    assert key_column("RANGE (a, b)") is None and key_column(None) is None


def test_default_partition_checks_that_exclude_the_new_range():
    """Observed on PG 15 (seq_scan of the DEFAULT partition, PARTITION OF and ATTACH alike)."""
    bound = _bound("FROM ('2025-01-01') TO ('2026-01-01')")
    skipped = ["CHECK ((at >= '2030-01-01'::date))", "CHECK ((at >= '2026-01-01'::date))",
               "CHECK ((at > '2026-01-01'::date))", "CHECK ((at < '2025-01-01'::date))",
               "CHECK ((at <= '2024-12-31'::date))", "CHECK (((at >= '2026-01-01'::date) AND (v > 0)))",
               "CHECK (((at < '2020-01-01'::date) OR (at >= '2030-01-01'::date)))"]
    for check in skipped:
        assert excludes_bound(bound, "RANGE (at)", ["CHECK ((v > 0))", check]), check
    scanned = ["CHECK ((at > '2025-12-31'::date))", "CHECK ((at <= '2025-01-01'::date))", "CHECK ((v > 0))",
               "CHECK (((at < '2020-01-01'::date) OR (v > 0)))"]
    for check in scanned:
        assert not excludes_bound(bound, "RANGE (at)", [check]), check
    assert not excludes_bound(_bound("FROM (MINVALUE) TO (100)"), "RANGE (id)", ["CHECK ((id < 0))"])
    assert not excludes_bound(_bound("IN (1)"), "LIST (id)", ["CHECK ((id = 2))"])
