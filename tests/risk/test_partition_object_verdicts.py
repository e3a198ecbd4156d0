"""Partition and object mechanisms: with the catalog facts the verdict is decided and names the object; without
them it says what it depends on. Each fact was observed on PostgreSQL 15 (pg_locks, seq_scan, errors)."""
from dataclasses import replace

from bot.risk import Context, Report, Severity, TableStats, analyze
from bot.risk.models import Column, Constraint, Index, TypeFacts

from risk_helpers import codes, finding, locks

NN = Column(not_null=True)


def _ctx(**tables: TableStats) -> Context:
    """The runner's context (lock_timeout and statement_timeout set, as in the Slack preview) on PG 15."""
    mood = TypeFacts(kind="enum", values=("a",))
    return Context(pg_version=15, tables=dict(tables), runner_lock_timeout=True, runner_statement_timeout=True,
                   types={"public.mood": mood, "mood": mood, "spare": TypeFacts(kind="enum", values=("x",))})


def _parts(default_rows: int | None = None, **extra: TableStats) -> Context:
    tables = {"ev": TableStats(partitioned=True, column_facts={"id": NN}, partition_key="RANGE (id)",
                               default_partition="ev_def" if default_rows is not None else None),
              "ev_p1": TableStats(rows=1_000, column_facts={"id": NN}, partition_of="ev")}
    if default_rows is not None:
        tables["ev_def"] = TableStats(rows=default_rows, column_facts={"id": NN}, partition_of="ev",
                                      partition_bound="DEFAULT")
    return _ctx(**tables, **extra)


def _risk(sql: str, ctx: Context | None = None) -> Severity:
    return analyze(sql, ctx or _ctx()).risk


PARTITION_OF = "CREATE TABLE ev_p2 PARTITION OF ev FOR VALUES FROM (100) TO (200);"


def test_partition_of_scans_a_big_default_partition_and_locks_it():
    r = analyze(PARTITION_OF, _parts(default_rows=2_000_000))
    f = finding(r, "MG415")
    assert f.severity is Severity.HIGH and "ev_def" in f.message and "2,000,000 rows" in f.message
    assert locks(r, 0) == {"ev_p2": "ACCESS EXCLUSIVE", "ev": "ACCESS EXCLUSIVE", "ev_def": "ACCESS EXCLUSIVE"}


def test_partition_of_without_a_default_partition_is_safe():
    r = analyze(PARTITION_OF, _parts())
    assert r.risk is Severity.LOW and "MG415" not in [f.code for f in r.findings]
    assert locks(r, 0) == {"ev_p2": "ACCESS EXCLUSIVE", "ev": "ACCESS EXCLUSIVE"}
    assert _risk(PARTITION_OF, _parts(default_rows=500)) is Severity.LOW  # a small default partition


def test_a_default_partition_whose_check_excludes_the_new_range_is_not_scanned():
    def checked(definition: str) -> Context:
        default = TableStats(rows=2_000_000, column_facts={"id": NN}, partition_of="ev", partition_bound="DEFAULT",
                             constraints=(Constraint(name="c", kind="check", definition=definition, columns=("id",)),))
        ctx = _parts(default_rows=1, ev_p3=_p3("CHECK (((id >= 200) AND (id < 300)))"))
        return replace(ctx, tables={**ctx.tables, "ev_def": default})

    assert _risk(PARTITION_OF, checked("CHECK ((id >= 1000))")) is Severity.LOW
    assert _risk(ATTACH, checked("CHECK ((id < 200))")) is Severity.LOW
    f = finding(analyze(PARTITION_OF, checked("CHECK ((id >= 150))")), "MG415")
    assert f.severity is Severity.HIGH and "do not exclude the new range: CHECK ((id >= 150))" in f.message


def test_partition_of_without_facts_says_what_it_depends_on():
    f = finding(analyze(PARTITION_OF), "MG415")
    assert f.severity is Severity.LOW and "DEFAULT partition" in f.message and "guardian snapshot" in f.message
    assert "MG415" not in codes("CREATE TABLE ev (id int) PARTITION BY RANGE (id);\n" + PARTITION_OF)


ATTACH = "ALTER TABLE ev ATTACH PARTITION ev_p3 FOR VALUES FROM (200) TO (300);"


def _p3(*checks: str, not_null: bool = True, validated: bool = True) -> TableStats:
    return TableStats(rows=2_000_000, column_facts={"id": Column(not_null=not_null)},
                      constraints=tuple(Constraint(name=f"c{i}", kind="check", definition=c, columns=("id",),
                                                   validated=validated) for i, c in enumerate(checks)))


def test_attach_with_a_matching_validated_check_skips_the_scan():
    ctx = _parts(ev_p3=_p3("CHECK (((id >= 200) AND (id < 300)))"))
    r = analyze(ATTACH, ctx)
    assert r.risk is Severity.LOW, r.findings
    assert locks(r, 0) == {"ev": "SHARE UPDATE EXCLUSIVE", "ev_p3": "ACCESS EXCLUSIVE"}
    assert _risk(ATTACH, _parts(ev_p3=_p3("CHECK ((id >= 200))", "CHECK ((id < 300))"))) is Severity.LOW
    nullable = _p3("CHECK ((((id IS NOT NULL) AND (id >= 200)) AND (id < 300)))", not_null=False)
    assert _risk(ATTACH, _parts(ev_p3=nullable)) is Severity.LOW


def test_attach_scans_a_big_table_when_no_check_implies_the_bounds():
    for stats in (_p3(), _p3("CHECK (((id >= 0) AND (id < 1000)))"), _p3("CHECK ((id >= 200))"),
                  _p3("CHECK (((id >= 200) AND (id < 300)))", validated=False),
                  _p3("CHECK (((id >= 200) AND (id < 300)))", not_null=False)):
        f = finding(analyze(ATTACH, _parts(ev_p3=stats)), "MG407")
        assert f.severity is Severity.HIGH and "ev_p3" in f.message and "2,000,000 rows" in f.message


def test_attach_also_scans_the_default_partition_even_with_the_check():
    r = analyze(ATTACH, _parts(default_rows=3_000_000, ev_p3=_p3("CHECK (((id >= 200) AND (id < 300)))")))
    assert [f.code for f in r.findings if f.severity.rank >= Severity.MEDIUM.rank] == ["MG415"]
    assert locks(r, 0)["ev_def"] == "ACCESS EXCLUSIVE"


def test_attach_without_facts_keeps_the_cautious_verdict_and_says_why():
    f = finding(analyze(ATTACH), "MG407")
    assert f.severity is Severity.HIGH and "depends on the target" in f.message


def test_attach_builds_the_parents_indexes_the_partition_has_no_match_for():
    """PG 15: ATTACH builds the parent's index on the table under its ACCESS EXCLUSIVE unless one matches."""
    value = Index(name="ev_value_idx", columns=("value",), uses=("value",))
    unique = Index(name="ev_id_key", columns=("id",), uses=("id",), unique=True)
    bound = "CHECK (((id >= 200) AND (id < 300)))"

    def attach(*own: Index, sql: str = ATTACH) -> Report:
        ctx = _parts(ev_p3=replace(_p3(bound), index_facts=own))
        return analyze(sql, replace(ctx, tables={**ctx.tables, "ev": replace(ctx.tables["ev"],
                                                                            index_facts=(value, unique))}))
    f = finding(attach(), "MG419")
    assert f.severity is Severity.HIGH and "2,000,000 rows" in f.message
    assert "ev_value_idx (value), ev_id_key (id) of ev on ev_p3" in f.message
    plain_id = Index(name="ev_p3_id_idx", columns=("id",), uses=("id",))  # not unique: no match for ev_id_key
    assert "ev_value_idx" not in finding(attach(plain_id, replace(value, name="ev_p3_value_idx")), "MG419").message
    assert attach(replace(value, name="p3v"), replace(unique, name="p3k")).risk is Severity.LOW
    made = "CREATE INDEX CONCURRENTLY p3v ON ev_p3 (value);\n"  # the recipe: built before, then attached
    assert "MG419" not in [f.code for f in attach(replace(unique, name="p3k"), sql=made + ATTACH).findings]
    assert finding(analyze(ATTACH), "MG419").severity is Severity.LOW  # without facts: says it depends


DETACH = "ALTER TABLE ev DETACH PARTITION ev_p1 CONCURRENTLY;"


def test_detach_concurrently_fails_with_a_default_partition():
    r = analyze(DETACH, _parts(default_rows=10))
    assert finding(r, "MG416").severity is Severity.CRITICAL and "ev_def" in finding(r, "MG416").message
    assert _risk(DETACH, _parts()) is Severity.LOW
    assert finding(analyze(DETACH), "MG416").severity is Severity.LOW  # without facts: says it depends


def test_detach_takes_the_default_partition_too():
    assert locks(analyze("ALTER TABLE ev DETACH PARTITION ev_p1;", _parts(default_rows=10)), 0) == {
        "ev": "ACCESS EXCLUSIVE", "ev_p1": "ACCESS EXCLUSIVE", "ev_def": "ACCESS EXCLUSIVE"}


FK = "ALTER TABLE ev ADD CONSTRAINT ev_fk FOREIGN KEY (v) REFERENCES people (id) NOT VALID;"


def test_not_valid_foreign_key_on_a_partitioned_table_fails_before_18():
    f = finding(analyze(FK, _parts()), "MG418")
    assert f.severity is Severity.CRITICAL and "ev" in f.message
    assert "MG418" not in codes(FK, Context(pg_version=18, tables=_parts().tables))
    assert "MG418" not in codes(FK, Context(pg_version=15))  # a plain table, as far as the file says


def test_concurrent_index_on_a_partitioned_table_fails_and_on_only_builds_nothing():
    f = finding(analyze("CREATE INDEX CONCURRENTLY IF NOT EXISTS ev_v ON ev (v);", _parts()), "MG105")
    assert f.severity is Severity.CRITICAL and "ON ONLY" in f.message
    only = analyze("CREATE INDEX ev_v ON ONLY ev (v);", _parts(default_rows=10))
    assert only.risk is Severity.LOW and locks(only, 0) == {"ev": "SHARE"}
    every = analyze("CREATE INDEX ev_v ON ev (v);", _parts(default_rows=10))
    assert locks(every, 0) == {"ev": "SHARE", "ev_p1": "SHARE", "ev_def": "SHARE"}
    failing = analyze("CREATE INDEX CONCURRENTLY ev_v ON ev (v);", _parts())  # pg_locks: each partition first
    assert locks(failing, 0) == {"ev": "SHARE UPDATE EXCLUSIVE", "ev_p1": "SHARE UPDATE EXCLUSIVE"}


def test_on_only_without_facts_stays_cautious_and_says_what_it_depends_on():
    f = finding(analyze("CREATE INDEX ev_v ON ONLY ev (v);"), "MG101")
    assert f.severity is Severity.HIGH and "If ev is partitioned" in f.message


PEOPLE = TableStats(rows=2_000_000, column_facts={
    "id": Column(not_null=True, default="nextval('people_id_seq'::regclass)", default_volatile=True),
    "note": Column(default="'x'::text"), "m": Column(type_ref="public.mood")},
    index_facts=(Index(name="people_note", columns=("note",)),))


def test_drop_default_on_a_not_null_column_breaks_inserts():
    f = finding(analyze("ALTER TABLE people ALTER COLUMN id DROP DEFAULT;", _ctx(people=PEOPLE)), "MG513")
    assert f.severity is Severity.HIGH and "people.id" in f.message and "nextval" in f.message
    assert _risk("ALTER TABLE people ALTER COLUMN note DROP DEFAULT;", _ctx(people=PEOPLE)) is Severity.LOW
    hedge = finding(analyze("ALTER TABLE people ALTER COLUMN id DROP DEFAULT;"), "MG513")
    assert hedge.severity is Severity.LOW and "if the column is NOT NULL" in hedge.message


def test_drop_type_cascade_drops_the_columns_that_use_it():
    r = analyze("DROP TYPE mood CASCADE;", _ctx(people=PEOPLE))
    f = finding(r, "MG504")
    assert f.severity is Severity.HIGH and "people.m" in f.message
    assert locks(r, 0) == {"people": "ACCESS EXCLUSIVE"}
    unused = analyze("DROP TYPE spare CASCADE;", _ctx(people=PEOPLE))
    assert unused.risk is Severity.LOW and locks(unused, 0) == {}
    blind = finding(analyze("DROP TYPE mood CASCADE;"), "MG504")
    assert blind.severity is Severity.HIGH and "depends on the target" in blind.message


MV = TableStats(rows=10, materialized=True, column_facts={"id": Column()})


def test_refresh_blocks_readers_however_small_the_view():
    people = TableStats(rows=2_000_000, column_facts={"id": Column(views=("public.mv",))})
    r = analyze("REFRESH MATERIALIZED VIEW mv;", _ctx(mv=MV, **{"public.mv": MV}, people=people))
    f = finding(r, "MG405")
    assert f.severity is Severity.HIGH and "people" in f.message
    assert locks(r, 0) == {"mv": "ACCESS EXCLUSIVE", "people": "ACCESS SHARE"}


def test_refresh_concurrently_needs_a_unique_index_on_plain_columns():
    sql = "REFRESH MATERIALIZED VIEW CONCURRENTLY mv;"
    keyed = TableStats(rows=10, materialized=True, column_facts={"id": Column()},
                       index_facts=(Index(name="mv_id", columns=("id",), unique=True),))
    assert _risk(sql, _ctx(mv=keyed)) is Severity.LOW
    assert finding(analyze(sql, _ctx(mv=MV)), "MG417").severity is Severity.CRITICAL
    partial = TableStats(rows=10, materialized=True, column_facts={"id": Column()},
                         index_facts=(Index(name="mv_id", columns=("id",), unique=True, partial=True),))
    assert finding(analyze(sql, _ctx(mv=partial)), "MG417").severity is Severity.CRITICAL
    assert finding(analyze(sql), "MG417").severity is Severity.LOW  # without facts: says it depends


def test_drop_index_locks_its_table_and_concurrently_is_safe():
    r = analyze("DROP INDEX people_note;", _ctx(people=PEOPLE))
    f = finding(r, "MG102")
    assert f.severity is Severity.MEDIUM and "on people (~2,000,000 rows)" in f.message
    assert locks(r, 0) == {"people_note": "ACCESS EXCLUSIVE", "people": "ACCESS EXCLUSIVE"}
    conc = analyze("DROP INDEX CONCURRENTLY IF EXISTS people_note;", _ctx(people=PEOPLE))
    assert conc.risk is Severity.LOW
    assert locks(conc, 0) == {"people_note": "SHARE UPDATE EXCLUSIVE", "people": "SHARE UPDATE EXCLUSIVE"}


def test_drop_index_of_a_constraint_fails():
    keyed = TableStats(rows=10, column_facts={"id": NN}, index_facts=(
        Index(name="people_pkey", columns=("id",), unique=True, primary=True),
        Index(name="people_email_key", columns=("email",), unique=True),
        Index(name="people_email_lower", columns=("",), unique=True, expression=True)),
        constraints=(Constraint(name="people_email_key", kind="unique", columns=("email",)),))
    for sql in ("DROP INDEX CONCURRENTLY people_pkey;", "DROP INDEX people_email_key;"):
        f = finding(analyze(sql, _ctx(people=keyed)), "MG110")
        assert f.severity is Severity.CRITICAL and "people" in f.message
    assert _risk("DROP INDEX CONCURRENTLY people_email_lower;", _ctx(people=keyed)) is Severity.LOW
    assert "MG110" not in codes("DROP INDEX CONCURRENTLY people_pkey;")  # no facts: the name alone proves nothing


def test_reindex_of_an_index_locks_its_table():
    """pg_locks: REINDEX INDEX takes SHARE on the table (ACCESS EXCLUSIVE on the index); CONCURRENTLY takes
    SHARE UPDATE EXCLUSIVE on both."""
    assert locks(analyze("REINDEX INDEX people_note;", _ctx(people=PEOPLE)), 0) == {
        "people_note": "ACCESS EXCLUSIVE", "people": "SHARE"}
    assert locks(analyze("REINDEX INDEX CONCURRENTLY people_note;", _ctx(people=PEOPLE)), 0) == {
        "people_note": "SHARE UPDATE EXCLUSIVE", "people": "SHARE UPDATE EXCLUSIVE"}
