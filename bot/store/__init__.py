"""All SQL for the bot's own state; nothing else writes it.

Usage::

    store = Store(settings.database_url.get_secret_value())
    req = store.create_request("staging", "U123", [NewMigration(name="001_x", sql="…")])
    req = store.transition(req.id, RequestStatus.AWAITING_APPROVAL, RequestStatus.APPROVED, actor="U456")

Status changes are compare-and-set (``UPDATE … WHERE id = %s AND status = %s RETURNING``), so a
duplicate click or duplicate job can never apply a transition twice; each one appends an event to
the hash-chained audit log in the same transaction. The SQL lives in ``requests`` (requests,
decisions, steps), ``operations`` (freezes, backups, incidents, webhooks, events), ``fleet`` (rollouts) and
``copies`` (rehearsal copies alive).
"""
from bot.store.base import EVENT_CHAIN_LOCK, GENESIS_HASH, NewMigration
from bot.store.copies import CopiesStore
from bot.store.deliveries import DeliveriesStore
from bot.store.fleet import FleetStore
from bot.store.operations import OperationsStore
from bot.store.requests import RequestsStore
from bot.store.stats import StatsStore


class Store(RequestsStore, OperationsStore, DeliveriesStore, StatsStore, FleetStore, CopiesStore):
    """The bot's PostgreSQL state behind a small connection pool."""


__all__ = ["EVENT_CHAIN_LOCK", "GENESIS_HASH", "NewMigration", "Store"]
