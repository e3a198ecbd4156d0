"""The rollout card's Targets file over signed HTTP: the per-target table as CSV in the rollout's thread, its rows
the store's, no URL in it, one upload at a time; 120 tenant schemas on real PostgreSQL, the strict stand-in."""
from __future__ import annotations

import csv
import io
import threading

import pytest

from bot.slack.ids import BUTTON_LABELS, ActionId
from bot.slack.sender import SlackUser
from fleet_rig import fleet_toml, mark_applied, tenant_schemas
from flow_harness import APPROVER_A, CHANNEL, OUTSIDER
from test_flow_fleet_controls import M1, M2, break_canary, rollout_card
from test_flow_fleet_rollout import plan_and_approve

COMPLETE = "files.completeUploadExternal"


@pytest.fixture
def tenants(harness, make_database, monkeypatch) -> tuple[str, list[str]]:
    return tenant_schemas(harness, make_database, monkeypatch, (M1, M2))


def click_file(harness, rid: int, user: str, reply: str) -> None:
    sent = harness.sender.block_action(ActionId.FLEET_TARGETS_FILE.value, value=str(rid),
                                       user=SlackUser(id=user, name=user), block_id=f"fleet_actions.{rid}",
                                       channel_id=CHANNEL, response_url=harness.standin.response_url(reply))
    assert sent.status == 200, sent


def thread_files(harness, rid: int) -> list[dict]:
    request = harness.store.get_request(rid)
    return [m for m in harness.standin.messages(CHANNEL)
            if m.get("thread_ts") == request.thread_ts and m.get("subtype") == "file_share"]


@pytest.mark.parametrize("harness", [("prisma", fleet_toml())], indirect=True)
def test_targets_file_uploads_the_stores_rows_once_into_the_thread(harness, tenants) -> None:
    url, schemas = tenants
    for s in schemas[:3]:
        mark_applied(url, s, *M1)
        mark_applied(url, s, *M2)  # excluded: already applied at approval
    rid = plan_and_approve(harness)
    break_canary(url, schemas[30])  # wave 2 fails and halts: succeeded, failed and waiting targets
    harness.run_jobs()
    assert harness.store.get_rollout(rid).state == "halted"
    assert BUTTON_LABELS[ActionId.FLEET_TARGETS_FILE] in rollout_card(harness, rid)

    while harness.standin.limits.take(COMPLETE) == 0:  # Slack's bucket for the upload's last call is empty: the
        pass                                           # first upload waits out a 429, so it is in flight a while
    first = threading.Thread(target=click_file, args=(harness, rid, OUTSIDER, "file1"))  # anyone in the channel
    first.start()
    harness.standin.wait_for("files.getUploadURLExternal", timeout=20)
    click_file(harness, rid, APPROVER_A, "file2")
    second = harness.replies("file2")
    first.join(timeout=30)
    assert any("already on its way" in r for r in second), second
    assert any("Uploaded the table of 120 targets" in r for r in harness.replies("file1"))
    assert harness.standin.throttled(COMPLETE), "the first upload was not held up: the test proves nothing"
    shared = thread_files(harness, rid)
    assert len(shared) == 1 and len(shared[0]["files"]) == 1, shared  # the second click did not post it again
    file_id = shared[0]["files"][0]["id"]
    assert harness.standin.files[file_id].filename == f"rollout-{rid}-targets.csv"
    content = harness.standin.file_content(file_id).decode()
    assert url not in content and "://" not in content and "password" not in content

    rows = list(csv.DictReader(io.StringIO(content)))
    store = harness.store.list_fleet_targets(rid)
    assert [r["target"] for r in rows] == [t.target for t in store] and len(rows) == 120
    for row, t in zip(rows, store):
        assert (row["server"], row["state"], row["wave"], row["attempt"]) == (
            t.server, t.state, "" if t.wave is None else str(t.wave), str(t.attempt)), (row, t)
        assert row["started_at"] == (t.started_at.isoformat() if t.started_at else "")
        assert row["finished_at"] == (t.finished_at.isoformat() if t.finished_at else "")
        if t.started_at and t.finished_at:
            assert float(row["duration_s"]) == pytest.approx((t.finished_at - t.started_at).total_seconds(), abs=1e-3)
        assert row["error"] == ((t.note or "").splitlines()[0] if t.state == "failed" else "")
    by_name = {r["target"]: r for r in rows}
    assert {by_name[s]["state"] for s in schemas[:3]} == {"excluded"}
    assert by_name[schemas[0]]["ledger_at_approval"] == "already applied"
    assert by_name[schemas[30]]["state"] == "failed" and "accounts" in by_name[schemas[30]]["error"]
    assert by_name[schemas[30]]["ledger_at_approval"] == f"pending: {M1[0]}, {M2[0]}"
    assert {r["state"] for r in rows} >= {"succeeded", "failed", "waiting", "excluded"}

    click_file(harness, rid, APPROVER_A, "file3")  # once the upload is done, the next click uploads a fresh table
    assert any("Uploaded" in r for r in harness.replies("file3", timeout=20))
    assert len(thread_files(harness, rid)) == 2
