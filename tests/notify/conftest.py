"""Fixtures: a fake Slack on 127.0.0.1 and an HTTP session like the daemon's shared one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from monitor.notify.slack import (
    BotSender,
    WebhookSender,
    bot_sender,
    retry_handlers,
    webhook_sender,
)
from monitor.secret import Secret
from tests.fakes.slack_api import TOKEN, FakeSlack


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = await FakeSlack().start()
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=10.0, connect=2.0)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        yield http


# In-call retries wait at most this long for a 429 (real seconds): tests stay fast.
SHORT_WAIT = 0.2


@pytest.fixture
def bot(slack: FakeSlack, session: aiohttp.ClientSession) -> BotSender:
    return bot_sender(
        Secret(TOKEN),
        session=session,
        base_url=slack.base_url,
        handlers=retry_handlers(max_wait=SHORT_WAIT, reconnect_after=0.01),
    )


@pytest.fixture
def webhook(slack: FakeSlack, session: aiohttp.ClientSession) -> WebhookSender:
    return webhook_sender(
        Secret(slack.webhook_url),
        session=session,
        handlers=retry_handlers(max_wait=SHORT_WAIT, reconnect_after=0.01),
    )
