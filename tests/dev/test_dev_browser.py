"""The demo in real headless Chromium: plan, refuse an outsider, approve twice, watch backup/apply/verify; modals; a failed verify and its incident."""
from __future__ import annotations

import re

from playwright.sync_api import Error as PlaywrightError, Page, expect

from dev_harness import ARTIFACTS

RUN_TIMEOUT_MS = 120_000


def act_as(page: Page, user: str) -> None:
    page.get_by_test_id("user-switcher").select_option(user)
    expect(page.get_by_test_id("feed")).to_have_attribute("data-user", user)  # the channel as they see it


def type_command(page: Page, text: str) -> None:
    page.get_by_test_id("composer").fill(text)
    page.get_by_test_id("composer").press("Enter")


def card(page: Page, request_id: int):
    """The root message (status card) of a request, with its thread."""
    return page.get_by_test_id("root").filter(
        has=page.get_by_test_id("message").filter(has_text=f"Migration request #{request_id} ")).first


def plan(page: Page, env: str, args: str = "pending") -> int:
    """Type `/migrate plan <env> <args>`; the new request's number, read from the ephemeral reply."""
    opened = page.get_by_test_id("ephemeral").filter(has_text=re.compile(rf"Request #\d+ opened on {env}"))
    before = opened.count()
    type_command(page, f"/migrate plan {env} {args}")
    expect(page.get_by_test_id("ephemeral").filter(has_text=f"/migrate plan {env} {args}").last).to_be_visible()
    expect(opened).to_have_count(before + 1, timeout=30_000)
    return int(re.search(r"Request #(\d+) opened", opened.nth(before).inner_text()).group(1))


def click_on_card(page: Page, request_id: int, label: str) -> None:
    root = card(page, request_id)
    root.get_by_test_id("message").get_by_test_id("button").filter(has_text=re.compile(f"^{label}$")).click()


def shot(page: Page, name: str, focus=None) -> None:
    """A screenshot under test-artifacts/dev/, with ``focus`` (a locator) scrolled into view."""
    for _ in range(5 if focus is not None else 0):
        try:  # the page re-renders the feed when it changes; an element may be replaced under us
            focus.scroll_into_view_if_needed(timeout=2_000)
            break
        except PlaywrightError:
            page.wait_for_timeout(200)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_plan_approve_twice_and_watch_the_run_in_the_thread(page: Page) -> None:
    expect(page.get_by_test_id("composer")).to_be_visible()
    act_as(page, "U_DANA")
    rid = plan(page, "staging")
    root = card(page, rid)
    expect(root).to_contain_text("awaiting approval", timeout=60_000)
    # the card: header, fields, mentions, buttons with their styles; the thread: SQL in a code block, risk
    top = root.get_by_test_id("message")
    expect(top.get_by_test_id("block-header")).to_contain_text(f"Migration request #{rid}")
    expect(top.get_by_test_id("mention").first).to_have_text("@Dana Developer")
    expect(top.locator("[data-action-id=request_approve]")).to_have_attribute("data-style", "primary")
    expect(top.locator("[data-action-id=request_reject]")).to_have_attribute("data-style", "danger")
    replies = root.get_by_test_id("thread-reply")
    # one thread reply may carry several migrations' SQL (the preview is combined, bot/slack/batching.py)
    expect(replies.get_by_test_id("code-block").filter(has_text="CREATE INDEX orders_customer_id_idx")).to_be_visible()
    expect(replies.filter(has_text="Risk of").filter(has_text="high").first).to_be_visible()
    shot(page, "01-awaiting-approval", top)

    act_as(page, "U_EVE")
    click_on_card(page, rid, "Approve")
    refusal = page.get_by_test_id("ephemeral").filter(has_text="not an approver")
    expect(refusal).to_be_visible()
    expect(refusal.get_by_test_id("only-you")).to_be_visible()
    shot(page, "02-outsider-refused", refusal)

    act_as(page, "U_ALICE")
    expect(page.get_by_test_id("ephemeral").filter(has_text="not an approver")).to_have_count(0)  # Eve's alone
    click_on_card(page, rid, "Approve")
    expect(replies.filter(has_text="approved (1/2)")).to_be_visible()
    act_as(page, "U_BOB")
    click_on_card(page, rid, "Approve")
    expect(replies.filter(has_text="approved (2/2)")).to_be_visible()
    for step in ("backup", "apply", "verify"):
        expect(replies.filter(has_text=re.compile(rf"Request #{rid}: {step} succeeded"))).to_be_visible(
            timeout=RUN_TIMEOUT_MS)
    expect(replies.filter(has_text="verification passed")).to_be_visible()
    expect(root.get_by_test_id("message")).to_contain_text("succeeded", timeout=RUN_TIMEOUT_MS)
    expect(root.get_by_test_id("message").get_by_test_id("button")).to_have_count(0)
    shot(page, "03-run-succeeded", replies.last)


def test_production_approval_needs_the_typed_name_in_a_modal(page: Page) -> None:
    act_as(page, "U_DANA")
    rid = plan(page, "production")
    expect(card(page, rid)).to_contain_text("awaiting approval", timeout=60_000)
    act_as(page, "U_ALICE")
    click_on_card(page, rid, "Approve")
    modal = page.get_by_test_id("modal")
    expect(modal).to_be_visible()
    expect(page.get_by_test_id("modal-title")).to_contain_text(f"Approve #{rid}")
    field = modal.locator("[data-testid=modal-input][data-block-id=confirm_input]")
    field.fill("prod")
    page.get_by_test_id("modal-submit").click()
    error = modal.locator("[data-testid=modal-error][data-block-id=confirm_input]")
    expect(error).to_have_text("Type production exactly to approve.")
    shot(page, "04-modal-error")
    field.fill("production")
    page.get_by_test_id("modal-submit").click()
    expect(modal).to_be_hidden()
    expect(card(page, rid).get_by_test_id("thread-reply").filter(has_text="approved (1/2)")).to_be_visible()
    expect(page.get_by_test_id("ephemeral").filter(has_text=f"You approved request #{rid} (1/2)")).to_be_visible()


def apply_main_on_staging(page: Page) -> None:
    """Bring staging up to main first (when an earlier test has not), so the failing request holds one migration."""
    act_as(page, "U_DANA")
    rid = plan(page, "staging")
    root = card(page, rid)
    expect(root.get_by_test_id("message")).to_contain_text(re.compile("awaiting approval|cancelled"), timeout=60_000)
    if "cancelled" in root.get_by_test_id("message").inner_text():
        return  # nothing pending: main is applied already
    for approver in ("U_ALICE", "U_BOB"):
        act_as(page, approver)
        click_on_card(page, rid, "Approve")
    expect(root.get_by_test_id("message")).to_contain_text("succeeded", timeout=RUN_TIMEOUT_MS)


def test_a_failed_verification_opens_an_incident_and_is_rolled_back_from_its_thread(page: Page) -> None:
    apply_main_on_staging(page)
    act_as(page, "U_DANA")
    rid = plan(page, "staging", "pending --ref demo/verify-fails")
    root = card(page, rid)
    expect(root).to_contain_text("awaiting approval", timeout=60_000)
    act_as(page, "U_ALICE")
    click_on_card(page, rid, "Approve")
    replies = root.get_by_test_id("thread-reply")
    first = replies.filter(has_text=re.compile(r"approved \(1/\d\)"))
    expect(first).to_be_visible()
    if "(1/2)" in first.inner_text():  # two approvals when the analysis rates it high
        act_as(page, "U_BOB")
        click_on_card(page, rid, "Approve")
    replies = root.get_by_test_id("thread-reply")
    expect(replies.filter(has_text="verification failed.").first).to_be_visible(timeout=RUN_TIMEOUT_MS)
    expect(replies.filter(has_text="email_normalized IS NULL").first).to_be_visible()
    expect(replies.filter(has_text="failed at verify; the database holds the migration, but its checks failed"
                          ).first).to_be_visible()
    expect(replies.filter(has_text="returned false: 25,000 rows match, expected 0").first).to_be_visible()
    expect(root.get_by_test_id("message")).to_contain_text("failed", timeout=RUN_TIMEOUT_MS)
    # the incident opens in the request's thread; an approver rolls back from its card
    incident = replies.filter(has_text=re.compile(rf"Incident #\d+: request #{rid} on staging")).first
    expect(incident).to_be_visible(timeout=30_000)
    expect(incident).to_contain_text("open")
    expect(incident.locator("[data-action-id=incident_roll_back]")).to_have_text("Roll back")
    shot(page, "05-verify-failed-incident", incident)
    act_as(page, "U_EVE")
    incident.locator("[data-action-id=incident_roll_back]").click()
    expect(page.get_by_test_id("ephemeral").filter(has_text="approvers can roll back")).to_contain_text(
        "ask @Alice Approver or @Bob Approver")  # who to ask, by name (issue 17)
    act_as(page, "U_ALICE")
    incident.locator("[data-action-id=incident_roll_back]").click()
    started = replies.filter(has_text=re.compile(r"started rollback request #\d+"))
    expect(started).to_be_visible()
    expect(incident).to_contain_text("mitigating")
    expect(page.get_by_test_id("ephemeral").filter(has_text=re.compile(r"Rollback request #\d+ created"))).to_be_visible()
    shot(page, "06-rollback-started", started)
    # the rollback is a request of its own (the down SQL), on a card in the incident thread: another approver runs it
    back = int(re.search(r"rollback request #(\d+)", started.inner_text()).group(1))
    back_card = replies.filter(has_text=re.compile(rf"Migration request #{back} ")).first
    expect(back_card).to_contain_text("awaiting approval", timeout=60_000)
    act_as(page, "U_BOB")
    back_card.locator("[data-action-id=request_approve]").click()
    for step in ("backup", "apply", "verify"):
        expect(replies.filter(has_text=re.compile(rf"Request #{back}: {step} succeeded"))).to_be_visible(
            timeout=RUN_TIMEOUT_MS)
    expect(incident).to_contain_text("mitigated", timeout=RUN_TIMEOUT_MS)
    expect(incident).to_contain_text("rolled back")  # what the database holds now
    shot(page, "07-rolled-back", incident)


def test_who_approves_reminders_restore_notes_status_and_the_postmortem(page: Page, dev_run, pg_admin_url) -> None:
    """Issue 17 in the browser: the card names who must approve before and after the first approval, a reminder
    arrives (GUARDIAN_DEV_REMIND_AFTER=20s), /migrate status leads with the open incident, Restore backup puts
    the demo's customers back (orders references them), and a thread reply and a 📌 reach the post-mortem."""
    import psycopg

    from bot.local_services import with_database

    apply_main_on_staging(page)
    # --- who must approve: production always needs two, and Dana (the requester) is never one of them
    act_as(page, "U_DANA")
    prod = plan(page, "production")
    prod_card = card(page, prod)
    expect(prod_card).to_contain_text("awaiting approval", timeout=60_000)
    approvals = prod_card.get_by_test_id("message")
    expect(approvals).to_contain_text("0/2 — waiting for @Alice Approver and @Bob Approver")
    asked = prod_card.get_by_test_id("thread-reply").filter(has_text="Needs 2 approvals")
    expect(asked).to_contain_text("Waiting for @Alice Approver and @Bob Approver.")
    shot(page, "08-waiting-for-two", approvals)
    act_as(page, "U_ALICE")
    click_on_card(page, prod, "Approve")
    page.get_by_test_id("modal").locator("[data-testid=modal-input][data-block-id=confirm_input]").fill("production")
    page.get_by_test_id("modal-submit").click()
    expect(approvals).to_contain_text("1/2 — waiting for @Bob Approver", timeout=30_000)
    expect(approvals).to_contain_text("approved by @Alice Approver")
    expect(prod_card.get_by_test_id("thread-reply").filter(has_text="approved (1/2). Waiting for @Bob Approver.")
           ).to_be_visible()
    shot(page, "09-waiting-for-bob", approvals)
    # --- nobody acts: a reminder arrives in the thread, naming who is still needed
    reminder = prod_card.get_by_test_id("thread-reply").filter(has_text="Reminder: request")
    expect(reminder.first).to_contain_text("Waiting for @Bob Approver.", timeout=90_000)
    shot(page, "10-reminder", reminder.first)

    # --- a failed verify opens an incident; /migrate status leads with it
    act_as(page, "U_DANA")
    rid = plan(page, "staging", "pending --ref demo/verify-fails")
    root = card(page, rid)
    expect(root).to_contain_text("awaiting approval", timeout=60_000)
    act_as(page, "U_ALICE")
    click_on_card(page, rid, "Approve")
    replies = root.get_by_test_id("thread-reply")
    first = replies.filter(has_text=re.compile(r"approved \(1/\d\)"))
    expect(first).to_be_visible()
    if "(1/2)" in first.inner_text():
        act_as(page, "U_BOB")
        click_on_card(page, rid, "Approve")
    incident = replies.filter(has_text=re.compile(rf"Incident #\d+: request #{rid} on staging")).first
    expect(incident).to_be_visible(timeout=RUN_TIMEOUT_MS)
    number = int(re.search(r"Incident #(\d+)", incident.inner_text()).group(1))
    act_as(page, "U_BOB")
    type_command(page, "/migrate status")
    status = page.get_by_test_id("ephemeral").filter(has_text="Needs attention").last
    expect(status).to_be_visible(timeout=30_000)
    lines = [line for line in status.get_by_test_id("message-body").inner_text().splitlines() if line.strip()]
    assert lines[0] == "Needs attention", lines
    assert lines[1].startswith(f"🚨 Incident #{number} (open) on staging: request #{rid} failed at verify"), lines
    shot(page, "11-status-incident-first", status)

    # --- a thread reply and a 📌 on Dana's message, from the page
    act_as(page, "U_BOB")
    box = root.get_by_test_id("reply-input")
    box.fill("looking at the backfill: half the rows were skipped")
    box.press("Enter")
    expect(replies.filter(has_text="looking at the backfill")).to_be_visible()
    act_as(page, "U_DANA")
    root.get_by_test_id("reply-input").fill("action: make the backfill cover every row")
    root.get_by_test_id("reply-send").click()
    dana_says = replies.filter(has_text="action: make the backfill cover every row")
    expect(dana_says).to_be_visible()
    act_as(page, "U_ALICE")
    dana_says.hover()
    dana_says.get_by_test_id("react-pin").click()
    expect(dana_says.get_by_test_id("reaction")).to_contain_text("📌 1")
    shot(page, "12-reply-and-pin", dana_says)

    # --- Restore backup: the demo's customers (orders references them) come back as the backup holds them
    incident.locator("[data-action-id=incident_restore_backup]").click()
    modal = page.get_by_test_id("modal")
    expect(page.get_by_test_id("modal-title")).to_contain_text("Restore backup #")
    modal.locator("[data-testid=modal-input][data-block-id=confirm_input]").fill("staging")
    page.get_by_test_id("modal-submit").click()
    expect(modal).to_be_hidden()
    done = replies.filter(has_text="Restore finished")
    expect(done).to_contain_text("Restored public.customers (50,000 rows) from backup #", timeout=RUN_TIMEOUT_MS)
    expect(done).to_contain_text("1 foreign key into them (public.orders.orders_customer_id_fkey)")
    expect(incident).to_contain_text("mitigated")
    shot(page, "13-restored", done)
    with psycopg.connect(with_database(pg_admin_url, f"{dev_run.prefix}_demo_staging")) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'customers' "
                            "AND column_name = 'email_normalized'").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM customers").fetchone() == (50_000,)
        assert conn.execute("SELECT convalidated FROM pg_constraint WHERE conname = 'orders_customer_id_fkey'"
                            ).fetchone() == (True,)

    # --- Resolve: the post-mortem draft holds the reply and the pinned message, by name
    incident.locator("[data-action-id=incident_resolve]").click()
    draft = replies.get_by_test_id("file").filter(has_text="Post-mortem draft")
    expect(draft).to_be_visible(timeout=30_000)
    draft.locator("summary").click()
    content = draft.locator(".file-content")
    expect(content).to_contain_text("looking at the backfill: half the rows were skipped", timeout=10_000)
    expect(content).to_contain_text("📌 action: make the backfill cover every row")
    expect(content).to_contain_text("make the backfill cover every row")
    shot(page, "14-postmortem", draft)
