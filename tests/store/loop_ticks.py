"""How often the event loop got to run while a store call was working: a load that ran on
the loop itself (instead of the store's worker or driver) would leave no room for ticks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def with_loop_ticks(work: Awaitable[T]) -> tuple[T, int]:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        await asyncio.sleep(0)
        result = await work
    finally:
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
    return result, ticks
