"""Domain values that cross module boundaries: requests, decisions, steps, events, incidents."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class RequestStatus(str, Enum):
    ANALYZING = "analyzing"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    QUEUED = "queued"
    BACKING_UP = "backing_up"
    APPLYING = "applying"
    VERIFYING = "verifying"
    SUCCEEDED = "succeeded"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    FAILED = "failed"


TERMINAL = frozenset(
    {RequestStatus.SUCCEEDED, RequestStatus.REJECTED, RequestStatus.CANCELLED,
     RequestStatus.EXPIRED, RequestStatus.FAILED}
)

S = RequestStatus
# The request state machine (DESIGN §2). Anything not listed is refused by the store.
TRANSITIONS: dict[RequestStatus, frozenset[RequestStatus]] = {
    S.ANALYZING: frozenset({S.AWAITING_APPROVAL, S.FAILED, S.CANCELLED}),
    S.AWAITING_APPROVAL: frozenset({S.APPROVED, S.REJECTED, S.CANCELLED, S.EXPIRED, S.ANALYZING}),
    S.APPROVED: frozenset({S.QUEUED, S.AWAITING_APPROVAL, S.CANCELLED, S.EXPIRED}),
    S.QUEUED: frozenset({S.BACKING_UP, S.APPLYING, S.AWAITING_APPROVAL, S.CANCELLED, S.FAILED}),
    S.BACKING_UP: frozenset({S.APPLYING, S.FAILED}),
    S.APPLYING: frozenset({S.VERIFYING, S.FAILED}),
    S.VERIFYING: frozenset({S.SUCCEEDED, S.FAILED}),
    S.SUCCEEDED: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
    # a failed request may be retried (only when the database is untouched; the policy checks that)
    S.FAILED: frozenset({S.QUEUED}),
}
del S


class DbState(str, Enum):
    """What the target holds after a failure."""

    UNTOUCHED = "untouched"
    ROLLED_BACK = "rolled_back"
    PARTIALLY_APPLIED = "partially_applied"
    APPLIED_UNVERIFIED = "applied_unverified"
    APPLIED = "applied"


_DB_STATE_WORDS = {
    "untouched": "was not changed",
    "rolled_back": "is rolled back",
    "partially_applied": "is partly changed (some migrations committed, the rest did not)",
    "applied_unverified": "holds the migration, but its checks failed",
    "applied": "holds the migration",
}


def database_words(state: "DbState | str | None") -> str:
    """What the database holds, in words that follow "the database …" (never an internal state name)."""
    value = state.value if isinstance(state, DbState) else state
    return _DB_STATE_WORDS.get(value or "", "is in an unknown state: look at it before acting")


class IncidentStatus(str, Enum):
    OPEN = "open"
    MITIGATING = "mitigating"
    MITIGATED = "mitigated"
    RESOLVED = "resolved"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)


class MigrationRef(_Frozen):
    """One migration inside a request, bound by its sha256."""

    position: int
    name: str
    version: str | None = None  # as the migration's tool orders it
    ledger_name: str | None = None  # as the tool's ledger names it (Prisma: the folder name)
    path: str | None = None
    sha256: str
    sql: str
    down_sql: str | None = None
    verify_sql: str | None = None
    risk: str | None = None
    report: dict[str, Any] | None = None


# What a click or modal says it was shown when it carries no fingerprint it can prove: it matches no preview.
UNKNOWN_PREVIEW = "unknown-preview"


class Request(_Frozen):
    id: int
    environment: str
    requester: str
    source: str = "repo"
    status: RequestStatus
    risk: str | None = None
    risk_reasons: list[str] = Field(default_factory=list)
    git_ref: str | None = None
    git_commit: str | None = None
    target_fingerprint: str | None = None
    policy_version: str | None = None
    channel: str | None = None
    message_ts: str | None = None
    thread_ts: str | None = None
    run_after: datetime | None = None
    failed_step: str | None = None
    db_state: DbState | None = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    selection: dict[str, Any] = Field(default_factory=dict)  # {"migrations": [...], "pending": bool, "ref": ...}
    target: dict[str, Any] = Field(default_factory=dict)  # {"host", "port", "database", "server_version"}
    parent_request_id: int | None = None  # for a rollback request: the request it undoes
    # the rehearsal approvers are shown: {"digest", "outcome", "copy"} (bot/pg/summary.py rehearsal_outcome); None
    # when none ran
    rehearsal: dict[str, Any] | None = None
    migrations: list[MigrationRef] = Field(default_factory=list)

    @property
    def sha256s(self) -> dict[str, str]:
        return {m.name: m.sha256 for m in self.migrations}

    @property
    def preview_fingerprint(self) -> str:
        """Identity of the preview an approver is shown: files' sha256, commit, target, policy and, when one ran,
        the rehearsal's result (its digest; a request without one keeps the fingerprint it always had).

        Approve and Reject buttons carry it; a click whose fingerprint is not the request's current
        one approves nothing (the request was re-analysed since that preview was posted).
        """
        body = {"request": self.id, "environment": self.environment, "sha256s": self.sha256s,
                "commit": self.git_commit, "target": self.target_fingerprint, "policy": self.policy_version}
        digest = (self.rehearsal or {}).get("digest")
        if digest:
            body["rehearsal"] = digest
        material = json.dumps(body, sort_keys=True)
        return hashlib.sha256(material.encode()).hexdigest()[:20]


class Decision(_Frozen):
    id: int
    request_id: int
    user_id: str
    decision: str
    reason: str | None = None
    sha256s: dict[str, str]
    git_commit: str | None = None
    environment: str
    target_fingerprint: str | None = None
    policy_version: str | None = None
    preview_fingerprint: str | None = None  # the preview the decider was shown (None: recorded before 0007)
    voided_at: datetime | None = None
    void_reason: str | None = None
    created_at: datetime


class Step(_Frozen):
    id: int
    request_id: int
    step: str
    attempt: int
    status: str
    job_id: str | None = None
    started_at: datetime
    finished_at: datetime | None = None
    duration_ms: int | None = None
    outcome: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None


class Event(_Frozen):
    id: int
    request_id: int | None = None
    incident_id: int | None = None
    actor: str
    kind: str
    detail: dict[str, Any] = Field(default_factory=dict)
    permalink: str | None = None
    created_at: datetime
    prev_hash: str
    hash: str


class Freeze(_Frozen):
    id: int
    environment: str
    reason: str
    created_by: str
    starts_at: datetime
    ends_at: datetime
    lifted_at: datetime | None = None
    lifted_by: str | None = None


class Incident(_Frozen):
    id: int
    request_id: int
    status: IncidentStatus
    channel: str | None = None
    thread_ts: str | None = None
    summary: str = ""
    postmortem: str | None = None
    opened_by: str
    created_at: datetime
    resolved_at: datetime | None = None


class Backup(_Frozen):
    id: int
    request_id: int | None = None
    environment: str
    path: str
    scope: str
    format: str
    sha256: str | None = None
    size_bytes: int | None = None
    duration_ms: int | None = None
    verified: bool
    created_at: datetime
    expires_at: datetime | None = None
    deleted_at: datetime | None = None


class IncidentNote(_Frozen):
    id: int
    incident_id: int
    author: str
    text: str
    source: str  # command | thread | pin
    slack_ts: str | None = None
    created_at: datetime


class RehearsalCopyRecord(_Frozen):
    """A rehearsal copy recorded before it was made (bot/pg/copy.py), until it is dropped."""

    name: str
    request_id: int
    environment: str
    kind: str  # template | backup | command
    owner: str  # host:pid of the process that made it
    created_at: datetime
