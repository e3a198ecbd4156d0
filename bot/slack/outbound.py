"""Everything the bot sends to Slack leaves through here, with every known secret scrubbed (bot.redaction).

Usage::

    client = ScrubbingWebClient(token=token, base_url=api_url)   # Web API calls: text, blocks, views, uploads
    client = scrubbing(client)                                   # the same for a client made elsewhere
    app.middleware(scrub_outgoing)                               # Bolt's per-request client, respond(), ack()
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import BoltRequest, BoltResponse
from slack_bolt.context.ack import Ack
from slack_bolt.context.respond import Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError
from slack_sdk.web import SlackResponse
from slack_sdk.webhook import WebhookResponse

from bot.counters import COUNTERS, SLACK_API_ERRORS
from bot.redaction import IDENTIFIER_KEYS, scrub, scrub_value
from bot.slack.retries import slack_error


def _clean(payload: Any) -> Any:
    """A payload's text scrubbed; ids (channel, ts, block and action ids, button values, modal state), the
    token Slack needs and file handles sent as they are."""
    return scrub_value(payload, IDENTIFIER_KEYS) if payload else payload


def _clean_content(value: Any) -> Any:
    """An upload's content: text scrubbed; bytes scrubbed when they are UTF-8 text, else sent as they are."""
    if isinstance(value, bytes):
        try:
            return scrub(value.decode("utf-8")).encode("utf-8")
        except UnicodeDecodeError:
            return value
    return scrub_value(value)


class ScrubbingWebClient(WebClient):
    """A WebClient whose every API call has its form, query and JSON values scrubbed before it is sent."""

    def api_call(  # type: ignore[override]
        self, api_method: str, *, http_verb: str = "POST", files: dict | None = None, data: dict | None = None,
        params: dict | None = None, json: dict | None = None, headers: dict | None = None, auth: dict | None = None,
    ) -> SlackResponse:
        try:
            return super().api_call(api_method, http_verb=http_verb, files=files, data=_clean(data),
                                    params=_clean(params), json=_clean(json), headers=headers, auth=auth)
        except SlackClientError as exc:  # counted for GET /metrics (guardian_slack_api_errors_total), then raised
            COUNTERS.add(SLACK_API_ERRORS, api_method, slack_error(exc))
            raise

    def files_upload_v2(self, **kwargs: Any) -> SlackResponse:  # type: ignore[override]
        """The file's text is uploaded to a URL outside api_call: scrub it (and its title, comment) first."""
        kwargs = _clean(kwargs) or {}
        if "content" in kwargs:
            kwargs["content"] = _clean_content(kwargs["content"])
        if kwargs.get("file_uploads"):
            kwargs["file_uploads"] = [{**f, "content": _clean_content(f["content"])} if "content" in f else f
                                      for f in kwargs["file_uploads"]]
        return super().files_upload_v2(**kwargs)


def scrubbing(client: WebClient) -> ScrubbingWebClient:
    """``client`` itself when it already scrubs, else a ScrubbingWebClient with the same token and settings."""
    if isinstance(client, ScrubbingWebClient):
        return client
    return ScrubbingWebClient(
        token=client.token, base_url=client.base_url, timeout=client.timeout, ssl=client.ssl, proxy=client.proxy,
        headers=dict(client.headers), team_id=client.default_params.get("team_id"), logger=client.logger,
        retry_handlers=list(client.retry_handlers) if client.retry_handlers is not None else None,
    )


class ScrubbingRespond(Respond):
    """Bolt's respond() (a POST to the response_url, outside the WebClient) with its message scrubbed."""

    def __call__(self, *args: Any, **kwargs: Any) -> WebhookResponse:  # type: ignore[override]
        return super().__call__(*_clean(list(args)), **(_clean(kwargs) or {}))


class ScrubbingAck(Ack):
    """Bolt's ack(): the acknowledgement (a command's reply, a modal's errors or next view) scrubbed."""

    def __call__(self, *args: Any, **kwargs: Any) -> BoltResponse:  # type: ignore[override]
        return super().__call__(*_clean(list(args)), **(_clean(kwargs) or {}))


def scrub_outgoing(req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse:
    """Global Bolt middleware: the listeners' client, respond() and ack() scrub what they send.

    Bolt builds a plain WebClient per request (``context.client``), so the app's own client is not enough;
    Bolt middleware runs before the listener and never sees its reply, so ack() itself is replaced.
    """
    context = req.context
    if context.get("client") is not None:
        context["client"] = scrubbing(context["client"])
    if context.response_url:
        context["respond"] = ScrubbingRespond(response_url=context.response_url, proxy=context.client.proxy,
                                              ssl=context.client.ssl)
    if context.get("ack") is None or context["ack"].response is None:
        context["ack"] = ScrubbingAck()
    return next()
