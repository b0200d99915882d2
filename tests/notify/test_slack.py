"""The senders against a fake Slack over real HTTP: payloads, threading, and every way a
call can fail, classified as "try again later" or "never"."""

from __future__ import annotations

import logging
import socket
from typing import Any

import aiohttp
import pytest

from monitor.notify.slack import (
    BotSender,
    SlackError,
    WebhookSender,
    bot_sender,
    retry_handlers,
    webhook_sender,
)
from monitor.secret import Secret
from tests.fakes.slack_api import TOKEN, WEBHOOK_PATH, FakeSlack, channel_id

MESSAGE = {"text": "[CRITICAL] Credentials expired: acme-prod", "blocks": []}
CHANNEL = "#acme-integrations"


async def test_bot_posts_edits_and_replies_in_the_thread(bot: BotSender, slack: FakeSlack) -> None:
    posted = await bot.send(CHANNEL, MESSAGE)
    assert posted.channel == channel_id(CHANNEL)
    assert posted.ts == slack.messages[0].ts
    await bot.update(posted.channel, posted.ts, {"text": "resolved", "blocks": []})
    await bot.reply(posted.channel, posted.ts, {"text": "Resolved after 2 h.", "blocks": []})

    assert slack.methods() == ["chat.postMessage", "chat.update", "chat.postMessage"]
    first, update, reply = (c.body for c in slack.calls)
    assert first == {"channel": CHANNEL, "unfurl_links": False, **MESSAGE}
    assert update == {"channel": posted.channel, "ts": posted.ts, "text": "resolved", "blocks": []}
    assert reply["thread_ts"] == posted.ts
    (message,) = slack.messages
    assert message.current["text"] == "resolved"
    assert [r["text"] for r in message.replies] == ["Resolved after 2 h."]


async def test_bot_update_needs_the_channel_id(bot: BotSender) -> None:
    posted = await bot.send(CHANNEL, MESSAGE)
    with pytest.raises(SlackError) as caught:
        await bot.update(CHANNEL, posted.ts, MESSAGE)
    assert (caught.value.code, caught.value.retry) == ("channel_not_found", False)


async def test_bot_update_of_a_deleted_message_is_gone(bot: BotSender) -> None:
    with pytest.raises(SlackError) as caught:
        await bot.update(channel_id(CHANNEL), "1800000000.999999", MESSAGE)
    assert (caught.value.code, caught.value.retry, caught.value.gone) == (
        "message_not_found",
        False,
        True,
    )


async def test_short_rate_limit_is_retried_inside_the_call(
    bot: BotSender, slack: FakeSlack
) -> None:
    slack.fail_next(status=429, error="ratelimited", retry_after=0)
    posted = await bot.send(CHANNEL, MESSAGE)
    assert posted.ts
    assert [c.status for c in slack.calls] == [429, 200]


async def test_long_rate_limit_goes_back_to_the_caller(bot: BotSender, slack: FakeSlack) -> None:
    slack.fail_next(status=429, error="ratelimited", retry_after=30)
    with pytest.raises(SlackError) as caught:
        await bot.send(CHANNEL, MESSAGE)
    error = caught.value
    assert (error.code, error.retry, error.retry_after) == ("ratelimited", True, 30.0)
    assert len(slack.calls) == 1  # no sleeping for 30 s inside the call


async def test_repeated_short_rate_limits_give_up_after_one_retry(
    bot: BotSender, slack: FakeSlack
) -> None:
    slack.fail_next(3, status=429, error="ratelimited", retry_after=0)
    with pytest.raises(SlackError) as caught:
        await bot.send(CHANNEL, MESSAGE)
    assert caught.value.retry
    assert len(slack.calls) == 2


@pytest.mark.parametrize(
    ("fault", "code", "retry"),
    [
        ({"status": 503, "body": "<html>upstream connect error</html>"}, "http_503", True),
        ({"status": 500, "error": "internal_error"}, "internal_error", True),
        ({"status": 200, "error": "service_unavailable"}, "service_unavailable", True),
        ({"status": 200, "error": "not_in_channel"}, "not_in_channel", False),
        ({"status": 200, "error": "invalid_blocks"}, "invalid_blocks", False),
    ],
)
async def test_bot_failures_are_classified(
    bot: BotSender, slack: FakeSlack, fault: dict[str, Any], code: str, retry: bool
) -> None:
    slack.fail_next(**fault)
    with pytest.raises(SlackError) as caught:
        await bot.send(CHANNEL, MESSAGE)
    assert (caught.value.code, caught.value.retry) == (code, retry)


async def test_bot_with_a_wrong_token_is_refused_for_good(
    slack: FakeSlack, session: aiohttp.ClientSession
) -> None:
    wrong = bot_sender(Secret("xoxb-wrong-1234"), session=session, base_url=slack.base_url)
    with pytest.raises(SlackError) as caught:
        await wrong.send(CHANNEL, MESSAGE)
    assert (caught.value.code, caught.value.retry) == ("invalid_auth", False)
    assert "xoxb" not in str(caught.value) + repr(caught.value)


async def test_slack_unreachable_is_worth_a_retry(session: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = bot_sender(
        Secret(TOKEN),
        session=session,
        base_url=f"http://127.0.0.1:{port}/api/",
        handlers=retry_handlers(reconnect_after=0.01),
    )
    with pytest.raises(SlackError) as caught:
        await unreachable.send(CHANNEL, MESSAGE)
    assert caught.value.retry
    assert caught.value.code == "ClientConnectorError"


async def test_webhook_posts_and_cannot_thread(webhook: WebhookSender, slack: FakeSlack) -> None:
    assert webhook.threads is False
    posted = await webhook.send(CHANNEL, MESSAGE)
    await webhook.update(CHANNEL, "ignored", {"text": "resolved", "blocks": []})
    await webhook.reply(CHANNEL, "ignored", {"text": "reply", "blocks": []})
    assert (posted.channel, posted.ts) == ("", "")
    assert [p["text"] for p in slack.webhook_posts] == [MESSAGE["text"], "resolved", "reply"]
    assert slack.methods() == ["webhook"] * 3


@pytest.mark.parametrize(
    ("fault", "code", "retry", "retry_after"),
    [
        ({"status": 429, "error": "rate_limited", "retry_after": 30}, "rate_limited", True, 30.0),
        ({"status": 500, "error": "rollup_error"}, "rollup_error", True, None),
        ({"status": 404, "error": "channel_not_found"}, "channel_not_found", False, None),
        ({"status": 400, "body": "<html>nope</html>"}, "http_400", False, None),
    ],
)
async def test_webhook_failures_are_classified(
    webhook: WebhookSender,
    slack: FakeSlack,
    fault: dict[str, Any],
    code: str,
    retry: bool,
    retry_after: float | None,
) -> None:
    slack.fail_next(**fault)
    with pytest.raises(SlackError) as caught:
        await webhook.send(CHANNEL, MESSAGE)
    assert (caught.value.code, caught.value.retry, caught.value.retry_after) == (
        code,
        retry,
        retry_after,
    )


async def test_no_token_or_webhook_path_in_logs_or_errors(
    slack: FakeSlack, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bot = bot_sender(Secret(TOKEN), session=session, base_url=slack.base_url)
    webhook = webhook_sender(Secret(slack.webhook_url), session=session)
    wrong = webhook_sender(Secret(slack.webhook_url + "x"), session=session)
    await bot.send(CHANNEL, MESSAGE)
    await webhook.send(CHANNEL, MESSAGE)
    slack.fail_next(status=429, error="ratelimited", retry_after=30)
    errors: list[SlackError] = []
    for sender in (bot, webhook, wrong):
        try:
            await sender.send(CHANNEL, MESSAGE)
        except SlackError as exc:
            errors.append(exc)
    assert [e.code for e in errors] == ["ratelimited", "invalid_token"]
    seen = caplog.text + " ".join(f"{e} {e!r} {e.code}" for e in errors)
    secret_path = WEBHOOK_PATH.rsplit("/", 1)[-1]
    assert TOKEN not in seen
    assert secret_path not in seen
