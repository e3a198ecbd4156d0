"""The trace family attached from a rehearsal's observations as `guardian plan` does; pure, no database
(tests/pg/test_pg_rehearsal*.py run the real rehearsal)."""
from bot.pg.rehearsal import IndexChange, ObservedLock, StatementRehearsal, TableScan
from bot.risk import Context, TableStats, analyze
from bot.risk.models import Column, Constraint, Index
from bot.risk.rules.trace import attach_rehearsal

SQL = ("BEGIN;\n"
       "ALTER TABLE items ADD COLUMN code int DEFAULT next_code();\n"
       "ALTER TABLE items ALTER COLUMN n TYPE bigint;\n")  # no COMMIT: MG606 trails the statement findings
BIG = Context(tables={"items": TableStats(rows=2_000_000)})


def _seen(index, line=None, rewrites=("items",), mode="ACCESS EXCLUSIVE", **more):
    return StatementRehearsal(index=index, line=line or index + 1, kind="AlterTableStmt", transactional=True,
                              rehearsed="error" not in more, rewrites=rewrites, duration_ms=12.5,
                              observed_locks=(ObservedLock(relation="items", mode=mode),), **more)


def _codes(report, code):
    return [f for f in report.findings if f.code == code]


def test_a_rewrite_the_analysis_did_not_predict_is_attached_in_statement_order():
    report = analyze(SQL)
    assert not report.statements[1].rewrite and report.statements[2].rewrite  # unknown volatility; int -> bigint
    traced = attach_rehearsal(report, SQL, [_seen(0, rewrites=()), _seen(1), _seen(2)], Context())
    added = _codes(traced, "MG941")
    assert [(f.statement, f.line, f.severity.value) for f in added] == [(1, 2, "high")]  # not statement 2: known
    codes = [f.code for f in traced.findings]
    assert codes.index("MG941") > max(i for i, f in enumerate(traced.findings) if f.statement == 1 and f.code != "MG941")
    assert codes[-1] == "MG606" and traced.risk.value in ("high", "critical")
    assert "12 ms" in added[0].message


def test_statements_sharing_a_line_are_matched_by_index():
    sql = "ALTER TABLE items ADD COLUMN code int DEFAULT next_code(); ALTER TABLE items ALTER COLUMN n TYPE bigint;\n"
    report = analyze(sql)
    traced = attach_rehearsal(report, sql, [_seen(1, line=1), _seen(0, line=1)], Context())
    assert [f.statement for f in _codes(traced, "MG941")] == [0]  # statement 1's rewrite was predicted


def test_size_only_a_rewrite_under_access_exclusive_and_the_switch():
    report = analyze(SQL)
    small = Context(tables={"items": TableStats(rows=500)})
    assert [f.severity.value for f in _codes(attach_rehearsal(report, SQL, [_seen(1)], BIG), "MG941")] == ["high"]
    assert [f.severity.value for f in _codes(attach_rehearsal(report, SQL, [_seen(1)], small), "MG941")] == ["low"]
    assert attach_rehearsal(report, SQL, [_seen(1, mode="SHARE")], Context()) is report
    off = Context(disabled=frozenset({"rewrite-observed-under-lock"}))
    assert attach_rehearsal(report, SQL, [_seen(1)], off) is report


def test_an_index_rebuild_is_raised_sized_and_can_be_accepted():
    sql = "ALTER TABLE items ALTER COLUMN email TYPE varchar(200);\n"
    rebuilt = (IndexChange(index="items_lower_email_idx", table="items", lock="ACCESS EXCLUSIVE"),)
    seen = _seen(0, rewrites=(), rebuilt_indexes=rebuilt)
    (f,) = _codes(attach_rehearsal(analyze(sql, BIG), sql, [seen], BIG), "MG942")
    assert f.severity.value == "high" and "items_lower_email_idx on items" in f.message and "~2,000,000 rows" in f.message
    accepted = "-- guardian: accept MG942 because rebuilt at night\n" + sql
    report = analyze(accepted, BIG)
    assert [n.code for n in report.findings if n.code == "MG004"]  # the engine cannot see MG942
    traced = attach_rehearsal(report, accepted, [seen], BIG)
    (f,) = _codes(traced, "MG942")
    assert f.accepted and f.accept_reason == "rebuilt at night" and not _codes(traced, "MG004")
    reindex = "REINDEX TABLE items;\n"  # the analysis says REINDEX rebuilds: nothing added
    assert not _codes(attach_rehearsal(analyze(reindex, BIG), reindex, [seen], BIG), "MG942")


def test_a_scan_is_raised_only_under_a_lock_that_blocks_writes_and_when_not_predicted():
    sql = "SELECT count(*) FROM items;\n"
    report = analyze(sql, BIG)

    def scanned(lock):
        seen = _seen(0, rewrites=(), scans=(TableScan(relation="items", seq_scans=1, rows_read=2_000_000,
                                                        index_scans=0, lock=lock),))
        return _codes(attach_rehearsal(report, sql, [seen], BIG), "MG943")
    assert [f.severity.value for f in scanned("SHARE")] == ["high"]
    assert "every write to items waits (SHARE)" in scanned("SHARE")[0].message
    assert "2,000,000 rows read" in scanned("ACCESS EXCLUSIVE")[0].message
    assert scanned("ROW EXCLUSIVE") == []
    update = "UPDATE items SET n = 1 WHERE n IS NULL;\n"  # the analysis knows an UPDATE scans
    seen = _seen(0, rewrites=(), scans=(TableScan(relation="items", seq_scans=1, rows_read=9, index_scans=0,
                                                  lock="ACCESS EXCLUSIVE"),))
    assert not _codes(attach_rehearsal(analyze(update, BIG), update, [seen], BIG), "MG943")


def test_a_failure_is_critical_unless_the_rehearsal_could_not_judge_it():
    sql = "ALTER TABLE items ADD COLUMN code int NOT NULL;\n"
    report = analyze(sql, BIG)
    error = 'column "code" of relation "items" contains null values (SQLSTATE 23502)'
    failed = _seen(0, rewrites=(), error=error, sqlstate="23502")
    (f,) = _codes(attach_rehearsal(report, sql, [failed], BIG), "MG945")
    assert f.severity.value == "critical" and error in f.message
    busy = _seen(0, rewrites=(), error="canceling statement due to lock timeout (SQLSTATE 55P03)", sqlstate="55P03")
    assert attach_rehearsal(report, sql, [busy], BIG) is report  # another session held the rehearsal database
    skipped = _seen(0, rewrites=(), error=error, sqlstate="23502", after_skip=True)
    assert attach_rehearsal(report, sql, [skipped], BIG) is report


def test_a_predicted_scan_that_did_not_happen_is_lowered_only_when_the_rehearsal_is_faithful():
    sql = "ALTER TABLE items ALTER COLUMN code SET NOT NULL;\n"
    report = analyze(sql, BIG)
    assert [f.severity.value for f in _codes(report, "MG208")] == ["high"]
    quiet = _seen(0, rewrites=())
    traced = attach_rehearsal(report, sql, [quiet], BIG)
    (f,) = _codes(traced, "MG208")
    assert f.severity.value == "low" and f.message.startswith(
        "rehearsal: no rewrite, no index build and no scan of items (~2,000,000 rows) in 12 ms")
    assert "lowered from high to low" in f.message and "SET NOT NULL" in f.message
    assert traced.risk.rank < report.risk.rank
    assert attach_rehearsal(report, sql, [quiet], BIG, faithful=False) is report  # another version, no counters
    assert attach_rehearsal(report, sql, [_seen(0, rewrites=(), after_skip=True)], BIG) is report
    scanned = _seen(0, rewrites=(), scans=(TableScan(relation="items", seq_scans=1, rows_read=5, index_scans=0,
                                                     lock="ACCESS EXCLUSIVE"),))
    assert [f.severity.value for f in _codes(attach_rehearsal(report, sql, [scanned], BIG), "MG208")] == ["high"]


def test_data_loss_and_compatibility_findings_are_never_lowered():
    sql = "ALTER TABLE items DROP COLUMN code;\nALTER TABLE items RENAME COLUMN n TO m;\nDROP TABLE items;\n"
    report = analyze(sql, BIG)
    quiet = [_seen(i, rewrites=()) for i in range(3)]
    assert {f.code for f in report.findings} >= {"MG502", "MG505", "MG501"}
    assert attach_rehearsal(report, sql, quiet, BIG) is report


def test_a_rebuild_the_analysis_already_names_gets_no_second_finding():
    sql = 'ALTER TABLE items ALTER COLUMN email TYPE text COLLATE "C";\n'
    report = analyze(sql, BIG)
    assert _codes(report, "MG308")  # collation change: rebuilds its indexes
    rebuilt = (IndexChange(index="items_email_idx", table="items", lock="ACCESS EXCLUSIVE"),)
    traced = attach_rehearsal(report, sql, [_seen(0, rewrites=(), rebuilt_indexes=rebuilt)], BIG)
    assert not _codes(traced, "MG942")


def test_an_index_build_is_raised_on_a_statement_the_analysis_expected_only_to_scan():
    """ATTACH PARTITION's effect says it scans; an index built there is still news (the analysis here thinks the
    partition's index matches the parent's)."""
    sql = "ALTER TABLE ev ATTACH PARTITION ev_p2 FOR VALUES FROM (100) TO (200);\n"
    idx = Index(name="ev_v_idx", columns=("v",), uses=("v",))
    ctx = Context(pg_version=15, runner_lock_timeout=True, runner_statement_timeout=True, tables={
        "ev": TableStats(partitioned=True, column_facts={"id": Column(not_null=True)}, partition_key="RANGE (id)",
                         index_facts=(idx,)),
        "ev_p2": TableStats(rows=2_000_000, column_facts={"id": Column(not_null=True)}, index_facts=(idx,),
                            constraints=(Constraint(name="b", kind="check", columns=("id",),
                                                    definition="CHECK (((id >= 100) AND (id < 200)))"),))})
    report = analyze(sql, ctx)
    assert report.statements[0].scan and report.risk.value == "low", report.findings
    built = (IndexChange(index="ev_p2_v_idx", table="ev_p2", lock="ACCESS EXCLUSIVE"),)
    (f,) = _codes(attach_rehearsal(report, sql, [_seen(0, rewrites=(), built_indexes=built)], ctx), "MG944")
    assert f.severity.value == "high" and "ev_p2_v_idx on ev_p2" in f.message


def test_an_index_built_on_a_table_this_file_created_is_not_news():
    sql = "CREATE TABLE kinds (id int NOT NULL);\nALTER TABLE kinds ADD PRIMARY KEY (id);\n"
    built = (IndexChange(index="kinds_pkey", table="kinds", lock="ACCESS EXCLUSIVE"),)
    seen = StatementRehearsal(index=1, line=2, kind="AlterTableStmt", transactional=True, rehearsed=True,
                              built_indexes=built, observed_locks=(ObservedLock(relation="kinds", mode="ACCESS EXCLUSIVE"),))
    assert not _codes(attach_rehearsal(analyze(sql, BIG), sql, [seen], BIG), "MG944")
