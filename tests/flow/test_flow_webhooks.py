"""Outbound webhooks (signed JSON, each event once, retried on failure) and `guardian postmortem`."""
from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rq import Queue

from bot.config import WebhookConfig
from bot.errors import GuardianError
from workers import runtime as runtime_module
from workers.enqueue import QUEUE_NAME
from workers.webhooks import deliver, pump

from flow_harness import APPROVER_A, REQUESTER
from test_flow_incidents import FLAG, FLAG_DOWN, FLAG_VERIFY, add_with_companions, approve_and_run
from test_flow_approval import plan

SECRET = "webhook-shared-secret"


class Receiver:
    """A local HTTP endpoint that records posts and fails the first ``fail_first`` of them."""

    def __init__(self, fail_first: int = 0) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = 500 if len(receiver.posts) <= receiver.fail_first else 204
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def receiver():
    r = Receiver(fail_first=1)
    yield r
    r.server.shutdown()


def test_incident_events_are_signed_delivered_once_and_retried(harness, receiver, monkeypatch):
    monkeypatch.setenv("GT_HOOK_SECRET", SECRET)
    hook = WebhookConfig(name="statuspage", url=receiver.url, secret_env="GT_HOOK_SECRET", events=["incident."])
    rt = runtime_module.runtime()
    rt.config = harness.config.model_copy(update={"webhooks": [hook]})
    add_with_companions(harness, "20240101000000_add_flag", FLAG, down=FLAG_DOWN, verify=FLAG_VERIFY)
    approve_and_run(harness, plan(harness), APPROVER_A)  # verify fails: an incident opens
    assert pump(rt, harness.redis) >= 1
    assert pump(rt, harness.redis) == 0  # each event is handed out once
    jobs = Queue(QUEUE_NAME, connection=harness.redis).get_job_ids()
    webhook_jobs = [j for j in jobs if j.startswith("guardian-webhook-statuspage-")]
    assert webhook_jobs
    first_event = int(webhook_jobs[0].rsplit("-", 1)[1])
    with pytest.raises(GuardianError, match="answered HTTP 500"):
        deliver("statuspage", first_event)  # the receiver fails once: RQ would retry with backoff
    assert deliver("statuspage", first_event) == 204
    headers, body = receiver.posts[-1]
    expected = "v1=" + hmac.new(SECRET.encode(), f"v1:{headers['x-guardian-timestamp']}:".encode() + body,
                                hashlib.sha256).hexdigest()
    assert headers["x-guardian-signature"] == expected
    event = json.loads(body)
    assert event["kind"] == "incident.opened" and event["id"] == first_event
    assert SECRET not in body.decode()


def test_postmortem_command_prints_the_draft(harness):
    add_with_companions(harness, "20240101000000_add_flag", FLAG, down=FLAG_DOWN, verify=FLAG_VERIFY)
    rid = plan(harness)
    approve_and_run(harness, rid, APPROVER_A)
    incident = harness.store.find_incident(request_id=rid)
    env = {"DATABASE_URL": harness.settings.database_url.get_secret_value(), "PATH": "/usr/bin:/bin",
           "GUARDIAN_CONFIG": str(harness.settings.guardian_config), "GT_STAGING_URL": harness.targets["staging"],
           "GT_PRODUCTION_URL": harness.targets["production"]}
    out = subprocess.run([sys.executable, "-m", "bot.cli", "postmortem", str(incident.id)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"# Post-mortem: incident #{incident.id}" in out.stdout
    # verification failed, so the verify query is what failed (issue 17); without Slack, people stay ids
    assert "SELECT count(*) = 0 FROM users;" in out.stdout and f"<@{REQUESTER}>" in out.stdout
    missing = subprocess.run([sys.executable, "-m", "bot.cli", "postmortem", "999999"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "incident 999999 does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
