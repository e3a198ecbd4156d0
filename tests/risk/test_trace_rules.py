"""MG941 (hazard #62), attached from a rehearsal's observations as `guardian plan` does; pure, no database
(tests/pg/test_pg_rehearsal.py runs the real rehearsal)."""
from types import SimpleNamespace

from bot.risk import Context, TableStats, analyze
from bot.risk.rules.trace import attach_observed_rewrites

SQL = ("BEGIN;\n"
       "ALTER TABLE items ADD COLUMN code int DEFAULT next_code();\n"
       "ALTER TABLE items ALTER COLUMN n TYPE bigint;\n")  # no COMMIT: MG606 trails the statement findings


def _seen(line, rewrites=("items",), mode="ACCESS EXCLUSIVE"):
    return SimpleNamespace(line=line, rewrites=rewrites, duration_ms=12.5,
                           observed_locks=(SimpleNamespace(relation="items", mode=mode),))


def test_a_rewrite_the_analysis_did_not_predict_is_attached_in_statement_order():
    report = analyze(SQL)
    assert not report.statements[1].rewrite and report.statements[2].rewrite  # unknown volatility; int -> bigint
    traced = attach_observed_rewrites(report, SQL, [_seen(1, ()), _seen(2), _seen(3)], Context())
    added = [f for f in traced.findings if f.code == "MG941"]
    assert [(f.statement, f.line, f.severity.value) for f in added] == [(1, 2, "high")]  # not statement 2: known
    codes = [f.code for f in traced.findings]
    assert codes.index("MG941") > max(i for i, f in enumerate(traced.findings) if f.statement == 1 and f.code != "MG941")
    assert codes[-1] == "MG606" and traced.risk.value in ("high", "critical")
    assert "12 ms" in added[0].message


def test_size_only_a_rewrite_under_access_exclusive_and_the_switch():
    report = analyze(SQL)
    big = Context(tables={"items": TableStats(rows=50_000_000)})
    small = Context(tables={"items": TableStats(rows=500)})
    assert [f.severity.value for f in attach_observed_rewrites(report, SQL, [_seen(2)], big).findings
            if f.code == "MG941"] == ["high"]
    assert [f.severity.value for f in attach_observed_rewrites(report, SQL, [_seen(2)], small).findings
            if f.code == "MG941"] == ["low"]
    assert attach_observed_rewrites(report, SQL, [_seen(2, mode="SHARE")], Context()) is report
    off = Context(disabled=frozenset({"rewrite-observed-under-lock"}))
    assert attach_observed_rewrites(report, SQL, [_seen(2)], off) is report
