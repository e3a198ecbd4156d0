"""Approval policy: who may decide, how many must approve, whether an approved request may run now, who runs incidents.

Pure decisions over the config, the request and its decisions; the caller supplies the facts that
need I/O (user-group members, active freeze, environments where the same SQL already succeeded).

Usage::

    policy = Policy(config.environment("production"))
    policy.check_can_decide(request, "U0BBB", groups=resolver)        # raises PolicyDenied
    tally = policy.tally(request, store.list_decisions(request.id), now)
    if tally.reached: ...
    policy.check_can_publish_postmortem(request, "U0CCC", groups=resolver)   # incident_managers decides
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, time, timedelta, timezone

from pydantic import BaseModel, ConfigDict

from bot.config import EnvironmentConfig, MaintenanceWindow, parse_duration
from bot.errors import PolicyDenied
from bot.models import Decision, Freeze, Request, RequestStatus
from bot.slack.notifier import Notifier

GroupResolver = Callable[[str], Sequence[str]]  # user-group id -> member user ids
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Tally(BaseModel):
    """Where a request stands against its quorum."""

    model_config = ConfigDict(frozen=True)
    required: int
    approvers: tuple[str, ...]  # users whose live, bound, unexpired approvals count
    rejected_by: tuple[str, ...]
    stale: tuple[tuple[str, str], ...]  # (user, why it no longer counts)

    @property
    def count(self) -> int:
        return len(self.approvers)

    @property
    def reached(self) -> bool:
        return not self.rejected_by and self.count >= self.required


class Policy:
    """The policy of one environment; its refusals and reasons are worded by ``notifier`` (none: ``Notifier(None)``)."""

    def __init__(self, env: EnvironmentConfig, notifier: Notifier | None = None) -> None:
        self.env = env
        self.notifier = notifier if notifier is not None else Notifier(None)

    @property
    def version(self) -> str:
        """A fingerprint of everything in the policy that decides approvals; changing it voids them."""
        material = self.env.model_dump(
            include={"approvers", "approvals", "requires", "production", "approval_expiry",
                     "maintenance_windows", "allow_adhoc_sql", "rollback_approvals"},
            mode="json",
        )
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]

    def required_approvals(self, risk: str | None, source: str = "repo") -> int:
        required = self.env.approvals.required(risk or "critical")
        if source == "rollback":
            return min(required, self.env.rollback_approvals) or 1
        return required

    def is_approver(self, user_id: str, groups: GroupResolver) -> bool:
        for entry in self.env.approvers:
            if entry == user_id:
                return True
            if entry.startswith("S") and user_id in groups(entry):
                return True
        return False

    def check_can_decide(self, request: Request, user_id: str, *, groups: GroupResolver) -> None:
        """Raise PolicyDenied (with what to do next) unless ``user_id`` may approve or reject now."""
        if request.status is not RequestStatus.AWAITING_APPROVAL:
            raise PolicyDenied(self.notifier.not_awaiting_approval(request.id, request.status),
                               code="not-awaiting-approval")
        if user_id == request.requester:
            raise PolicyDenied(self.notifier.self_approval(request.id, self.env.name), code="self-approval")
        if not self.is_approver(user_id, groups):
            raise PolicyDenied(self.notifier.not_an_approver(self.env.name, self.env.approvers),
                               code="not-an-approver")

    def check_can_cancel(self, request: Request, user_id: str) -> None:
        if user_id != request.requester:
            raise PolicyDenied(self.notifier.not_the_requester(request.id, request.requester),
                               code="not-the-requester")
        if request.status not in (RequestStatus.ANALYZING, RequestStatus.AWAITING_APPROVAL,
                                  RequestStatus.APPROVED, RequestStatus.QUEUED):
            raise PolicyDenied(self.notifier.not_cancellable(request.id, request.status), code="not-cancellable")

    # ------------------------------------------------- incidents (not part of ``version``: no approval hangs on them)
    def is_incident_manager(self, request: Request, user_id: str, groups: GroupResolver,
                            audience: str | None = None) -> bool:
        """Whether ``user_id`` is in ``audience`` (default ``incident_managers``) for incidents of ``request``:
        an approver, a listed responder, or (unless the audience is "approvers") the requester."""
        audience = audience or self.env.incident_managers
        if audience == "anyone" or self.is_approver(user_id, groups):
            return True
        if _listed(self.env.incident_responders, user_id, groups):
            return True
        return audience == "approvers_and_requester" and user_id == request.requester

    def check_can_note(self, request: Request, user_id: str, *, groups: GroupResolver) -> None:
        """Raise PolicyDenied unless ``user_id`` may add a note to an incident of ``request`` (``incident_notes``)."""
        if not self.is_incident_manager(request, user_id, groups, self.env.incident_notes):
            raise PolicyDenied(self.notifier.not_allowed_to_note(*self._who(request, self.env.incident_notes)),
                               code="not-allowed-to-note")

    def check_can_publish_postmortem(self, request: Request, user_id: str, *, groups: GroupResolver) -> None:
        """Raise PolicyDenied unless ``user_id`` may publish the post-mortem of an incident of ``request``."""
        if not self.is_incident_manager(request, user_id, groups):
            raise PolicyDenied(self.notifier.not_allowed_to_publish(*self._who(request, self.env.incident_managers)),
                               code="not-allowed-to-publish")

    def check_can_open_incident(self, request: Request, user_id: str, *, groups: GroupResolver) -> None:
        """Raise PolicyDenied unless ``user_id`` may open an incident on ``request``: anyone on a failed run,
        only ``incident_managers`` on a run that succeeded (the run itself reported nothing wrong)."""
        if request.status is RequestStatus.SUCCEEDED and not self.is_incident_manager(request, user_id, groups):
            raise PolicyDenied(
                self.notifier.not_allowed_to_open_incident(*self._who(request, self.env.incident_managers)),
                code="not-allowed-to-open-incident")

    def _who(self, request: Request, audience: str) -> tuple[str, int, list[str], list[str], str | None]:
        """For a refusal that says whom to ask: (environment, request id, approvers, incident responders, the
        requester when ``audience`` includes them, else None)."""
        requester = request.requester if audience == "approvers_and_requester" else None
        return self.env.name, request.id, list(self.env.approvers), list(self.env.incident_responders), requester

    def binding_problem(self, decision: Decision, request: Request) -> str | None:
        """Why a decision no longer covers what the request holds now, or None."""
        if decision.sha256s != request.sha256s:
            changed = sorted(
                name for name in set(decision.sha256s) | set(request.sha256s)
                if decision.sha256s.get(name) != request.sha256s.get(name)
            )
            return "the SQL changed (" + ", ".join(changed) + ")"
        if decision.git_commit != request.git_commit:
            return f"the git commit moved ({(decision.git_commit or '-')[:10]} → {(request.git_commit or '-')[:10]})"
        if decision.environment != request.environment:
            return "the target environment changed"
        if decision.target_fingerprint != request.target_fingerprint:
            return "the target database changed"
        if decision.policy_version != self.version:
            return f"the {self.env.name} approval policy changed"
        return None

    def tally(self, request: Request, decisions: Iterable[Decision], now: datetime) -> Tally:
        expiry = timedelta(seconds=parse_duration(self.env.approval_expiry))
        approvers: list[str] = []
        rejected: list[str] = []
        stale: list[tuple[str, str]] = []
        for d in decisions:
            if d.voided_at is not None:
                continue
            problem = self.binding_problem(d, request)
            if problem is None and d.decision == "approve" and now - d.created_at > expiry:
                problem = f"the approval expired after {self.env.approval_expiry}"
            if problem is not None:
                stale.append((d.user_id, problem))
            elif d.decision == "approve" and d.user_id != request.requester:
                approvers.append(d.user_id)
            elif d.decision == "reject":
                rejected.append(d.user_id)
        return Tally(required=self.required_approvals(request.risk, request.source), approvers=tuple(approvers),
                     rejected_by=tuple(rejected), stale=tuple(stale))

    def missing_prerequisites(self, succeeded_in: Iterable[str]) -> list[str]:
        """Environments in ``requires`` where the same SQL has not succeeded yet."""
        done = set(succeeded_in)
        return [env for env in self.env.requires if env not in done]

    def run_gate(self, now: datetime, freeze: Freeze | None) -> tuple[bool, datetime | None, str]:
        """(may run now, when it may run, why — mrkdwn). A freeze or a closed window holds the run."""
        if freeze is not None and freeze.ends_at > now:
            return False, freeze.ends_at, self.notifier.frozen(self.env.name, freeze.ends_at, freeze.created_by,
                                                               freeze.reason)
        if not self.env.maintenance_windows:
            return True, now, self.notifier.no_window()
        if any(_in_window(w, now) for w in self.env.maintenance_windows):
            return True, now, self.notifier.in_window()
        starts = [_next_start(w, now) for w in self.env.maintenance_windows]
        if None in starts:
            raise PolicyDenied(self.notifier.no_window_days(), code="no-window-days")
        start = min(s for s in starts if s is not None)
        return False, start, self.notifier.waiting_for_window(self.env.name, start)


def _listed(entries: Iterable[str], user_id: str, groups: GroupResolver) -> bool:
    """Whether ``user_id`` is one of ``entries`` (user ids) or a member of one of them (user-group ids)."""
    return any(e == user_id or (e.startswith("S") and user_id in groups(e)) for e in entries)


def _hhmm(text: str) -> time:
    hour, minute = text.split(":")
    return time(int(hour), int(minute), tzinfo=timezone.utc)


def _in_window(window: MaintenanceWindow, now: datetime) -> bool:
    now = now.astimezone(timezone.utc)
    start, end = _hhmm(window.start), _hhmm(window.end)
    t = now.timetz()
    day = _DAYS[now.weekday()]
    if start <= end:
        return day in window.days and start <= t < end
    # a window across midnight belongs to the day it starts on
    yesterday = _DAYS[(now.weekday() - 1) % 7]
    return (day in window.days and t >= start) or (yesterday in window.days and t < end)


def _next_start(window: MaintenanceWindow, now: datetime) -> datetime | None:
    """When ``window`` next opens after ``now``; None when it has no days."""
    now = now.astimezone(timezone.utc)
    start = _hhmm(window.start)
    for offset in range(0, 8):
        day = now.date() + timedelta(days=offset)
        candidate = datetime.combine(day, start)
        if _DAYS[day.weekday()] in window.days and candidate > now:
            return candidate
    return None
