"""What MG911 column-order-padding (#79) assumes about row layout, checked against the real server."""
from __future__ import annotations

import itertools

import psycopg

from bot.risk import analyze
from bot.risk.rules.layout import FIXED, layout

ALIGN = {"c": 1, "s": 2, "i": 4, "d": 8}
VALUES = {  # a non-NULL value of each fixed-width type
    "bool": "true", "char": "'a'::\"char\"", "int2": "1", "int4": "1", "int8": "1", "float4": "1", "float8": "1",
    "oid": "1", "date": "now()", "time": "'12:00'", "timetz": "'12:00+02'", "timestamp": "now()",
    "timestamptz": "now()", "interval": "'1 day'", "uuid": "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
    "money": "1", "macaddr": "'08:00:2b:01:02:03'", "macaddr8": "'08:00:2b:01:02:03:04:05'", "pg_lsn": "'0/1'",
    "point": "'(1,2)'",
}


def test_fixed_width_types_have_the_length_and_alignment_of_pg_type(target_db_url):
    with psycopg.connect(target_db_url) as conn:
        rows = conn.execute("SELECT typname, typlen, typalign FROM pg_type t JOIN pg_namespace n "
                            "ON n.oid = t.typnamespace WHERE n.nspname = 'pg_catalog' AND typname = ANY(%s)",
                            (list(FIXED),)).fetchall()
    assert {name: (length, ALIGN[align]) for name, length, align in rows} == FIXED


def test_row_sizes_match_the_layout_the_padding_rule_computes(target_db_url):
    names = sorted(VALUES)
    orders = [["int8", "bool", "int4", "int2"], ["int8", "int4", "int2", "bool"], ["bool", "timetz", "int2", "uuid"],
              ["char", "interval", "macaddr", "int2", "float8"], names, names[::-1]]
    orders += [list(p) for p in itertools.islice(itertools.permutations(["bool", "int2", "int4", "int8", "macaddr"]),
                                                  0, None, 17)]
    with psycopg.connect(target_db_url, autocommit=True) as conn:
        for i, types in enumerate(orders):
            cols = ", ".join(f'c{j} "{t}"' if t == "char" else f"c{j} {t}" for j, t in enumerate(types))
            conn.execute(f"CREATE TABLE pad{i} ({cols})")
            conn.execute(f"INSERT INTO pad{i} VALUES ({', '.join(VALUES[t] for t in types)})")
            size = conn.execute(f"SELECT pg_column_size(p.*) FROM pad{i} p").fetchone()[0]
            assert size - 24 == layout([FIXED[t] for t in types])[1], types  # 24: the tuple header, no NULLs
        # the reference example: 42 -> 48 bytes stored against 39 -> 40, the 8 bytes the finding names
        sizes = [conn.execute(f"SELECT pg_column_size(p.*) FROM pad{i} p").fetchone()[0] for i in (0, 1)]
    assert sizes == [42, 39]
    finding = next(f for f in analyze("CREATE TABLE t (id bigint, flag bool, n int, s smallint);").findings
                   if f.code == "MG911")
    assert f"~{(sizes[0] + 7) // 8 * 8 - (sizes[1] + 7) // 8 * 8} bytes" in finding.message
