"""Approval policy: who may decide, quorum by risk, binding, expiry, freezes and windows."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bot.config import EnvironmentConfig
from bot.errors import PolicyDenied
from bot.models import Decision, Freeze, MigrationRef, Request, RequestStatus
from bot.policy import Policy

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)  # a Wednesday
GROUPS = {"S0DBAS": ["U_DBA1", "U_DBA2"]}


def env(**kw) -> EnvironmentConfig:
    base = dict(name="staging", database_url_env="STAGING_DATABASE_URL", approvers=["U_A", "U_B", "S0DBAS"])
    return EnvironmentConfig(**{**base, **kw})


def request(status=RequestStatus.AWAITING_APPROVAL, risk="low", sha="a" * 64, commit="c1", policy_version=None) -> Request:
    return Request(
        id=7, environment="staging", requester="U_REQ", status=status, risk=risk, git_commit=commit,
        policy_version=policy_version, created_at=NOW, updated_at=NOW,
        migrations=[MigrationRef(position=1, name="001_x", sha256=sha, sql="select 1")],
    )


def decision(user, policy: Policy, kind="approve", sha="a" * 64, commit="c1", at=NOW, voided=False) -> Decision:
    return Decision(id=1, request_id=7, user_id=user, decision=kind, sha256s={"001_x": sha}, git_commit=commit,
                    environment="staging", policy_version=policy.version, created_at=at,
                    voided_at=NOW if voided else None)


def groups(gid: str) -> list[str]:
    return GROUPS.get(gid, [])


def test_requester_cannot_approve_own_request():
    with pytest.raises(PolicyDenied) as info:
        Policy(env()).check_can_decide(request(), "U_REQ", groups=groups)
    assert info.value.code == "self-approval"


def test_outsider_cannot_approve_but_group_member_can():
    policy = Policy(env())
    with pytest.raises(PolicyDenied) as info:
        policy.check_can_decide(request(), "U_OUTSIDER", groups=groups)
    assert info.value.code == "not-an-approver" and "<@U_A>" in info.value.message
    policy.check_can_decide(request(), "U_DBA2", groups=groups)  # via the user group
    policy.check_can_decide(request(), "U_B", groups=groups)


def test_only_awaiting_requests_take_decisions():
    with pytest.raises(PolicyDenied, match="cancelled"):
        Policy(env()).check_can_decide(request(status=RequestStatus.CANCELLED), "U_A", groups=groups)


def test_high_risk_needs_two_approvals():
    policy = Policy(env())
    one = [decision("U_A", policy)]
    assert policy.tally(request(risk="low"), one, NOW).reached
    assert not policy.tally(request(risk="high"), one, NOW).reached
    two = one + [decision("U_B", policy)]
    assert policy.tally(request(risk="high"), two, NOW).reached


def test_a_rejection_blocks_the_quorum():
    policy = Policy(env())
    tally = policy.tally(request(), [decision("U_A", policy), decision("U_B", policy, kind="reject")], NOW)
    assert not tally.reached and tally.rejected_by == ("U_B",)


def test_changed_sql_commit_or_policy_makes_an_approval_stale():
    policy = Policy(env())
    tally = policy.tally(request(sha="b" * 64), [decision("U_A", policy)], NOW)
    assert not tally.reached and "the SQL changed (001_x)" in tally.stale[0][1]
    tally = policy.tally(request(commit="c2"), [decision("U_A", policy)], NOW)
    assert "git commit moved" in tally.stale[0][1]
    stricter = Policy(env(approvers=["U_A"]))
    assert stricter.version != policy.version
    assert "policy changed" in stricter.tally(request(), [decision("U_A", policy)], NOW).stale[0][1]


def test_approvals_expire():
    policy = Policy(env(approval_expiry="1h"))
    old = decision("U_A", policy, at=NOW - timedelta(hours=2))
    tally = policy.tally(request(), [old], NOW)
    assert not tally.reached and "expired" in tally.stale[0][1]


def test_voided_decisions_are_ignored():
    policy = Policy(env())
    assert policy.tally(request(), [decision("U_A", policy, voided=True)], NOW).count == 0


def test_prerequisite_environments():
    policy = Policy(env(requires=["staging"]))
    assert policy.missing_prerequisites([]) == ["staging"]
    assert policy.missing_prerequisites(["staging"]) == []


def test_freeze_holds_the_run_and_says_until_when():
    policy = Policy(env())
    freeze = Freeze(id=1, environment="staging", reason="launch day", created_by="U_A",
                    starts_at=NOW - timedelta(hours=1), ends_at=NOW + timedelta(hours=3))
    ok, when, why = policy.run_gate(NOW, freeze)
    assert not ok and when == freeze.ends_at and "frozen until 2026-11-25 15:00 UTC" in why and "launch day" in why


def test_maintenance_window_waits_for_the_next_start():
    policy = Policy(env(maintenance_windows=[{"days": ["thu"], "start": "02:00", "end": "04:00"}]))
    ok, when, why = policy.run_gate(NOW, None)
    assert not ok and when == datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc) and "Thu" in why
    ok, _, _ = policy.run_gate(datetime(2026, 11, 26, 3, 0, tzinfo=timezone.utc), None)
    assert ok


def test_window_across_midnight():
    policy = Policy(env(maintenance_windows=[{"days": ["wed"], "start": "23:00", "end": "01:00"}]))
    assert policy.run_gate(datetime(2026, 11, 25, 23, 30, tzinfo=timezone.utc), None)[0]
    assert policy.run_gate(datetime(2026, 11, 26, 0, 30, tzinfo=timezone.utc), None)[0]
    assert not policy.run_gate(datetime(2026, 11, 26, 1, 30, tzinfo=timezone.utc), None)[0]


def test_only_requester_cancels():
    policy = Policy(env())
    with pytest.raises(PolicyDenied, match="only the requester"):
        policy.check_can_cancel(request(), "U_A")
    policy.check_can_cancel(request(), "U_REQ")
    with pytest.raises(PolicyDenied, match="no longer be cancelled"):
        policy.check_can_cancel(request(status=RequestStatus.APPLYING), "U_REQ")


# ----------------------------------------------------------------- incidents: notes, post-mortems, opening
def test_notes_by_anyone_by_default_and_restricted_by_incident_notes():
    Policy(env()).check_can_note(request(status=RequestStatus.FAILED), "U_OUTSIDER", groups=groups)
    strict = Policy(env(incident_notes="approvers"))
    with pytest.raises(PolicyDenied) as info:
        strict.check_can_note(request(status=RequestStatus.FAILED), "U_OUTSIDER", groups=groups)
    assert info.value.code == "not-allowed-to-note"
    assert "<@U_A>" in info.value.message and "<!subteam^S0DBAS>" in info.value.message
    assert "requester" not in info.value.message  # "approvers" leaves the requester out
    with pytest.raises(PolicyDenied):
        strict.check_can_note(request(status=RequestStatus.FAILED), "U_REQ", groups=groups)
    strict.check_can_note(request(status=RequestStatus.FAILED), "U_DBA1", groups=groups)  # via the user group
    Policy(env(incident_notes="approvers_and_requester")).check_can_note(request(), "U_REQ", groups=groups)


def test_postmortem_by_approvers_and_the_requester_and_says_who_to_ask():
    policy = Policy(env())
    failed = request(status=RequestStatus.FAILED)
    for user in ("U_A", "U_DBA2", "U_REQ"):
        policy.check_can_publish_postmortem(failed, user, groups=groups)
    with pytest.raises(PolicyDenied) as info:
        policy.check_can_publish_postmortem(failed, "U_OUTSIDER", groups=groups)
    assert info.value.code == "not-allowed-to-publish"
    assert "<@U_A>, <@U_B>, <!subteam^S0DBAS>" in info.value.message and "requester (<@U_REQ>)" in info.value.message
    with pytest.raises(PolicyDenied) as info:
        Policy(env(incident_managers="approvers")).check_can_publish_postmortem(failed, "U_REQ", groups=groups)
    assert "requester" not in info.value.message


def test_opening_on_a_succeeded_request_is_for_managers_and_on_a_failed_one_for_anyone():
    policy = Policy(env())
    succeeded = request(status=RequestStatus.SUCCEEDED)
    with pytest.raises(PolicyDenied) as info:
        policy.check_can_open_incident(succeeded, "U_OUTSIDER", groups=groups)
    assert info.value.code == "not-allowed-to-open-incident" and "succeeded" in info.value.message
    policy.check_can_open_incident(succeeded, "U_REQ", groups=groups)
    policy.check_can_open_incident(succeeded, "U_B", groups=groups)
    policy.check_can_open_incident(request(status=RequestStatus.FAILED), "U_OUTSIDER", groups=groups)
    with pytest.raises(PolicyDenied):
        Policy(env(incident_managers="approvers")).check_can_open_incident(succeeded, "U_REQ", groups=groups)


def test_incident_responders_may_do_all_three_without_approving():
    policy = Policy(env(incident_notes="approvers", incident_managers="approvers",
                        incident_responders=["U_SRE", "S0ONCALL"]))

    def with_oncall(gid: str) -> list[str]:
        return {"S0ONCALL": ["U_PAGED"], **GROUPS}.get(gid, [])

    for user in ("U_SRE", "U_PAGED"):
        policy.check_can_note(request(), user, groups=with_oncall)
        policy.check_can_publish_postmortem(request(), user, groups=with_oncall)
        policy.check_can_open_incident(request(status=RequestStatus.SUCCEEDED), user, groups=with_oncall)
    assert not policy.is_approver("U_SRE", with_oncall)  # responders take no part in approvals
    with pytest.raises(PolicyDenied) as info:
        policy.check_can_note(request(), "U_OUTSIDER", groups=with_oncall)
    assert "incident responders (<@U_SRE>, <!subteam^S0ONCALL>)" in info.value.message


def test_incident_keys_are_not_part_of_the_approval_policy_version():
    """Who may note or publish decides no approval, so changing it voids none."""
    base = Policy(env()).version
    assert Policy(env(incident_notes="approvers", incident_managers="approvers",
                      incident_responders=["U_SRE"])).version == base
    assert Policy(env(approvers=["U_A"])).version != base
