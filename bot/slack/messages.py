"""What the domain tells Slack, in its own terms, worded in mrkdwn and rendered as Block Kit: the notifier's
vocabulary (pure, no I/O).

Flow, IncidentService, FleetControl, Policy and the workers say what to tell through the Notifier, which is a
``Messages``: a request's card from its CardView, the preview, a step's report, the incident card (this module
picks the builder for each: bot/slack/cards.py, pipeline_blocks.py, fleet_blocks.py, incident_blocks.py), and
every event in words, one method per event, from facts (ids, names, counts, reasons), escaping what it quotes.
Nothing outside bot/slack formats mrkdwn (tests/test_layering.py). A rendered ``Message`` is opaque to the
caller: it posts it (Notifier.post, or Flow.post_in_thread, which tries a refused thread post again later).

Usage::

    flow.say(request, notifier.rejected(user_id, reason))    # ":no_entry: <@U…> rejected this request: …"
    raise PolicyDenied(notifier.not_an_approver(env.name, env.approvers), code="not-an-approver")
    flow.post_in_thread(request, notifier.step_report(request.id, "run", "queued"))
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.models import DbState, Incident, Request, RequestStatus, database_words
from bot.slack.cards import Preview, build_preview, build_rehearsal_message, build_request_card, build_thread_note
from bot.slack.fleet_blocks import build_fleet_preview_message, build_targets_file
from bot.slack.incident_blocks import build_incident_card
from bot.slack.mrkdwn import Message, Mrkdwn, as_mrkdwn, code, escape, link, mention, mention_any, plain
from bot.slack.pipeline_blocks import (
    build_batch_message,
    build_blocker_message,
    build_cleanup_message,
    build_failure_message,
    build_retry_message,
    build_step_message,
    build_summary_message,
    build_verify_message,
    build_waiters_message,
)
from bot.views import CardView, IncidentView

__all__ = ["Messages", "Preview"]


class Messages:
    """Each method renders one thing the domain says; none sends anything."""

    def request_card(self, request: Request, view: CardView) -> Message:
        """A request's root card, re-rendered from the store after every change."""
        return build_request_card(request, view)

    def thread_note(self, text: str) -> Message:
        """A note in a thread; ``text`` is mrkdwn (the caller escapes what it quotes)."""
        return build_thread_note(text)

    def preview(self, request: Request) -> Preview:
        """The SQL and the risk of every migration: combined messages and the long files to upload."""
        return build_preview(request)

    def fleet_preview(self, environment: str, fleet: dict[str, Any], risks: dict[str, str]) -> Message:
        """A fleet request's targets grouped by ledger state, each file set's risk once, and the rollout."""
        return build_fleet_preview_message(environment, fleet, risks)

    def targets_file(self, request_id: int, columns: tuple[str, ...], rows: list[dict[str, str]]) -> str:
        """A rollout's Targets file: CSV of ``columns``, one line per row, formula-looking cells quoted."""
        return build_targets_file(request_id, columns, rows)

    def rehearsal(self, rehearsal: Any, headline: str | None = None, broken: Sequence[str] = ()) -> Message:
        """What a rehearsal observed (bot/pg/rehearsal.py's result), its headline and the app queries it breaks."""
        return build_rehearsal_message(rehearsal, headline, broken)

    def step_report(self, request_id: int, step: str, status: str, duration_ms: int | None = None,
                    lines: Sequence[str] = ()) -> Message:
        """A step of the run started / succeeded / failed (``lines`` are mrkdwn)."""
        return build_step_message(request_id, step, status, duration_ms, tuple(lines))

    def failure_report(self, request_id: int, failed_step: str, db_state: str, error: str) -> Message:
        """Where the run failed, what the database holds now, the (scrubbed) error and what to do next."""
        return build_failure_message(request_id, failed_step, db_state, error)

    def run_summary(self, request_id: int, steps: list[tuple[str, int | None]], backup: str | None,
                    events: int) -> Message:
        """The run's end: each step's timing, the backup to restore from, the audit trail's length."""
        return build_summary_message(request_id, steps, backup, events)

    def lock_retry(self, request_id: int, migration: str, attempt: int, tries: int, delay_s: float,
                   blockers: list[dict[str, Any]]) -> Message:
        """A lock timeout the apply backs off from and tries again, naming who held the lock."""
        return build_retry_message(request_id, migration, attempt, tries, delay_s, blockers)

    def lock_blockers(self, request_id: int, migration: str, tries: int, blockers: list[dict[str, Any]]) -> Message:
        """The last lock timeout: the apply gave up; who held the lock."""
        return build_blocker_message(request_id, migration, tries, blockers)

    def waiters(self, request_id: int, count: int, longest_s: float, waiters: list[dict[str, Any]]) -> Message:
        """The watchdog: application sessions queued behind the migration's locks."""
        return build_waiters_message(request_id, count, longest_s, waiters)

    def batch_progress(self, request_id: int, migration: str, statement: int, rows: int, batches: int,
                       done: bool) -> Message:
        """Progress of a `-- guardian: batch N` statement."""
        return build_batch_message(request_id, migration, statement, rows, batches, done)

    def verify_report(self, request_id: int, ok: bool, diff: list[str], warnings: list[str],
                      failures: list[str]) -> Message:
        """Verification: the schema diff, warnings and failures."""
        return build_verify_message(request_id, ok, diff, warnings, failures)

    def retention_report(self, deleted: int, freed_bytes: int) -> Message:
        """Backup retention: how many expired backups were deleted and the space freed."""
        return build_cleanup_message(deleted, freed_bytes)

    def incident_card(self, incident: Incident, request: Request, view: IncidentView) -> Message:
        """An incident's card with the actions its state allows."""
        return build_incident_card(incident, request, view)

    # What the domain and the workers say in words: one method per event, each returning the mrkdwn text (a
    # ``Mrkdwn``, whatever it quotes escaped here) that Flow.say / IncidentService.say / thread_note post, or
    # that a PolicyDenied carries. The callers pass facts (ids, names, counts, reasons), never formatting.

    # -- the request's flow (bot/flow.py) --
    # The errors that were plain text stay plain (``-> str``): Slack's edge escapes a GuardianError's message, and
    # the SQL modal shows check_adhoc's as it is.

    def waiting_for_approvals(self, entries: Sequence[str], missing: int) -> Mrkdwn:
        """Who could still give the ``missing`` approvals (approver user and user-group ids), mentioned."""
        names = [mention_any(e) for e in entries]
        if missing == 1:
            who = " or ".join(names)
        elif missing >= len(names):  # everyone still listed is needed
            who = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
        else:
            who = f"{missing} more of " + ", ".join(names)
        return Mrkdwn(f"Waiting for {who}.")

    def needs_approvals(self, required: int, count: int, waiting: Sequence[str]) -> Mrkdwn:
        """A request starts waiting for approval: how many it needs, and who could give them."""
        return Mrkdwn(f":raised_hand: Needs {required} approval{'s' if required != 1 else ''} "
                      f"({count}/{required} so far). {self.waiting_for_approvals(waiting, required - count)}")

    def run_waits_until(self, when: datetime) -> Mrkdwn:
        """The card's note while an approved request waits for a freeze or a maintenance window."""
        return Mrkdwn(f"approved; the run waits until {when:%Y-%m-%d %H:%M} UTC")

    def adhoc_not_allowed(self, environment: str) -> str:
        """Pasted SQL refused where the environment does not allow it (plain text)."""
        return (f"pasted SQL is not allowed on {environment}; add the migration to the repository and use "
                f"`/migrate plan {environment}`")

    def card_not_posted(self, request_id: int, channel: str | None, error: str) -> Mrkdwn:
        """Slack refused a new request's card (``error``), so the request was cancelled: what to do instead."""
        channel, shown = channel or "", escape(error)
        where = f"<#{channel}>" if channel[:1] in ("C", "G") and channel.isalnum() else "this conversation"
        if channel.startswith("D"):
            advice = ("Guardian posts requests in a channel, not in a direct message: run the command in your "
                      "team's migrations channel")
        elif error in ("not_in_channel", "channel_not_found"):
            advice = (f"Guardian cannot post in {where} ({shown}; a private channel is invisible to it until "
                      "it is invited): invite it with `/invite @Guardian`, or run the command in a channel it is in")
        elif error == "is_archived":
            advice = f"{where} is archived: run the command in an active channel"
        else:
            advice = f"Slack refused the request's card ({shown}); try again in a minute"
        return Mrkdwn(f"{advice}. Request #{request_id} was cancelled; nothing was analysed or run.")

    def analysis_failed(self, error: str) -> Mrkdwn:
        """The analysis failed with ``error``."""
        return Mrkdwn(f":x: Analysis failed: {escape(error)}")

    def nothing_to_do(self, environment: str, commit: str | None) -> Mrkdwn:
        """The analysis found nothing pending: the environment already has every migration at ``commit``."""
        return Mrkdwn(f":white_check_mark: Nothing to do: {escape(environment)} already has every migration"
                      f" at {code((commit or '')[:10])}.")

    def rehearsal_skipped(self, why: str) -> Mrkdwn:
        """The rehearsal could not run (``why``)."""
        return Mrkdwn(f":warning: Rehearsal skipped: {escape(why)}")

    def confirm_approval(self, environment: str) -> str:
        """A production approval must be confirmed by typing the environment's name (plain text)."""
        return f"type {environment} to confirm your approval"

    def approval_not_recorded(self, reason: str) -> Mrkdwn:
        """An approval clicked just as the approvals were voided (``reason``): nothing recorded."""
        return Mrkdwn(f"Nothing was recorded: the approvals were voided because {escape(reason)}. "
                      "The request is being re-analysed.")

    def requires_unmet(self, environment: str, missing: Sequence[str]) -> str:
        """An approval refused until the same SQL succeeds on the ``missing`` environments first (plain text)."""
        return (f"{environment} requires the same SQL (same sha256) to succeed on {', '.join(missing)} first; "
                f"run `/migrate plan {missing[0]}` and come back")

    def decision_not_recorded(self, why: str) -> str:
        """A decision that lost a race with another change (``why``): nothing recorded (plain text)."""
        return f"{why}; nothing was recorded"

    def already_decided(self, request_id: int, decision: str) -> Mrkdwn:
        """A second click by who already approved or rejected (``decision``): nothing changed."""
        return Mrkdwn(f"You already {'approved' if decision == 'approve' else 'rejected'} request #{request_id}; "
                      "nothing changed.")

    def rejected(self, user_id: str, reason: str | None) -> Mrkdwn:
        """Someone rejected the request, with their reason if they gave one."""
        return Mrkdwn(f":no_entry: {mention(user_id)} rejected this request"
                      + (f": {escape(reason)}" if reason else "."))

    def you_rejected(self, request_id: int) -> Mrkdwn:
        """The reply to who rejected."""
        return Mrkdwn(f"You rejected request #{request_id}.")

    def approved(self, user_id: str, count: int, required: int, waiting: Sequence[str] = ()) -> Mrkdwn:
        """Someone approved: the tally, and who could still approve (``waiting``, empty once the quorum is reached)."""
        return Mrkdwn(f":white_check_mark: {mention(user_id)} approved ({count}/{required})."
                      + (f" {self.waiting_for_approvals(waiting, required - count)}" if waiting else ""))

    def you_approved(self, request_id: int, count: int, required: int) -> Mrkdwn:
        """The reply to who approved, with the tally."""
        return Mrkdwn(f"You approved request #{request_id} ({count}/{required}).")

    def preview_outdated(self, request_id: int, voided_reason: str | None, card_url: str | None) -> Mrkdwn:
        """A click under a preview that is no longer current: why, and where the new one is (the card's link)."""
        why = f" ({escape(voided_reason)})" if voided_reason else ""
        label = f"request #{request_id}'s card"
        return Mrkdwn(
            f"this preview is outdated — request #{request_id} was re-analysed after it was posted{why}. "
            f"Nothing was recorded; read the new preview and decide there"
            + (f": {link(card_url, label)}" if card_url else " (the request's card and thread)."))

    def quorum_reached(self) -> Mrkdwn:
        """The request has its approvals: the run starts (or waits for its gate)."""
        return Mrkdwn(":rocket: Approved. Guardian will back up, apply and verify.")

    def not_running_yet(self, why: str) -> Mrkdwn:
        """An approved run held by a freeze or a maintenance window (``why``, from Policy.run_gate)."""
        return Mrkdwn(f":clock3: Not running yet: {as_mrkdwn(why)}.")

    def approvals_voided(self, count: int, reason: str) -> Mrkdwn:
        """``count`` approvals no longer bind (``reason``): the request is re-analysed."""
        return Mrkdwn(f":warning: {count} approval{'' if count == 1 else 's'} voided: {escape(reason)}. "
                      "Re-analysing; approve again once the new preview is posted.")

    def approvals_voided_note(self, reason: str) -> Mrkdwn:
        """The card's note once the approvals were voided (``reason``)."""
        return Mrkdwn(f":warning: Approvals voided: {escape(reason)}")

    def rehearsed_again(self, stale: str, headline: str) -> Mrkdwn:
        """At run time the stale rehearsal ran again on a fresh copy with the approved result: the approvals stand."""
        return Mrkdwn(f":repeat: {escape(stale[0].upper() + stale[1:])}, so it was rehearsed again before the run: "
                      f"{escape(headline)}. Same result as approved; the approvals stand.")

    def cancelled(self, user_id: str) -> Mrkdwn:
        """The requester cancelled the request."""
        return Mrkdwn(f":heavy_multiplication_x: {mention(user_id)} cancelled this request.")

    def you_cancelled(self, request_id: int) -> Mrkdwn:
        """The reply to who cancelled."""
        return Mrkdwn(f"Request #{request_id} is cancelled.")

    def freeze_started(self, environment: str, until: datetime, reason: str) -> Mrkdwn:
        """`/migrate freeze`: the environment is frozen until ``until``."""
        return Mrkdwn(f":snowflake: {escape(environment)} is frozen until {until:%Y-%m-%d %H:%M} UTC: "
                      f"{escape(reason)}. Approved runs wait.")

    def not_frozen(self, environment: str) -> Mrkdwn:
        """`/migrate unfreeze` on an environment that was not frozen."""
        return Mrkdwn(f"{escape(environment)} was not frozen.")

    def unfrozen(self, environment: str) -> Mrkdwn:
        """`/migrate unfreeze`: the freeze is lifted."""
        return Mrkdwn(f":sunny: {escape(environment)} is no longer frozen.")

    def backup_requested(self, environment: str) -> Mrkdwn:
        """`/migrate backup`: an on-demand backup is queued."""
        return Mrkdwn(f":floppy_disk: Backing up {escape(environment)}; the result is posted in the channel.")

    def only_approvers(self, environment: str, approvers: Sequence[str], what: str) -> Mrkdwn:
        """Refused: only the environment's ``approvers`` (mentioned) may do ``what``."""
        names = " or ".join(mention_any(a) for a in approvers) or "nobody (none are configured)"
        return Mrkdwn(f"only the {escape(environment)} approvers can {escape(what)}: ask {names}")

    def no_such_request(self, request_id: int) -> str:
        """A request id that does not exist (plain text)."""
        return f"there is no request #{request_id}; `/migrate history` lists recent ones"


    # -- incidents, rollouts and the post-mortem (bot/incidents.py, bot/fleet_control.py, bot/postmortem.py) --

    def incident_summary(self, environment: str, request_id: int, failed_step: str | None, db_state: DbState | None,
                         opened_by: str, succeeded: bool) -> Mrkdwn:
        """An incident was opened (by Guardian on a failure, or by a person): the summary its card shows."""
        failed = (f"request #{request_id} failed at {escape(failed_step or '?')}; "
                  f"the database {database_words(db_state)}")
        if opened_by == "guardian":
            return Mrkdwn(f"{escape(environment)}: {failed}")
        if succeeded:
            return Mrkdwn(f"{escape(environment)}: opened by {mention(opened_by)} on a succeeded request "
                          f"(#{request_id}): the run reported no failure; this incident is for a problem found "
                          "afterwards")
        return Mrkdwn(f"{escape(environment)}: opened by {mention(opened_by)}; {failed}")

    def incident_opened_note(self, summary: str) -> Mrkdwn:
        """A person opened the incident: its card's note saying who and why (``summary``: incident_summary's)."""
        return Mrkdwn(f":information_source: {summary}")

    def incident_opened(self, incident_id: int, permalink: str | None) -> Mrkdwn:
        """An incident's card was posted in the incident channel: the request's thread links to it."""
        where = link(permalink, permalink) if permalink else "(no link)"
        return Mrkdwn(f":rotating_light: Incident #{incident_id} opened: {where}")

    def rollback_started(self, user: str, rollback_id: int) -> Mrkdwn:
        """A person started a rollback request from the incident."""
        return Mrkdwn(f":rewind: {mention(user)} started rollback request #{rollback_id} (the down SQL). "
                      "It needs another approver's Approve on its card below, then runs backup → apply → verify.")

    def restore_started(self, user: str, backup_id: int, replaced_rollback_id: int | None = None) -> Mrkdwn:
        """A person started restoring the backup, perhaps instead of a rollback request nobody approved yet."""
        return Mrkdwn(f":floppy_disk: {mention(user)} is restoring backup #{backup_id}"
                      + (f" instead of rollback request #{replaced_rollback_id}, which is cancelled."
                         if replaced_rollback_id is not None else "."))

    def incident_retried(self, user: str, request_id: int, attempt: int) -> Mrkdwn:
        """A person retried the failed request from the incident."""
        return Mrkdwn(f":repeat: {mention(user)} retried request #{request_id} (attempt {attempt}).")

    def incident_fixed_forward(self, user: str) -> Mrkdwn:
        """A person marked the incident fixed forward."""
        return Mrkdwn(f":wrench: {mention(user)} marked the incident fixed forward.")

    def rollback_succeeded(self, rollback_id: int, advice: str) -> Mrkdwn:
        """The incident's rollback request succeeded; ``advice`` is bot/sources/apply.py's rollback_advice, text
        whose repository paths sit in single backticks (escaped like a restore's detail: a path cannot make a
        mention or a link)."""
        return Mrkdwn(f":white_check_mark: Rollback request #{rollback_id} succeeded; the database is rolled "
                      f"back. {escape(advice)}".rstrip())

    def rollback_failed(self, rollback_id: int, status: str) -> Mrkdwn:
        """The incident's rollback request ended ``status`` (failed, cancelled, rejected): open again."""
        return Mrkdwn(f":x: Rollback request #{rollback_id} {escape(status)}; the incident is open again.")

    def restore_finished(self, detail: str) -> Mrkdwn:
        """The restore of the backup succeeded: what it restored and what to do next."""
        return Mrkdwn(":white_check_mark: Restore finished: " + escape(detail))

    def restore_failed(self, error: str) -> Mrkdwn:
        """The restore of the backup failed: why."""
        return Mrkdwn(":x: Restore failed: " + escape(error))

    def rollout_reason(self, done: str, user: str) -> Mrkdwn:
        """Why a rollout's state or its failed targets changed, as recorded: ``paused by <@U…>``."""
        return Mrkdwn(f"{escape(done)} by {mention(user)}")

    def rollout_paused(self, user: str) -> Mrkdwn:
        """A person paused the rollout."""
        return Mrkdwn(f":double_vertical_bar: {mention(user)} paused the rollout: no new target starts; those "
                      "in flight finish. Resume continues it.")

    def rollout_resumed(self, user: str) -> Mrkdwn:
        """A person resumed the rollout."""
        return Mrkdwn(f":arrow_forward: {mention(user)} resumed the rollout.")

    def failed_targets_retried(self, user: str, count: int) -> Mrkdwn:
        """A person sent the rollout's ``count`` failed targets back to waiting."""
        return Mrkdwn(f":repeat: {mention(user)} retries {count} failed target{'s' if count != 1 else ''}; the "
                      "rollout continues.")

    def failed_targets_skipped(self, user: str, count: int) -> Mrkdwn:
        """A person skipped the rollout's ``count`` failed targets."""
        return Mrkdwn(f":repeat: {mention(user)} skips {count} failed target{'s' if count != 1 else ''}; the "
                      "rollout continues.")

    def rollout_aborted(self, user: str, migrated: int, rollback_id: int | None = None) -> Mrkdwn:
        """A person aborted the rollout: ``migrated`` targets were done, rolled back by ``rollback_id`` if any."""
        if not migrated:
            return Mrkdwn(f":no_entry: {mention(user)} aborted the rollout; no target had been migrated.")
        if rollback_id is None:
            return Mrkdwn(f":no_entry: {mention(user)} aborted the rollout; {migrated} target(s) were migrated and "
                          "the files have no down SQL: restore the backup or fix forward.")
        return Mrkdwn(f":no_entry: {mention(user)} aborted the rollout. Rollback request #{rollback_id} rolls back "
                      f"the {migrated} migrated target(s) with their down SQL once another approver "
                      "approves it on its card below.")

    def targets_file_uploaded(self, user: str, count: int, at: datetime) -> Mrkdwn:
        """A person asked for the rollout's Targets file: the comment it is uploaded with."""
        return Mrkdwn(f":page_facing_up: The rollout's {count} targets as of {at:%H:%M:%S} UTC, "
                      f"asked for by {mention(user)}.")

    def postmortem_note(self, slack_text: str) -> str:
        """A note in the post-mortem's timeline: what the person wrote, as plain text (mentions stay ``<@U…>``)."""
        return plain(slack_text)

    def people_mentioned(self, note: str) -> set[str]:
        """The user ids a timeline note mentions (``<@U…>``), to name them in the post-mortem."""
        return set(re.findall(r"<@([UW][A-Z0-9_]+)>", note))

    def postmortem_person(self, actor: str) -> str:
        """Someone in the post-mortem Slack gave no name for: ``<@U…>`` for a user id, anything else as written."""
        shown = mention(actor)
        return shown if shown.startswith("<@") else actor


    # -- who may do what (bot/policy.py) --
    # As in the flow's section, the refusals that were plain text stay plain (``-> str``).

    def not_awaiting_approval(self, request_id: int, status: RequestStatus) -> str:
        """A decision on a request that no longer awaits approval (plain text)."""
        return (f"request {request_id} is {status.value.replace('_', ' ')}; only a request awaiting approval can be "
                "approved or rejected")

    def self_approval(self, request_id: int, environment: str) -> str:
        """The requester tried to approve or reject their own request (plain text)."""
        return (f"you requested #{request_id}, so you cannot approve or reject it; ask one of the {environment} "
                "approvers")

    def not_an_approver(self, environment: str, approvers: Sequence[str]) -> Mrkdwn:
        """A decision by someone who is not an approver: whom to ask (users and user groups, mentioned)."""
        return Mrkdwn(f"you are not an approver for {escape(environment)}; ask one of: "
                      + ", ".join(map(mention_any, approvers)))

    def not_the_requester(self, request_id: int, requester: str) -> Mrkdwn:
        """A cancel by someone other than the requester."""
        return Mrkdwn(f"only the requester ({mention(requester)}) can cancel #{request_id}; approvers can Reject")

    def not_cancellable(self, request_id: int, status: RequestStatus) -> str:
        """A cancel of a request already past the point of cancelling (plain text)."""
        return f"request {request_id} is {status.value.replace('_', ' ')} and can no longer be cancelled"

    def not_allowed_to_note(self, environment: str, request_id: int, approvers: Sequence[str],
                            responders: Sequence[str], requester: str | None) -> Mrkdwn:
        """An incident note refused: who may add one (``requester`` None when the requester may not)."""
        who = self._whom_to_ask(environment, approvers, responders, requester)
        return Mrkdwn(f"on {escape(environment)}, only {who} can add notes to the incident of request #{request_id}; "
                      "ask one of them to add yours")

    def not_allowed_to_publish(self, environment: str, request_id: int, approvers: Sequence[str],
                               responders: Sequence[str], requester: str | None) -> Mrkdwn:
        """Publishing the post-mortem refused: who may publish it."""
        who = self._whom_to_ask(environment, approvers, responders, requester)
        return Mrkdwn(f"on {escape(environment)}, only {who} can publish the post-mortem of the incident of request "
                      f"#{request_id}; ask one of them")

    def not_allowed_to_open_incident(self, environment: str, request_id: int, approvers: Sequence[str],
                                     responders: Sequence[str], requester: str | None) -> Mrkdwn:
        """An incident on a run that succeeded refused: who may open one."""
        who = self._whom_to_ask(environment, approvers, responders, requester)
        return Mrkdwn(f"request #{request_id} succeeded; on {escape(environment)}, only {who} can open an incident "
                      "on it; ask one of them")

    def _whom_to_ask(self, environment: str, approvers: Sequence[str], responders: Sequence[str],
                     requester: str | None) -> str:
        """The approvers, the incident responders and the requester (unless None), mentioned, joined with "or"."""
        listed = ", ".join(map(mention_any, approvers)) or "none configured"
        parts = [f"the {escape(environment)} approvers ({listed})"]
        if responders:
            parts.append("the incident responders (" + ", ".join(map(mention_any, responders)) + ")")
        if requester is not None:
            parts.append(f"the requester ({mention(requester)})")
        return ", ".join(parts[:-1]) + " or " + parts[-1] if len(parts) > 1 else parts[0]

    def frozen(self, environment: str, until: datetime, by: str, reason: str) -> Mrkdwn:
        """The run is held: the environment is frozen until ``until`` by ``by`` for ``reason``."""
        return Mrkdwn(f"{escape(environment)} is frozen until {until:%Y-%m-%d %H:%M} UTC "
                      f"by {mention(by)}: {escape(reason)}")

    def no_window(self) -> Mrkdwn:
        """The run may start: the environment has no maintenance window."""
        return Mrkdwn("no maintenance window configured")

    def in_window(self) -> Mrkdwn:
        """The run may start: the maintenance window is open."""
        return Mrkdwn("inside the maintenance window")

    def waiting_for_window(self, environment: str, start: datetime) -> Mrkdwn:
        """The run is held until the next maintenance window opens at ``start``."""
        return Mrkdwn(f"waiting for the {escape(environment)} maintenance window at {start:%a %Y-%m-%d %H:%M} UTC")

    def no_window_days(self) -> str:
        """A maintenance window without days never opens (plain text)."""
        return "the maintenance window has no days configured"


    # -- the run's workers (workers/apply.py, backup.py, ondemand.py, fleet.py, reminders.py) --

    def migrations_applied(self, files: Sequence[tuple[str, int]], lock_retries: int, predictions: Sequence[str],
                           slowest: str | None) -> tuple[Mrkdwn, ...]:
        """The apply's report lines: each file's (name, ms), the lock-timeout retries, predicted vs actual."""
        lines = [f"{code(name)} in {duration_ms} ms" for name, duration_ms in files[:20]]
        if len(files) > 20:
            lines.append(f"… and {len(files) - 20} more")
        if lock_retries:
            lines.append(f"{lock_retries} lock-timeout retr{'y' if lock_retries == 1 else 'ies'}")
        lines += [f"predicted vs actual: {escape(line)}" for line in predictions[:20]]
        if slowest:
            lines.append(f"slowest statement, predicted vs actual: {escape(slowest)}")
        return tuple(Mrkdwn(line) for line in lines)

    def backup_taken(self, file_name: str, size_bytes: int, scope: str, pg_dump_major: int,
                     sha256: str) -> tuple[Mrkdwn, ...]:
        """The backup step's report line: the dump's file, size, scope, pg_dump version and checksum."""
        size = f"{size_bytes / 2**20:.1f} MiB" if size_bytes >= 2**20 else f"{size_bytes / 1024:.1f} KiB"
        return (Mrkdwn(f"{code(file_name)} ({size}, {escape(scope)}, pg_dump {pg_dump_major}), "
                       f"sha256 {code(sha256[:12])}, `pg_restore --list` OK"),)

    def ondemand_backup_taken(self, backup_id: int, environment: str, user: str, file_name: str, size_bytes: int,
                              pg_dump_major: int, sha256: str, retention_days: int) -> Mrkdwn:
        """`/migrate backup`: the backup ``user`` asked for is written, checked and kept."""
        return Mrkdwn(f":floppy_disk: Backup #{backup_id} of *{escape(environment)}* for {mention(user)}: "
                      f"{code(file_name)}, {size_bytes / 2**20:.1f} MiB, pg_dump {pg_dump_major}, "
                      f"sha256 {code(sha256[:12])}, checked with `pg_restore --list`; kept {retention_days} days.")

    def ondemand_backup_failed(self, environment: str, user: str, error: str) -> Mrkdwn:
        """`/migrate backup`: the backup ``user`` asked for failed, and why (``error`` already scrubbed)."""
        return Mrkdwn(f":x: Backup of *{escape(environment)}* requested by {mention(user)} failed: {escape(error)}")

    def rollout_started(self, targets: int, late: Sequence[str]) -> Mrkdwn:
        """A fleet rollout started on ``targets`` targets; ``late`` ones were added after the approval."""
        text = f":rocket: Rollout started: {targets} target{'s' if targets != 1 else ''}, canary first"
        if late:
            text += (f"; {len(late)} added after the approval, not migrated (they need their own approval): "
                     + ", ".join(code(t) for t in late[:10]) + (" …" if len(late) > 10 else ""))
        return Mrkdwn(text)

    def rollout_halted(self, reason: str, failed: Sequence[tuple[str, str | None]]) -> Mrkdwn:
        """A fleet rollout halted: why, and the first failed (target, note) pairs."""
        lines = "\n".join(f"• {code(target)}: {escape(note or 'failed')[:200]}" for target, note in failed[:5])
        return Mrkdwn(f":octagonal_sign: Rollout halted: {escape(reason)}. No new target starts; those in flight "
                      "finish." + (f"\n{lines}" if lines else ""))

    def reminder(self, request_id: int, environment: str, waited_s: float, approvals: int, required: int,
                 waiting_words: str) -> Mrkdwn:
        """A request still waits for approval; ``waiting_words`` (mrkdwn) mentions who can approve."""
        return Mrkdwn(f":bell: Reminder: request #{request_id} on {escape(environment)} has waited "
                      f"{self._waited(waited_s)} for approval ({approvals}/{required}). {waiting_words}")

    def reminder_dm(self, request_id: int, environment: str, card_url: str | None, approvals: int, required: int,
                    waited_s: float) -> Mrkdwn:
        """The reminder's DM to one approver, linking the request's card when Slack gave a permalink."""
        card = link(card_url, f"request #{request_id}") if card_url else f"request #{request_id}"
        return Mrkdwn(f":bell: {card} on *{escape(environment)}* is waiting for your review "
                      f"({approvals}/{required} approvals, {self._waited(waited_s)}).")

    def request_expired(self, request_id: int, environment: str, expiry: str) -> Mrkdwn:
        """Nobody gave the approvals within the environment's approval_expiry: the request expired."""
        return Mrkdwn(f":hourglass: Request #{request_id} expired: it did not get its approvals within "
                      f"{escape(expiry)} (approval_expiry of {escape(environment)}). Nothing was run. Plan it again "
                      f"with {code(f'/migrate plan {environment}')} if it is still wanted.")

    def escalation(self, request_id: int, environment: str, waited_s: float, missing: int,
                   targets: Sequence[str]) -> Mrkdwn:
        """Nobody acted after the reminders: ``targets`` (user or user-group ids) are mentioned."""
        return Mrkdwn(f":rotating_light: Escalation: request #{request_id} on {escape(environment)} has waited "
                      f"{self._waited(waited_s)} and still needs {missing} approval{'s' if missing != 1 else ''}. "
                      + " ".join(mention_any(t) for t in targets) + ", please review or reject it.")

    @staticmethod
    def _waited(seconds: float) -> str:
        """How long a request has waited, in the unit a person would say ("90 seconds", "3 hours")."""
        if seconds < 120:
            return f"{int(seconds)} seconds"
        if seconds < 2 * 3600:
            return f"{int(seconds // 60)} minutes"
        if seconds < 2 * 86400:
            return f"{int(seconds // 3600)} hours"
        return f"{int(seconds // 86400)} days"

