"""MG931 out-of-order-migration (#69): attached to a file's report by whoever knows the history."""
import json

from bot.risk import Context, Report, Severity, analyze
from bot.risk.rules.repository import attach_out_of_order


NEWER = ("20240301000000_add_orders", "20240310000000_add_items")
RUNNER = Context(runner_lock_timeout=True, runner_statement_timeout=True)  # as the flow analyses files


def test_out_of_order_finding_raises_the_risk_and_names_the_newest_applied():
    sql = "ALTER TABLE users ADD COLUMN nickname text;\n"
    plain = analyze(sql, RUNNER)
    assert plain.risk == Severity.LOW
    report = attach_out_of_order(plain, sql, NEWER, RUNNER)
    first = report.findings[0]
    assert (first.code, first.severity, first.line, first.statement) == ("MG931", Severity.MEDIUM, 1, None)
    assert "20240310000000_add_items and 1 more" in first.message and not first.accepted
    assert report.risk == Severity.MEDIUM and report.reasons[0] == "medium: out-of-order-migration at line 1"
    assert report.findings[1:] == plain.findings and report.statements == plain.statements
    assert Report.from_json(json.loads(json.dumps(report.to_json()))) == report  # stored with the request


def test_out_of_order_accepted_in_the_file_or_disabled():
    sql = ("-- guardian: accept MG931 because it only adds a column add_orders does not touch\n"
           "ALTER TABLE users ADD COLUMN nickname text;\n")
    plain = analyze(sql, RUNNER)
    assert [f.code for f in plain.findings] == ["MG004"]  # the engine alone cannot know MG931 applies
    report = attach_out_of_order(plain, sql, NEWER, RUNNER)
    assert [(f.code, f.accepted) for f in report.findings] == [("MG931", True)]
    assert report.findings[0].accept_reason == "it only adds a column add_orders does not touch"
    assert report.risk == Severity.LOW and report.reasons == ("no findings (1 accepted)",)
    assert attach_out_of_order(plain, sql, (), RUNNER) is plain
    off = Context(runner_lock_timeout=True, disabled=frozenset({"out-of-order-migration"}))
    assert attach_out_of_order(plain, sql, NEWER, off) is plain
    # a reason is required, as for every rule
    bare = "-- guardian: accept MG931\nSELECT 1;\n"
    unaccepted = attach_out_of_order(analyze(bare, RUNNER), bare, NEWER, RUNNER)
    assert unaccepted.risk == Severity.MEDIUM and "MG003" in [f.code for f in unaccepted.findings]
