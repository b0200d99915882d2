"""A restart (close, then a new store over the same state) loses nothing that was saved."""

from __future__ import annotations

import asyncio

import pytest

from monitor.errors import StaleWriteError
from monitor.model import StoredTokens
from tests.store.conftest import HISTORY_KEEP, Backend
from tests.store.samples import full_alert, full_health, full_tokens, history_entry


async def test_restart_reloads_everything(durable_backend: Backend) -> None:
    first = durable_backend.make()
    await first.open()
    await first.save_tokens("c1", full_tokens("1"), expected_version=0)
    await first.save_tokens("c1", full_tokens("1b"), expected_version=1)
    await first.save_tokens("c2", full_tokens("2"), expected_version=0)
    await first.save_health([("c1", full_health(1)), ("c2", full_health(2))])
    await first.append_history([history_entry("c1", n) for n in range(HISTORY_KEEP + 3)])
    await first.save_alerts([full_alert("c1")])
    await first.outbox_put("n1", '{"text":"pending"}')
    await first.close()

    second = durable_backend.make()
    await second.open()
    try:
        assert await second.load_all_tokens() == {
            "c1": StoredTokens(full_tokens("1b"), 2),
            "c2": StoredTokens(full_tokens("2"), 1),
        }
        assert await second.load_all_health() == {"c1": full_health(1), "c2": full_health(2)}
        assert await second.recent_history("c1", 100) == [
            history_entry("c1", n) for n in reversed(range(3, HISTORY_KEEP + 3))
        ]
        assert await second.load_alerts() == [full_alert("c1")]
        assert await second.outbox_all() == [("n1", '{"text":"pending"}')]
        # The version is the fence across restarts too.
        with pytest.raises(StaleWriteError):
            await second.save_tokens("c1", full_tokens("late"), expected_version=1)
        assert await second.save_tokens("c1", full_tokens("3"), expected_version=2) == 3
    finally:
        await second.close()


async def test_two_stores_on_the_same_state_fence_each_other(durable_backend: Backend) -> None:
    # Two daemons (or a daemon and a CLI) over one store: still exactly one winner.
    one, two = durable_backend.make(), durable_backend.make()
    await one.open()
    await two.open()
    try:
        results = await asyncio.gather(
            *(
                store.save_tokens("c1", full_tokens(f"{n}-{i}"), expected_version=0)
                for i in range(25)
                for n, store in (("one", one), ("two", two))
            ),
            return_exceptions=True,
        )
        assert results.count(1) == 1
        assert sum(isinstance(r, StaleWriteError) for r in results) == 49
        assert await one.load_tokens("c1") == await two.load_tokens("c1")
    finally:
        await one.close()
        await two.close()


async def test_a_save_whose_caller_was_cancelled_still_lands(durable_backend: Backend) -> None:
    # The keeper shields token writes; a cancelled caller must not leave a half state.
    store = durable_backend.make()
    await store.open()
    task = asyncio.create_task(store.save_tokens("c1", full_tokens(), expected_version=0))
    await asyncio.sleep(0)  # let it queue the write
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await store.close()

    reopened = durable_backend.make()
    await reopened.open()
    try:
        assert await reopened.load_tokens("c1") == StoredTokens(full_tokens(), 1)
    finally:
        await reopened.close()
