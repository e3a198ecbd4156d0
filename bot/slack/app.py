"""Builds the Bolt app: client, listeners and the one app-wide error handler.

Usage::

    app = build_app(load_settings(), load_config())            # HTTP: needs the signing secret
    app = build_app(settings, config, client=WebClient(token=t, base_url=standin.url))
"""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from collections.abc import Callable

from slack_bolt import App, BoltRequest, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.config import GuardianConfig, Settings
from bot.errors import ConfigError
from bot.slack.listeners import actions, commands, events, views
from bot.slack.outbound import ScrubbingWebClient, scrubbing, scrub_outgoing
from bot.slack.retries import with_retries
from bot.slack.replies import handle_error

if TYPE_CHECKING:
    from bot.flow import Flow
    from bot.store.deliveries import DeliveriesStore

logger = logging.getLogger(__name__)
LISTENER_THREADS = 64


def build_app(
    settings: Settings,
    config: GuardianConfig,
    client: WebClient | None = None,
    *,
    socket_mode: bool = False,
    verify_token: bool = False,
    flow: "Flow | None" = None,
) -> App:
    """A configured Bolt App. ``client`` defaults to WebClient(SLACK_BOT_TOKEN, base_url=SLACK_API_URL); either
    way every call it makes, and every reply Bolt sends, has known secrets scrubbed (bot/slack/outbound.py).

    ``verify_token`` calls auth.test now (against ``client``'s base URL) so a bad token fails at start;
    otherwise Bolt calls it on the first request. Socket Mode needs no signing secret.
    """
    settings.require(*(["slack_bot_token"] if client is None else []))
    if not socket_mode:
        settings.require("slack_signing_secret")
    if client is None:
        assert settings.slack_bot_token is not None
        client = ScrubbingWebClient(token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url)
    client = scrubbing(with_retries(client))  # the caller's client too: 429s are waited out, not dropped
    signing_secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    if verify_token:
        check_token(client)
    app = App(
        name="migration-guardian",
        client=client,
        signing_secret=None if socket_mode else signing_secret,
        request_verification_enabled=not socket_mode,
        # With verify_token, check_token has just proved the token and Bolt's own auth.test (once, now) is
        # cached for every request; without it Bolt calls auth.test on the first request instead.
        token_verification_enabled=verify_token,
        process_before_response=False,
        # What runs after ack() (posting cards, reading git, connecting to targets) waits on Slack and
        # databases; Bolt's default pool of 5 made every new command and click wait behind them before it
        # could even ack (bench/ack.py with a 2.5 s Slack: click p95 1.8 s with 5 threads, 0.04 s with 64).
        listener_executor=ThreadPoolExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="guardian-listener"),
    )
    app.error(handle_error)
    app.middleware(scrub_outgoing)  # first: it also covers what later middleware answers
    if flow is None and settings.database_url is not None:
        flow = build_flow(settings, config, client)
    # With the bot's state at hand every delivery is claimed by its Slack id, so a retry whose first
    # delivery never arrived is handled and a replay or duplicate is not; without it, retries are dropped.
    app.middleware(process_once(flow.store) if flow is not None else ignore_slack_retries)
    commands.register(app, config, flow)
    actions.register(app, config, flow)
    views.register(app, config, flow)
    events.register(app, config, flow)
    return app


def delivery_key(body: dict[str, Any]) -> tuple[str, str] | None:
    """(Slack's id of this delivery, its kind), the same for a replay or a retry of it; None when it has none.

    Slash commands and interactions carry a ``trigger_id`` made for each invocation (a click also its
    ``action_ts``); Events API deliveries an ``event_id``.
    """
    if not isinstance(body, dict):
        return None
    if body.get("type") == "event_callback" and body.get("event_id"):
        return f"event:{body['event_id']}", "event"
    trigger = body.get("trigger_id")
    if not isinstance(trigger, str) or not trigger:
        return None
    if body.get("command"):
        return f"command:{trigger}", "command"
    kind = str(body.get("type") or "interaction")
    actions = body.get("actions") if isinstance(body.get("actions"), list) else []
    stamp = ":".join(str(a.get("action_ts", "")) for a in actions if isinstance(a, dict))
    return f"{kind}:{trigger}" + (f":{stamp}" if stamp else ""), kind


def process_once(store: "DeliveriesStore") -> Callable[..., BoltResponse]:
    """Middleware: a delivery whose Slack id was already claimed (a replay within the signature's five
    minutes, or Slack retrying what we already have) is acknowledged and does nothing."""

    def claim_or_ignore(req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse:
        key = delivery_key(req.body)
        if key is not None and not store.claim_delivery(*key):
            logger.info("ignoring %s %s: already processed (a replay or a retry)", key[1], key[0])
            return BoltResponse(status=200, body="")
        return next()

    return claim_or_ignore


def ignore_slack_retries(req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse:
    """Without the bot's state to claim deliveries in: Slack re-sends a request it thinks we missed
    (X-Slack-Retry-Num 1, 2, 3; Socket Mode's first delivery arrives as "0", which is no retry); we ack
    in milliseconds, so the first delivery is already being handled: acknowledge the retry, do nothing twice."""
    retry = (req.headers.get("x-slack-retry-num") or [None])[0]
    if retry and retry != "0":
        logger.info("ignoring Slack retry %s (%s)", retry, (req.headers.get("x-slack-retry-reason") or ["?"])[0])
        return BoltResponse(status=200, body="")
    return next()


def build_flow(settings: Settings, config: GuardianConfig, client: WebClient) -> "Flow":
    """The request flow over the bot's store (DATABASE_URL) and queue (REDIS_URL)."""
    from redis import Redis

    from bot.flow import Flow
    from bot.slack.notifier import Notifier
    from bot.store import Store

    assert settings.database_url is not None
    store = Store(settings.database_url.get_secret_value())
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    return Flow(settings, config, store, redis, Notifier(client))


def check_token(client: WebClient) -> None:
    """Call auth.test through ``client``; a refused token or unreachable API becomes one ConfigError line."""
    try:
        client.auth_test()
    except SlackApiError as exc:
        raise ConfigError(
            f"SLACK_BOT_TOKEN was refused by the Slack API at {client.base_url} "
            f"({exc.response.get('error', 'unknown error')}); check the token and SLACK_API_URL",
            code="slack-auth",
        ) from None
    except (SlackClientError, OSError) as exc:
        raise ConfigError(
            f"cannot reach the Slack API at {client.base_url} ({type(exc).__name__}); check SLACK_API_URL",
            code="slack-unreachable",
        ) from None
