"""Outbound webhooks: events from the audit log, as signed JSON, delivered by RQ jobs retried with backoff.

Usage::

    pump(rt, redis)                       # the worker's maintenance loop: enqueue new events per webhook
    deliver("statuspage", event_id)       # RQ job: POST once; raises on failure so RQ retries it

Each request carries ``X-Guardian-Timestamp`` and ``X-Guardian-Signature: v1=<hex>``, the HMAC-SHA256
of ``v1:<timestamp>:<body>`` under the webhook's shared secret (Slack's scheme), so receivers can
check origin and freshness. ``X-Guardian-Event-Id`` lets them drop a redelivery.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any

from redis import Redis
from rq import Queue, Retry

from bot.config import WebhookConfig
from bot.errors import GuardianError
from bot.models import Event
from workers.enqueue import QUEUE_NAME
from workers.runtime import runtime

log = logging.getLogger(__name__)
RETRY_INTERVALS_S = [5, 30, 120, 600, 1800]


class DeliveryFailed(GuardianError):
    code = "webhook-failed"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"v1:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def payload(event: Event) -> dict[str, Any]:
    return {"id": event.id, "kind": event.kind, "request_id": event.request_id, "incident_id": event.incident_id,
            "actor": event.actor, "detail": event.detail, "created_at": event.created_at.isoformat(),
            "hash": event.hash}


def pump(rt: Any, redis: Redis) -> int:
    """Enqueue a delivery job per new wanted event per webhook; returns how many were enqueued."""
    queue = Queue(QUEUE_NAME, connection=redis)
    count = 0
    for hook in rt.config.webhooks:
        for event in rt.store.claim_webhook_events(hook.name, hook.wants):
            queue.enqueue("workers.webhooks.deliver", hook.name, event.id, job_id=f"guardian-webhook-{hook.name}-{event.id}",
                          retry=Retry(max=len(RETRY_INTERVALS_S), interval=RETRY_INTERVALS_S),
                          description=f"webhook {hook.name}: event {event.id} ({event.kind})")
            count += 1
    return count


def _hook(name: str) -> WebhookConfig:
    hook = next((h for h in runtime().config.webhooks if h.name == name), None)
    if hook is None:
        raise DeliveryFailed(f"webhook {name!r} is no longer configured; the delivery is dropped", code="webhook-gone")
    return hook


def deliver(name: str, event_id: int) -> int:
    """POST one event; returns the HTTP status. Any failure raises, so RQ retries with backoff."""
    hook = _hook(name)
    event = runtime().store.get_event(event_id)
    body = json.dumps(payload(event), sort_keys=True, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    request = urllib.request.Request(hook.url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "migration-guardian-webhook",
        "X-Guardian-Event": event.kind, "X-Guardian-Event-Id": str(event.id), "X-Guardian-Timestamp": timestamp,
        "X-Guardian-Signature": sign(hook.secret(), timestamp, body)})
    try:
        with urllib.request.urlopen(request, timeout=hook.timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        raise DeliveryFailed(f"webhook {name!r} answered HTTP {exc.code} for event {event_id}; RQ retries it") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryFailed(f"webhook {name!r} unreachable for event {event_id} ({type(exc).__name__}); RQ retries it") from None
    log.info("webhook %s: event %s (%s) delivered, HTTP %s", name, event_id, event.kind, status)
    return status
