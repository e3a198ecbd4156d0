"""How the bot's WebClients ride out Slack's rate limits (HTTP 429, Retry-After) and dropped connections.

A thread post that still fails is not dropped: Flow.post_in_thread queues a ``slack-post`` job
(workers/slack_post.py) that tries again after LATE_POST_DELAYS, unless Slack's error says trying again
cannot help (PERMANENT_ERRORS).

Usage::

    client = with_retries(WebClient(token=token, base_url=api_url))     # in place; returns the same client
    client = ScrubbingWebClient(token=token, base_url=api_url, retry_handlers=retry_handlers())
    delay = late_post_delay(attempt)                                    # seconds, or None: give up
"""
from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

RATE_LIMIT_RETRIES = 5  # each waits Slack's Retry-After (+ up to 1 s of jitter)
CONNECTION_RETRIES = 2
LATE_POST_STEP = "slack-post"
LATE_POST_DELAYS = (30, 120, 600, 1800)  # seconds before attempts 1, 2, 3, 4 of a post Slack did not take
# errors no later attempt can fix: the payload, the channel, the thread or the token is wrong
PERMANENT_ERRORS = frozenset({
    "invalid_blocks", "msg_too_long", "msg_blocks_too_long", "no_text", "invalid_arguments", "not_in_channel",
    "channel_not_found", "is_archived", "thread_not_found", "missing_scope", "not_authed", "invalid_auth",
    "account_inactive", "token_revoked", "token_expired", "restricted_action",
})


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


def slack_error(exc: SlackClientError) -> str:
    """Slack's error code (``ratelimited``, ``not_in_channel``...) or, for a transport failure, the exception's type."""
    response = getattr(exc, "response", None)
    return str(response.get("error")) if response is not None and response.get("error") else type(exc).__name__


def late_post_delay(attempt: int, error: str = "") -> int | None:
    """Seconds to wait before late attempt ``attempt`` (1-based) of a post that failed with ``error``; None
    when there is no point: the error is permanent or the attempts are spent."""
    if error in PERMANENT_ERRORS or not 1 <= attempt <= len(LATE_POST_DELAYS):
        return None
    return LATE_POST_DELAYS[attempt - 1]
