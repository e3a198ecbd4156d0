"""How the bot's WebClients ride out Slack's rate limits (HTTP 429, Retry-After) and dropped connections.

Usage::

    client = with_retries(WebClient(token=token, base_url=api_url))     # in place; returns the same client
    client = ScrubbingWebClient(token=token, base_url=api_url, retry_handlers=retry_handlers())
"""
from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

RATE_LIMIT_RETRIES = 5  # each waits Slack's Retry-After (+ up to 1 s of jitter)
CONNECTION_RETRIES = 2


def retry_handlers() -> list[RetryHandler]:
    """slack_sdk's connection-error and rate-limit handlers, as every client of the bot uses them."""
    return [ConnectionErrorRetryHandler(max_retry_count=CONNECTION_RETRIES),
            RateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES)]


def with_retries(client: WebClient) -> WebClient:
    """Give ``client`` (in place) the handlers of retry_handlers() it lacks; clients copied from it later
    (Bolt's per-request client, the scrubbing wrapper) copy them too."""
    handlers = list(client.retry_handlers or [])
    for wanted in retry_handlers():
        if not any(type(h) is type(wanted) for h in handlers):
            handlers.append(wanted)
    client.retry_handlers = handlers
    return client
