"""Clocks: the daemon never reads the time by itself, it asks the clock it was given.

`SystemClock` is wall time. `ScaledClock` runs `speed` times faster than wall time from
an anchor, so days of token life pass in seconds against an emulator running at the same
speed. `ManualClock` only moves when a test moves it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the UNIX epoch, on this clock."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep for `seconds` of this clock's time."""
        ...

    def real_seconds(self, seconds: float) -> float:
        """How many wall-clock seconds `seconds` of this clock's time take."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def real_seconds(self, seconds: float) -> float:
        return seconds


class ScaledClock:
    """now = anchor + (wall - anchor) * speed + offset: two processes given the same anchor
    and speed read the same time without talking to each other."""

    def __init__(self, speed: float, anchor: float | None = None, offset: float = 0.0) -> None:
        if speed <= 0:
            raise ValueError("clock speed must be positive")
        self.speed = speed
        self.anchor = time.time() if anchor is None else anchor
        self.offset = offset

    def now(self) -> float:
        return self.anchor + (time.time() - self.anchor) * self.speed + self.offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    def real_seconds(self, seconds: float) -> float:
        return seconds / self.speed


class ManualClock:
    """A clock for pure-logic tests: time stands still until `advance` moves it."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        self._now += max(0.0, seconds)
        await asyncio.sleep(0)

    def real_seconds(self, seconds: float) -> float:
        return 0.0
