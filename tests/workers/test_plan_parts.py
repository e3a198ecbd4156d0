"""workers.plan splits a file into parts with the risk engine's one transaction classifier."""
from bot.risk import RULES, Context, analyze, transactional
from bot.risk.parse import split_statements
from workers.plan import plan_parts

MIXED = ("CREATE TABLE t2 (id bigint);\nCREATE INDEX CONCURRENTLY IF NOT EXISTS t2_id ON t2 (id);\n"
         "ALTER TYPE status ADD VALUE 'archived';\nVACUUM t2;\nREINDEX SCHEMA CONCURRENTLY public;\n"
         "ANALYZE t2;\nUPDATE t2 SET id = 1;\n")


def test_plan_runs_alone_what_the_report_marks_non_transactional():
    for version in (11, 16):
        kinds = [(p.kind, [x.text.split()[0] for x in p.pieces]) for p in plan_parts(MIXED, version)]
        assert kinds == [("tx", ["CREATE"]), ("alone", ["CREATE"])] + (
            [("alone", ["ALTER"]), ("alone", ["VACUUM"])] if version < 12 else
            [("tx", ["ALTER"]), ("alone", ["VACUUM"])]) + [("alone", ["REINDEX"]), ("tx", ["ANALYZE", "UPDATE"])]
        flags = [s.transactional for s in analyze(MIXED, Context(pg_version=version)).statements]
        assert [p.kind == "tx" for p in plan_parts(MIXED, version) for _ in p.pieces] == flags


def test_the_classifier_is_the_reports_flag_on_every_rule_example():
    checked = 0
    for rule in RULES:
        if rule.family == "input":
            continue  # undecodable bytes, syntax errors, nesting too deep to parse: not statements to run
        for sql in (rule.bad, rule.good):
            pieces = split_statements(sql)
            if not pieces or any(p.node_type is None for p in pieces):
                continue
            for version in (11, 16):
                report = analyze(sql, Context(pg_version=version)).statements
                assert len(report) == len(pieces), sql
                assert [transactional(p.node_type, p.node, version) for p in pieces] == \
                       [s.transactional for s in report], sql
                checked += len(pieces)
    assert checked > 300

