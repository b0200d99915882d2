"""Event-loop lag: how late the loop runs a callback that asked to wake up on time.

A loop that is late by tens of milliseconds delays every probe and refresh in the process,
and no per-request metric shows it. The watcher sleeps `interval`, measures how much later
than asked it woke up, and publishes that as `snowmon_event_loop_lag_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol


class LagSink(Protocol):
    def event_loop_lag(self, seconds: float) -> None: ...


async def watch_event_loop(metrics: LagSink, stop: asyncio.Event, interval: float = 0.5) -> None:
    """Measure event-loop lag every `interval` seconds until `stop` is set.

    Run it in the daemon's TaskGroup; it returns promptly once `stop` is set.
    """
    if interval <= 0:
        raise ValueError("interval must be positive")
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        asked = loop.time() + interval
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await stop.wait()
        if stop.is_set():
            return
        metrics.event_loop_lag(max(0.0, loop.time() - asked))
