"""A migration dated before one the target already applied: the preview's risk report says so (MG931, #69)."""
from __future__ import annotations

from bot.models import RequestStatus as S
from bot.slack.ids import ActionId

from flow_harness import APPROVER_A
from test_flow_approval import ADD_COLUMN, plan


def _apply_orders(harness) -> None:
    """20240301000000_add_orders planned, approved and run on staging."""
    harness.add_migration("20240301000000_add_orders", "CREATE TABLE orders (id bigint PRIMARY KEY);\n")
    first = plan(harness)
    _, reply = harness.click(ActionId.APPROVE.value, first, APPROVER_A)
    harness.replies(reply)
    harness.run_jobs()
    assert harness.store.get_request(first).status is S.SUCCEEDED, harness.store.get_request(first).error


def test_older_file_merged_after_a_newer_one_was_applied_is_flagged_in_the_preview(harness):
    _apply_orders(harness)

    # a branch written before add_orders is merged now, together with a genuinely new migration
    harness.add_migration("20240215000000_add_nickname", ADD_COLUMN)
    harness.add_migration("20240401000000_add_note", "ALTER TABLE orders ADD COLUMN note text;\n")
    rid = plan(harness)
    request = harness.store.get_request(rid)
    assert request.status is S.AWAITING_APPROVAL
    by_name = {m.name: m for m in request.migrations}
    assert list(by_name) == ["20240215000000_add_nickname", "20240401000000_add_note"]
    late, new = by_name["20240215000000_add_nickname"], by_name["20240401000000_add_note"]
    flagged = [f for f in late.report["findings"] if f["code"] == "MG931"]
    assert len(flagged) == 1 and flagged[0]["severity"] == "medium" and flagged[0]["statement"] is None
    assert "already applied 20240301000000_add_orders" in flagged[0]["message"]
    assert late.risk == "medium" and request.risk == "medium"
    assert "MG931" not in [f["code"] for f in new.report["findings"]] and new.risk == "low"
    assert any("20240215000000_add_nickname: medium: out-of-order-migration" in r for r in request.risk_reasons)
    thread = "\n".join(harness.thread_texts(rid))
    assert "out-of-order-migration" in thread and "MG931" in thread


def test_accepting_the_order_in_the_file_is_shown_as_accepted(harness):
    _apply_orders(harness)

    harness.add_migration("20240215000000_add_nickname",
                          "-- guardian: accept MG931 because users and orders are unrelated\n" + ADD_COLUMN)
    rid = plan(harness)
    request = harness.store.get_request(rid)
    (m,) = request.migrations
    assert [(f["code"], f["accepted"]) for f in m.report["findings"]] == [("MG931", True)]
    assert m.risk == "low" and request.risk == "low"
    assert "users and orders are unrelated" in "\n".join(harness.thread_texts(rid))


def test_opt_in_rules_enabled_in_the_config_show_in_the_preview(harness):
    """[lint] enabled reaches the preview's analysis, not only `guardian lint` (here the naming policy)."""
    from bot.config import LintConfig
    from workers import runtime as runtime_module

    harness.add_migration("20240301000000_add_orders", 'CREATE TABLE "Orders" (id bigint PRIMARY KEY);\n')
    rid = plan(harness)
    assert "MG921" not in [f["code"] for m in harness.store.get_request(rid).migrations for f in m.report["findings"]]

    config = harness.config.model_copy(update={"lint": LintConfig(enabled=["naming-convention"])})
    rt = runtime_module.runtime()
    harness.flow.config = rt.config = rt.flow.config = config  # the bot's and the worker's flow
    rid = plan(harness)
    (m,) = harness.store.get_request(rid).migrations
    assert [f["code"] for f in m.report["findings"] if f["code"] == "MG921"] == ["MG921"]
