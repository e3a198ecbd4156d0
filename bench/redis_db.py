"""A Redis database number of the bench's own, reserved the way test sessions reserve theirs (tests/conftest.py).

Usage::

    url = reserve(base_url)      # an empty database, marked as this process's until it exits
    ...
    release(url)                 # flush it (only while the mark is still ours)

Picking "an empty database" without marking it let a test session starting meanwhile take the same
number and clear it under the bench, or another process's RQ worker there take the bench's jobs (the run
then stopped at `queued`); a fixed number (ack used 14) collided the same way.
"""
from __future__ import annotations

import os
import uuid

from redis import Redis

from bot.local_services import with_redis_db

RESERVATION_KEY = "guardian-tests:reserved-by"  # the key test sessions honour (tests/conftest.py)
_OWNER = f"{os.getpid()}-bench-{uuid.uuid4().hex[:8]}"


def reserve(base_url: str) -> str:
    """The URL of a database that held nothing and now holds only this process's reservation."""
    explicit = os.environ.get("GUARDIAN_BENCH_REDIS_URL")
    if explicit:
        return explicit
    for db in range(2, 16):  # 0 and 1 are left to people and `guardian dev`; tests take from 15 down
        url = with_redis_db(base_url, db)
        client = Redis.from_url(url)
        try:
            if client.set(RESERVATION_KEY, _OWNER, nx=True, ex=6 * 3600):
                if client.dbsize() == 1:
                    return url
                client.delete(RESERVATION_KEY)
        finally:
            client.close()
    raise SystemExit("no empty Redis database number 2-15; set GUARDIAN_BENCH_REDIS_URL to an empty one")


def clear(url: str) -> None:
    """Empty the reserved database but keep the reservation (between scenarios)."""
    client = Redis.from_url(url)
    try:
        keys = [k for k in client.scan_iter(count=1000) if k != RESERVATION_KEY.encode()]
        if keys:
            client.delete(*keys)
        client.set(RESERVATION_KEY, _OWNER, nx=True, ex=6 * 3600)
    finally:
        client.close()


def release(url: str) -> None:
    """Flush the database if the reservation is still ours (or gone), as a finished test session does."""
    client = Redis.from_url(url)
    try:
        if os.environ.get("GUARDIAN_BENCH_REDIS_URL") != url and client.get(RESERVATION_KEY) in (_OWNER.encode(), None):
            client.flushdb()
    finally:
        client.close()
