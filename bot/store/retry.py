"""Store calls that survive a lost connection to the bot's database: re-run when nothing committed, checked when the commit's fate was lost.

Usage (StoreBase wraps every public method of its subclasses; nothing to call by hand)::

    store.transition(7, RequestStatus.APPLYING, RequestStatus.VERIFYING, actor="guardian")
    # the connection drops mid-call -> retried for up to RETRY_BUDGET_S, then StoreError "state-db-unavailable"

What may be re-run: a call whose transaction never reached COMMIT (the server rolls an open
transaction back when its session dies), and a read-only one. A call whose COMMIT was in flight
when the connection dropped is NOT re-run blindly: ``txid_status`` of the transaction's id (taken
just before COMMIT) says whether it committed. If it did, the call's effect happened and its
result is read back (``recover``: the request for a transition, the step row for start/finish),
or, for a method returning None, nothing is needed; otherwise StoreError says the change was saved.
This is exact where the "a conflict whose current status is the target status means we won"
heuristic is not: a duplicate job making the same transition would also look like a win.
"""
from __future__ import annotations

import functools
import inspect
import logging
import random
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import psycopg

from bot.errors import StoreError

log = logging.getLogger(__name__)

RETRY_BUDGET_S = 15.0  # how long one call keeps trying through a lost connection
FIRST_DELAY_S = 0.2
MAX_DELAY_S = 2.0
# SQLSTATEs of a session that ended under us: admin/crash shutdown, cannot connect now.
_SESSION_ENDED = {"57P01", "57P02", "57P03"}


@dataclass
class Call:
    """One outermost store call in flight: its deadline and where its transactions got to."""

    deadline: float
    committed: int = 0  # transactions of this call that committed
    committing_txid: int | None = None  # set just before COMMIT when the transaction wrote something
    committing: bool = False


_current: ContextVar[Call | None] = ContextVar("guardian_store_call", default=None)


def current_call() -> Call | None:
    return _current.get()


def connection_lost(exc: BaseException) -> bool:
    """True for an error that means the connection (not the statement) failed: retrying may help."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    sqlstate = getattr(getattr(exc, "diag", None), "sqlstate", None) or getattr(exc, "sqlstate", None) or ""
    if sqlstate in _SESSION_ENDED or sqlstate.startswith("08"):
        return True
    if sqlstate:  # a statement error with a code of its own (lock timeout, query cancelled, disk full...)
        return False
    return True  # no SQLSTATE: libpq failed (connect refused, connection dropped) or the pool timed out


def unavailable(method: str, exc: BaseException) -> StoreError:
    return StoreError(
        f"the bot's database (DATABASE_URL) stayed unreachable for {RETRY_BUDGET_S:g}s during {method} "
        f"({type(exc).__name__}); check that PostgreSQL is up, then retry", code="state-db-unavailable",
    )


def retried(method: Callable[..., Any], *, txid_status: Callable[[Any, int, float], str | None],
            recover: Callable[..., Any] | None) -> Callable[..., Any]:
    """``method`` re-run through a lost connection (see the module doc); nested store calls run as part of the outer one."""
    returns_none = inspect.signature(method).return_annotation in (None, "None")

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _current.get() is not None:
            return method(self, *args, **kwargs)
        state = Call(deadline=time.monotonic() + RETRY_BUDGET_S)
        token = _current.set(state)
        delay = FIRST_DELAY_S
        try:
            while True:
                state.committing, state.committing_txid = False, None
                try:
                    return method(self, *args, **kwargs)
                except psycopg.Error as exc:
                    if not connection_lost(exc):
                        raise
                    lost = exc
                if state.committing and state.committing_txid is not None:
                    fate = _fate(state, functools.partial(txid_status, self), method.__name__, lost)
                    if fate == "committed":
                        log.warning("store: %s committed though its connection dropped at COMMIT; reading the "
                                    "result back", method.__name__)
                        if returns_none:
                            return None
                        if recover is not None:
                            return recover(self, *args, **kwargs)
                        raise StoreError(f"{method.__name__} was saved, but the connection to the bot's database "
                                         "dropped before its result came back; reload and go on",
                                         code="state-db-result-lost") from lost
                elif state.committed:  # an earlier transaction of this call committed: re-running would repeat it
                    raise unavailable(method.__name__, lost) from lost
                if time.monotonic() + delay > state.deadline:
                    raise unavailable(method.__name__, lost) from lost
                log.warning("store: connection to the bot's database lost during %s (%s); retrying in %.1fs",
                            method.__name__, type(lost).__name__, delay)
                time.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(MAX_DELAY_S, delay * 2)
        finally:
            _current.reset(token)

    return call


def _fate(state: Call, txid_status: Callable[[int, float], str | None], name: str, lost: BaseException) -> str | None:
    """'committed', 'aborted' or None (unknown txid: it never committed), asked until the call's deadline."""
    assert state.committing_txid is not None
    delay = FIRST_DELAY_S
    while True:
        try:
            fate = txid_status(state.committing_txid, max(1.0, state.deadline - time.monotonic()))
        except psycopg.Error as exc:
            if not connection_lost(exc) or time.monotonic() + delay > state.deadline:
                raise unavailable(name, lost) from exc
            time.sleep(delay)
            delay = min(MAX_DELAY_S, delay * 2)
            continue
        if fate == "in progress" and time.monotonic() + delay <= state.deadline:  # the dying backend commits now
            time.sleep(delay)
            continue
        if fate == "in progress":
            raise unavailable(name, lost) from lost
        return fate
