"""Precision, transactions, versions, sizes and suppression as the issue describes them."""
from bot.risk import Context, Severity, TableStats, analyze

from risk_helpers import codes, finding


def _old(table="t", **cols):
    return Context(tables={table: TableStats(columns=cols)})


# ---- precision: binary-coercible type changes are not rewrites
def test_varchar_widening_and_text_are_not_rewrites():
    ctx = _old(name="varchar(50)", price="numeric(10,2)", net="cidr")
    for sql in ("ALTER TABLE t ALTER COLUMN name TYPE varchar(100);",
                "ALTER TABLE t ALTER COLUMN name TYPE text;",
                "ALTER TABLE t ALTER COLUMN price TYPE numeric(12,2);",
                "ALTER TABLE t ALTER COLUMN net TYPE inet;"):
        r = analyze(sql, ctx)
        assert "MG306" not in [f.code for f in r.findings], sql
        assert r.statements[0].rewrite is False


def test_real_type_changes_are_rewrites():
    ctx = _old(id="integer", name="varchar(50)", price="numeric(10,2)")
    for sql in ("ALTER TABLE t ALTER COLUMN id TYPE bigint;",
                "ALTER TABLE t ALTER COLUMN name TYPE varchar(20);",
                "ALTER TABLE t ALTER COLUMN price TYPE numeric(12,4);"):
        r = analyze(sql, ctx)
        assert finding(r, "MG306").severity is Severity.HIGH, sql
        assert r.statements[0].rewrite is True


def test_type_change_with_unknown_old_type_says_so():
    f = finding(analyze("ALTER TABLE t ALTER COLUMN c TYPE text;"), "MG306")
    assert f.severity is Severity.MEDIUM and "old type unknown" in f.message


def test_type_known_from_earlier_in_file():
    r = analyze("ALTER TABLE t ADD COLUMN c varchar(10);\nALTER TABLE t ALTER COLUMN c TYPE varchar(20);")
    assert "MG306" not in [f.code for f in r.findings]


def test_unique_is_never_told_to_use_not_valid():
    r = analyze("ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);")
    f = finding(r, "MG204")
    assert "USING INDEX" in f.fix and "CONCURRENTLY" in f.fix
    assert "MG202" not in [x.code for x in r.findings]
    assert "NOT VALID;" not in f.fix


def test_objects_created_in_the_same_file_are_exempt():
    sql = """
        CREATE TABLE accounts (id bigint PRIMARY KEY, owner bigint, email text);
        CREATE INDEX accounts_owner_idx ON accounts (owner);
        CREATE UNIQUE INDEX accounts_email_key ON accounts (email);
        ALTER TABLE accounts ADD CONSTRAINT accounts_owner_fk FOREIGN KEY (owner) REFERENCES users (id);
        ALTER TABLE accounts ADD COLUMN created_at timestamptz NOT NULL;
        ALTER TABLE accounts ALTER COLUMN email SET NOT NULL;
    """
    r = analyze(sql)
    found = [f.code for f in r.findings]
    for code in ("MG101", "MG109", "MG201", "MG303", "MG208", "MG603"):
        assert code not in found, code
    # only the existing table the foreign key points at is locked strongly
    assert "users" in finding(r, "MG601").message and "accounts" not in finding(r, "MG601").message


def test_set_lock_timeout_is_honoured():
    assert "MG601" in codes("ALTER TABLE t ADD COLUMN c int;")
    assert "MG601" not in codes("SET lock_timeout = '2s';\nALTER TABLE t ADD COLUMN c int;")
    assert "MG601" not in codes("SELECT set_config('lock_timeout', '2s', true);\nALTER TABLE t ADD COLUMN c int;")
    assert "MG601" in codes("SET lock_timeout = 0;\nALTER TABLE t ADD COLUMN c int;")


def test_defaults_constant_cheap_volatile_not():
    assert "MG301" not in codes("ALTER TABLE t ADD COLUMN c int DEFAULT 0;")
    assert "MG301" not in codes("ALTER TABLE t ADD COLUMN c timestamptz DEFAULT now() - interval '1 day';")
    assert "MG301" in codes("ALTER TABLE t ADD COLUMN c float8 DEFAULT random();")
    assert "MG302" in codes("ALTER TABLE t ADD COLUMN c int DEFAULT 0;", Context(pg_version=10))
    unknown = finding(analyze("ALTER TABLE t ADD COLUMN c text DEFAULT make_code();"), "MG301")
    assert unknown.severity is Severity.MEDIUM
    assert "MG301" not in codes("ALTER TABLE t ADD COLUMN c text DEFAULT make_code();",
                                Context(functions={"make_code": "stable"}))
    assert "MG301" in codes("ALTER TABLE t ADD COLUMN c text DEFAULT make_code();",
                            Context(functions={"make_code": "volatile"}))


def test_set_not_null_after_validated_check_is_silent_on_pg12_plus():
    sql = ("ALTER TABLE t ADD CONSTRAINT c_nn CHECK (c IS NOT NULL) NOT VALID;\nCOMMIT;\n"
           "ALTER TABLE t VALIDATE CONSTRAINT c_nn;\nALTER TABLE t ALTER COLUMN c SET NOT NULL;")
    assert "MG208" not in codes(sql, Context(pg_version=16))
    assert "MG208" in codes(sql, Context(pg_version=11))
    assert "PG 18" in finding(analyze("ALTER TABLE t ALTER COLUMN c SET NOT NULL;", Context(pg_version=18)),
                              "MG208").message


# ---- transactions
def test_concurrently_inside_begin_commit_is_critical():
    r = analyze("BEGIN;\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);\nCOMMIT;", Context(assume_in_transaction=False))
    f = finding(r, "MG103")
    assert f.severity is Severity.CRITICAL and f.line == 2
    assert r.statements[1].in_transaction is True


def test_runner_runs_concurrently_alone_but_flags_the_mixed_file():
    r = analyze("CREATE TABLE t2 (id bigint);\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON users (a);")
    assert "MG103" not in [f.code for f in r.findings]
    assert "MG607" in [f.code for f in r.findings]
    assert [s.in_transaction for s in r.statements] == [True, False]


def test_lock_held_across_later_statements_of_the_transaction():
    sql = "BEGIN;\nALTER TABLE accounts ADD COLUMN plan text;\nUPDATE invoices SET total = 0 WHERE total IS NULL;\nCOMMIT;\n"
    f = finding(analyze(sql, Context(assume_in_transaction=False)), "MG603")
    assert f.line == 3 and "line 2" in f.message
    assert "MG603" not in codes("BEGIN;\nALTER TABLE a ADD COLUMN p text;\nCOMMIT;\nUPDATE b SET x = 0 WHERE id = 1;",
                                Context(assume_in_transaction=False))


def test_begin_without_commit_and_nested_begin():
    assert "MG606" in codes("BEGIN;\nCREATE TABLE t (id bigint);", Context(assume_in_transaction=False))
    assert "MG605" in codes("BEGIN;\nBEGIN;\nCOMMIT;", Context(assume_in_transaction=False))
    # a BEGIN ... COMMIT block is a transaction of its own, under Prisma and Guardian's apply alike
    assert "MG605" not in codes("BEGIN;\nSELECT 1;\nCOMMIT;")
    assert "MG605" in codes("SELECT 1;\nROLLBACK;")  # discards the runner's transaction


# ---- sizes and versions
def test_index_severity_follows_table_size():
    sql = "CREATE INDEX i ON users (email);"
    small = analyze(sql, Context(tables={"users": TableStats(rows=50)}))
    big = analyze(sql, Context(tables={"users": TableStats(rows=50_000_000)}))
    huge = analyze(sql, Context(tables={"users": TableStats(rows=500_000_000)}))
    assert finding(small, "MG101").severity is Severity.LOW
    assert small.risk is Severity.LOW  # the lock-timeout advice is scaled too
    assert finding(big, "MG101").severity is Severity.HIGH
    assert finding(huge, "MG101").severity is Severity.CRITICAL
    assert big.risk is Severity.HIGH and huge.risk is Severity.CRITICAL


def test_unbatched_update_on_large_table_needs_the_context():
    sql = "UPDATE events SET archived = true WHERE created_at < '2020-01-01';"
    assert "MG702" not in codes(sql)
    assert "MG702" in codes(sql, Context(tables={"events": TableStats(rows=5_000_000)}))
    assert "MG701" in codes("DELETE FROM events;")
    assert finding(analyze("DELETE FROM events;"), "MG701").severity is Severity.CRITICAL


def test_version_changes_verdicts():
    assert "MG106" in codes("CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);", Context(pg_version=14))
    assert "MG106" not in codes("CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);",
                                Context(pg_version=14, pg_minor=9))
    enum = finding(analyze("ALTER TYPE mood ADD VALUE 'meh';", Context(pg_version=11)), "MG509")
    assert enum.severity is Severity.HIGH


# ---- suppression
def test_accept_with_reason_is_recorded_and_lowers_risk():
    r = analyze("-- guardian: accept MG101 because users has 40 rows\nCREATE INDEX i ON users (email);",
                Context(disabled=frozenset({"MG601", "MG602"})))
    f = finding(r, "MG101")
    assert f.accepted and f.accept_reason == "users has 40 rows"
    assert r.risk is Severity.LOW


def test_accept_by_name_and_trailing_comment():
    r = analyze("CREATE INDEX i ON users (email); -- guardian: accept create-index-non-concurrent because tiny")
    assert finding(r, "MG101").accepted


def test_accept_without_reason_is_a_finding_and_accepts_nothing():
    r = analyze("-- guardian: accept MG101\nCREATE INDEX i ON users (email);")
    assert not finding(r, "MG101").accepted
    assert finding(r, "MG003").line == 1


def test_accept_of_unknown_code_is_reported():
    assert "MG004" in codes("-- guardian: accept MG999 because typo\nSELECT 1;")


def test_disabled_rules_do_not_fire_and_opt_in_rules_need_enabling():
    assert "MG101" not in codes("CREATE INDEX i ON users (email);", Context(disabled=frozenset({"MG101"})))
    sql = "ALTER TABLE t ADD COLUMN q bigint;"
    assert "MG313" not in codes(sql)
    assert "MG313" in codes(sql, Context(enabled=frozenset({"add-column-breaks-positional-insert"})))


def test_opaque_code_is_unknown_risk_needing_a_human():
    r = analyze("DO $$ BEGIN EXECUTE 'DROP TABLE ' || 'x'; END $$;")
    assert r.risk is Severity.HIGH
    assert any("needs a human" in reason for reason in r.reasons)


def test_unique_index_on_a_column_added_empty_in_this_file_cannot_hit_duplicates():
    sql = 'ALTER TABLE "Recipient" ADD COLUMN "templateId" INTEGER;\n' \
          'CREATE UNIQUE INDEX "r_t_e_key" ON "Recipient"("templateId", "email");'
    assert "MG109" not in codes(sql)
    assert "MG109" in codes('CREATE UNIQUE INDEX "r_e_key" ON "Recipient"("email");')


def test_catalogue_type_spellings_from_format_type_are_understood():
    ctx = _old(name="character varying(50)", ts="timestamp(3) without time zone", price="numeric(10,2)")
    assert "MG306" not in codes("ALTER TABLE t ALTER COLUMN name TYPE varchar(80);", ctx)
    assert "MG306" not in codes("ALTER TABLE t ALTER COLUMN ts TYPE timestamp(6);", ctx)
    assert finding(analyze("ALTER TABLE t ALTER COLUMN ts TYPE timestamptz;", ctx), "MG306").severity is Severity.MEDIUM
    assert finding(analyze("ALTER TABLE t ALTER COLUMN name TYPE integer USING name::integer;", ctx),
                   "MG306").severity is Severity.HIGH


def test_timeouts_set_by_the_runner_silence_the_timeout_rules():
    from bot.risk import Context, TableStats, analyze

    sql = "ALTER TABLE users ADD COLUMN nickname text;\nUPDATE users SET nickname = email;\n"
    ctx = {"tables": {"users": TableStats(rows=5_000_000, bytes=2_000_000_000)}}
    plain = {f.code for f in analyze(sql, Context(**ctx)).findings}
    managed = {f.code for f in analyze(sql, Context(**ctx, runner_lock_timeout=True,
                                                    runner_statement_timeout=True)).findings}
    assert {"MG601", "MG602"} <= plain
    assert not {"MG601", "MG602"} & managed
    assert managed  # the other hazards stay


def test_long_names_are_found_in_the_statement_that_has_them_only():
    """The 64-byte pre-check runs once per parsed piece; each statement still gets its own verdict."""
    long_name = "a" * 70
    sql = (f"CREATE TABLE short_one (id bigint);\nCREATE INDEX {long_name} ON short_one (id);\n"
           f"COMMENT ON TABLE short_one IS '{'b' * 80}';\nCREATE TABLE \"{'c' * 65}\" (id bigint);\n")
    r = analyze(sql)
    assert [(f.statement, f.line) for f in r.findings if f.code == "MG805"] == [(1, 2), (3, 4)]
    assert all(f.code != "MG805" for f in analyze("CREATE TABLE t (id bigint, " + "x" * 60 + " int);").findings)


def test_rules_only_read_the_engine_state():
    """No rule module assigns to or mutates the State (`st`): the engine's state update (bot/risk/update.py)
    writes it, including which rules fired (State.fired, fired_in_tx), the renamed-away types and dropped views
    (State.rename_candidates) and the file's CHECKs (State.checks)."""
    import ast
    from pathlib import Path

    from bot.risk import rules

    still_writing = set()
    mutators = {"append", "add", "update", "clear", "pop", "setdefault", "discard", "remove", "extend"}
    writes = []
    for path in sorted(Path(rules.__file__).parent.glob("*.py")):
        for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = n.targets if isinstance(n, ast.Assign) else [n.target] if isinstance(n, ast.AugAssign) else []
            written = [t for t in targets for x in ast.walk(t)
                       if isinstance(x, ast.Attribute) and isinstance(x.value, ast.Name) and x.value.id == "st"]
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in mutators \
                    and ast.unparse(n.func.value).startswith("st."):
                written.append(n)
            writes += [(path.name, n.lineno) for _ in written[:1]]
    assert {name for name, _ in writes} == still_writing, writes


def test_rules_leave_the_state_as_they_found_it():
    """What the static test above cannot see (a rule changing a dict it read out of the State): every rule
    family run on each statement of files that exercise the stateful rules, the State compared before and after."""
    import copy
    from pathlib import Path

    from bot.risk.catalogue import plan_for
    from bot.risk.engine import _ahead
    from bot.risk.parse import RawStatement, parse
    from bot.risk.state import State, Stmt
    from bot.risk.update import update

    swap = ("CREATE TYPE mood_new AS ENUM ('a', 'b');\nALTER TABLE p ALTER COLUMN m TYPE mood_new USING m::text::mood_new;\n"
            "ALTER TYPE mood RENAME TO mood_old;\nALTER TYPE mood_new RENAME TO mood;\nDROP TYPE mood_old;\n"
            "DROP VIEW v;\nCREATE VIEW v AS SELECT 1 AS x;\n")
    checks = ("ALTER TABLE acct ADD CONSTRAINT pos CHECK (bal >= 0) NOT VALID;\nALTER TABLE acct VALIDATE CONSTRAINT pos;\n"
              "ALTER TABLE acct DROP CONSTRAINT pos, ALTER COLUMN bal TYPE bigint, ADD CONSTRAINT pos2 CHECK (bal > 0);\n"
              "ALTER TABLE acct ADD COLUMN c int CHECK (c > 0);\nALTER TABLE acct ALTER COLUMN c TYPE bigint;\n")
    corpus = Path(__file__).resolve().parents[1] / "fixtures" / "corpus"
    files = [swap, checks] + [p.read_text(encoding="utf-8") for p in sorted(corpus.rglob("*.sql"))[:120] if p.is_file()]
    ctx = Context(tables={"acct": TableStats(columns={"bal": "integer"}, checks=("bal",)),
                          "p": TableStats(columns={"m": "mood"})})
    ran = 0
    for sql in files:
        st = State(ctx=ctx)
        for raw in parse(sql):
            if not isinstance(raw, RawStatement):
                continue
            fx, plan, _, _ = _ahead(raw, ctx)
            s = Stmt(raw, fx, st.tx_open, st.explicit)
            before = copy.deepcopy({k: getattr(st, k) for k in State.__slots__ if k != "ctx"})
            hits = []
            for check, stateless in plan:
                hits += check(s, None if stateless else st)
                ran += 1
            after = {k: getattr(st, k) for k in State.__slots__ if k != "ctx"}
            assert after == before, (sql[:80], raw.text[:80], [k for k in after if after[k] != before[k]])
            update(s, st, hits)
    assert ran > 1000
    states = []
    for sql in (swap, checks):
        st = State(ctx=ctx)
        for raw in parse(sql):
            s = Stmt(raw, _ahead(raw, ctx)[0], False, False)
            update(s, st, [])
        states.append(st)
    # the engine's update keeps what the rules read: the swap's rename and view drop, the file's CHECKs
    assert states[0].rename_candidates == [(2, "mood_old"), (5, "view:v")]
    assert states[1].checks == {"acct": {"pos2": (("bal",), True), "acct_c_check": (("c",), True)}}
