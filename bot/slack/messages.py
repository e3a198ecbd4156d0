"""What the domain tells Slack, in its own terms, rendered as Block Kit: the notifier's vocabulary (pure, no I/O).

Flow, IncidentService, FleetControl and the workers say what to tell (a request's card from its CardView, a
thread note, the preview, a step's report, the incident card) through the Notifier, which is a ``Messages``;
this module picks the builder for each (bot/slack/cards.py, pipeline_blocks.py, fleet_blocks.py,
incident_blocks.py). A rendered ``Message`` is opaque to the caller: it posts it (Notifier.post, or
Flow.post_in_thread, which tries a refused thread post again later).

Usage::

    flow.post_in_thread(request, notifier.step_report(request.id, "run", "queued"))
    notifier.update("request 7's card", channel, ts, notifier.request_card(request, flow.card_view(request)))
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.models import Incident, Request
from bot.slack.cards import Preview, build_preview, build_rehearsal_message, build_request_card, build_thread_note
from bot.slack.fleet_blocks import build_fleet_preview_message, build_targets_file
from bot.slack.incident_blocks import build_incident_card
from bot.slack.mrkdwn import Message
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

    # -- the request's flow: end --

    # -- incidents, rollouts and the post-mortem (bot/incidents.py, bot/fleet_control.py, bot/postmortem.py) --

    # -- incidents, rollouts and the post-mortem: end --

    # -- who may do what (bot/policy.py) --

    # -- who may do what: end --

    # -- the run's workers (workers/apply.py, backup.py, ondemand.py, fleet.py, reminders.py) --

    # -- the run's workers: end --
