"""Event-loop lag: a blocked loop shows up in the gauge; stop ends the watcher."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry

from monitor.telemetry import Metrics
from monitor.telemetry.loopwatch import watch_event_loop


class Lags:
    def __init__(self) -> None:
        self.seen: list[float] = []

    def event_loop_lag(self, seconds: float) -> None:
        self.seen.append(seconds)


def _block_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # on purpose: this is what the watcher must notice


async def test_blocked_loop_is_measured() -> None:
    lags = Lags()
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(watch_event_loop(lags, stop, interval=0.02))
        await asyncio.sleep(0.05)
        _block_the_loop(0.15)
        await asyncio.sleep(0.05)
        stop.set()
    assert max(lags.seen) >= 0.1
    assert min(lags.seen) < 0.02


async def test_stop_ends_promptly_and_gauge_is_set() -> None:
    metrics = Metrics(CollectorRegistry())
    stop = asyncio.Event()
    started = time.monotonic()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(watch_event_loop(metrics, stop, interval=10))
        await asyncio.sleep(0.01)
        stop.set()
    assert time.monotonic() - started < 1
    metrics.event_loop_lag(0.25)
    assert metrics.registry.get_sample_value("snowmon_event_loop_lag_seconds") == 0.25


async def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        await watch_event_loop(Lags(), asyncio.Event(), interval=0)
