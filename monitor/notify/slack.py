"""Slack delivery: a few lines of I/O per message, over slack-sdk's async clients.

Two senders answer the same `Sender` protocol: `BotSender` (a bot token: chat.postMessage,
chat.update, thread replies) and `WebhookSender` (an incoming webhook, which can neither
edit nor thread: it posts a new message instead). Both turn every way of failing into a
`SlackError` that says whether trying again can help, and never carries the token or the
webhook URL (its path is the secret).

Retries inside one call are short and bounded (slack-sdk's retry handlers: a 429 whose
Retry-After is a few seconds, a dropped connection); anything longer goes back to the
delivery loop, which waits without holding a call open.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any, Final, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from monitor.errors import SnowmonError
from monitor.secret import Secret

Message = dict[str, Any]

# slack-sdk logs request URLs (a webhook's secret path) at DEBUG when its logger's own
# level allows it; this logger never does, whatever the root level is.
_SDK_LOG: Final = logging.getLogger("snowmon.notify.sdk")
_SDK_LOG.setLevel(logging.INFO)

# Web API error codes that say "later", not "never".
RETRYABLE_CODES: Final = frozenset(
    {"ratelimited", "service_unavailable", "fatal_error", "internal_error", "request_timeout"}
)
# chat.update cannot edit the original: post a new message instead.
GONE_CODES: Final = frozenset(
    {"message_not_found", "cant_update_message", "edit_window_closed", "thread_not_found"}
)
_CODE: Final = re.compile(r"[a-z0-9_]{1,60}")


class SlackError(SnowmonError):
    """A message was not delivered. `code` is safe to log: a Slack error code, an HTTP
    status or an exception class name, never a URL or a token."""

    def __init__(
        self,
        code: str,
        *,
        retry: bool,
        retry_after: float | None = None,
        gone: bool = False,
    ) -> None:
        super().__init__(f"slack refused the message: {code}")
        self.code = code
        self.retry = retry
        self.retry_after = retry_after
        self.gone = gone


@dataclass(frozen=True, slots=True)
class Posted:
    """Where a new message landed: chat.update needs the channel's id, not its name."""

    channel: str = ""
    ts: str = ""


class Sender(Protocol):
    @property
    def threads(self) -> bool:
        """True when the sender can edit messages and reply in threads."""
        ...

    async def send(self, channel: str, message: Message) -> Posted: ...

    async def update(self, channel: str, ts: str, message: Message) -> None: ...

    async def reply(self, channel: str, thread_ts: str, message: Message) -> None: ...


class BotSender:
    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client

    @property
    def threads(self) -> bool:
        return True

    async def send(self, channel: str, message: Message) -> Posted:
        answer = await self._call(
            "chat.postMessage", channel=channel, unfurl_links=False, **message
        )
        return Posted(channel=str(answer.get("channel", channel)), ts=str(answer.get("ts", "")))

    async def update(self, channel: str, ts: str, message: Message) -> None:
        await self._call("chat.update", channel=channel, ts=ts, **message)

    async def reply(self, channel: str, thread_ts: str, message: Message) -> None:
        await self._call(
            "chat.postMessage", channel=channel, thread_ts=thread_ts, unfurl_links=False, **message
        )

    async def _call(self, method: str, **body: Any) -> dict[str, Any]:
        try:
            if method == "chat.update":
                response = await self._client.chat_update(**body)
            else:
                response = await self._client.chat_postMessage(**body)
        except SlackApiError as exc:
            raise _api_error(exc) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise SlackError(type(exc).__name__, retry=True) from None
        except SlackClientError as exc:
            raise SlackError(type(exc).__name__, retry=False) from None
        data = response.data
        return data if isinstance(data, dict) else {}


class WebhookSender:
    def __init__(self, client: AsyncWebhookClient) -> None:
        self._client = client

    @property
    def threads(self) -> bool:
        return False

    async def send(self, channel: str, message: Message) -> Posted:
        # The webhook decides the channel; `channel` only served grouping and routing.
        try:
            response = await self._client.send_dict(message)
        except (aiohttp.ClientError, OSError) as exc:
            raise SlackError(type(exc).__name__, retry=True) from None
        except SlackClientError as exc:
            raise SlackError(type(exc).__name__, retry=False) from None
        status = response.status_code
        if status == 200:
            return Posted()
        code = response.body.strip() if _CODE.fullmatch(response.body.strip()) else ""
        code = code or f"http_{status}"
        if status == 429 or status >= 500:
            retry_after = _retry_after(response.headers)
            raise SlackError(code, retry=True, retry_after=retry_after)
        raise SlackError(code, retry=False)

    async def update(self, channel: str, ts: str, message: Message) -> None:
        await self.send(channel, message)

    async def reply(self, channel: str, thread_ts: str, message: Message) -> None:
        await self.send(channel, message)


def _api_error(exc: SlackApiError) -> SlackError:
    response = exc.response
    status = int(getattr(response, "status_code", 0) or 0)
    data = getattr(response, "data", None)
    raw = data.get("error", "") if isinstance(data, dict) else ""
    code = raw if isinstance(raw, str) and _CODE.fullmatch(raw) else f"http_{status}"
    headers = getattr(response, "headers", None) or {}
    retry = status == 429 or status >= 500 or code in RETRYABLE_CODES
    return SlackError(
        code,
        retry=retry,
        retry_after=_retry_after(headers) if retry else None,
        gone=code in GONE_CODES,
    )


def _retry_after(headers: Any) -> float | None:
    try:
        for key in headers:
            if str(key).lower() == "retry-after":
                value = headers[key]
                value = value[0] if isinstance(value, list) else value
                return max(0.0, float(value))
    except (TypeError, ValueError):
        return None
    return None


class BoundedRateLimitRetryHandler(AsyncRateLimitErrorRetryHandler):
    """slack-sdk's 429 retry, but only for a short Retry-After: the stock handler would
    sleep for as long as Slack asks (minutes), holding the delivery loop's call open."""

    def __init__(self, max_retry_count: int = 1, max_wait: float = 2.0) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = _retry_after(response.headers)
        return wait is not None and wait <= self.max_wait

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        state.next_attempt_requested = True
        wait = _retry_after(response.headers) if response is not None else None
        await asyncio.sleep(min(wait or 0.0, self.max_wait))
        state.increment_current_attempt()


def retry_handlers(max_wait: float = 2.0, reconnect_after: float = 0.2) -> list[AsyncRetryHandler]:
    return [
        BoundedRateLimitRetryHandler(max_retry_count=1, max_wait=max_wait),
        AsyncConnectionErrorRetryHandler(
            max_retry_count=1,
            interval_calculator=FixedValueRetryIntervalCalculator(reconnect_after),
        ),
    ]


def bot_sender(
    token: Secret,
    *,
    session: aiohttp.ClientSession,
    base_url: str = "https://slack.com/api/",
    handlers: list[AsyncRetryHandler] | None = None,
) -> BotSender:
    """A bot on the daemon's shared session (its timeouts, pools and tracing hooks)."""
    client = AsyncWebClient(
        token=token.reveal(),
        base_url=base_url,
        session=session,
        logger=_SDK_LOG,
        retry_handlers=retry_handlers() if handlers is None else handlers,
    )
    return BotSender(client)


def webhook_sender(
    url: Secret,
    *,
    session: aiohttp.ClientSession,
    handlers: list[AsyncRetryHandler] | None = None,
) -> WebhookSender:
    client = AsyncWebhookClient(
        url=url.reveal(),
        session=session,
        logger=_SDK_LOG,
        retry_handlers=retry_handlers() if handlers is None else handlers,
    )
    return WebhookSender(client)
