"""The run of an approved request as one table: its steps in order, each with its job, timeout, the request's
status while it runs, and what the reconciler records when the step's worker dies.

Usage::

    RUN.first.name                      # 'backup': the step Flow.start_run queues
    RUN.after("apply").name             # 'verify'
    RUN.after("verify")                 # None: the run ends, the request moves to RUN.done (succeeded)
    RUN.expects("apply")                # RequestStatus.BACKING_UP: the status apply finds (its compare-and-set)
    RUN.running(RequestStatus.APPLYING) # ('apply',): the steps that run under that status

The queue (workers/enqueue.py) takes each step's job and timeout from here, the step functions take
their statuses and the next step from here (workers/pipeline.py), and the reconciler
(workers/reconciler.py) the step of a running status and what a dead worker leaves behind. Adding a step
is one line here plus its job function. A step may keep the status of the step before it (a check that
runs while the request still shows ``applying``): it then has no compare-and-set of its own, and finds
the request in that status when it begins.
"""
from __future__ import annotations

from dataclasses import dataclass

from bot.models import DbState, RequestStatus


@dataclass(frozen=True)
class RunStep:
    name: str                 # the job's name in the queue and the outbox, and the step's name in the store
    job: str                  # the dotted job function, called with the request id: named, never imported here
    timeout_s: int            # the job's timeout; apply's must exceed the statement timeouts it sets
    status: RequestStatus     # the request's status while the step runs
    if_died: DbState | None   # a dead worker leaves the target like this (None: the step reads it from the target)
    died: str = ""            # what the reconciler says then, with what to do next


@dataclass(frozen=True)
class Pipeline:
    """An ordered run: ``start`` -> each step's status in turn -> ``done``."""

    steps: tuple[RunStep, ...]
    start: RequestStatus = RequestStatus.QUEUED
    done: RequestStatus = RequestStatus.SUCCEEDED

    def __post_init__(self) -> None:
        names = [s.name for s in self.steps]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"a pipeline needs steps with distinct names, not {names}")
        seen: list[RequestStatus] = []
        for s in self.steps:  # a status belongs to one stretch of steps: the reconciler maps it back to them
            if s.status in seen and seen[-1] is not s.status:
                raise ValueError(f"step {s.name!r}: status {s.status.value} is used by a step before the last one")
            seen.append(s.status)

    @property
    def first(self) -> RunStep:
        return self.steps[0]

    @property
    def last(self) -> RunStep:
        return self.steps[-1]

    def __getitem__(self, name: str) -> RunStep:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(f"no step {name!r} in the run ({', '.join(s.name for s in self.steps)})")

    def __contains__(self, name: object) -> bool:
        return any(s.name == name for s in self.steps)

    def after(self, name: str) -> RunStep | None:
        """The step that follows ``name``; None after the last one (the run is done)."""
        i = self.steps.index(self[name])
        return self.steps[i + 1] if i + 1 < len(self.steps) else None

    def expects(self, name: str) -> RequestStatus:
        """The status ``name`` finds the request in: the previous step's, or ``start`` for the first."""
        i = self.steps.index(self[name])
        return self.steps[i - 1].status if i else self.start

    def running(self, status: RequestStatus) -> tuple[str, ...]:
        """The steps that run under ``status``, in order (usually one; empty when no step does)."""
        return tuple(s.name for s in self.steps if s.status is status)


# The run of every approved request (DESIGN §2): backup, apply, verify, then succeeded.
RUN = Pipeline((
    RunStep("backup", "workers.backup.run", 6 * 3600, RequestStatus.BACKING_UP, DbState.UNTOUCHED,
            "the worker running the backup died; nothing was applied: retry the request"),
    RunStep("apply", "workers.apply.run", 12 * 3600, RequestStatus.APPLYING, None),  # the target's ledger says
    RunStep("verify", "workers.verify.run", 3600, RequestStatus.VERIFYING, DbState.APPLIED_UNVERIFIED,
            "the worker running verify died; the migrations are applied but not verified: "
            "check the thread's diff and verify by hand, or retry"),
))
