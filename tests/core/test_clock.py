"""Clocks: ScaledClock's formula and anchor, ManualClock, SystemClock."""

from __future__ import annotations

import asyncio
import time

import pytest

from monitor.clock import ManualClock, ScaledClock, SystemClock


@pytest.mark.parametrize("speed", [1.0, 60.0, 1000.0])
@pytest.mark.parametrize("age", [0.0, 10.0, 86_400.0])
def test_scaled_clock_formula(speed: float, age: float) -> None:
    anchor = time.time() - age
    clock = ScaledClock(speed=speed, anchor=anchor)
    before = time.time()
    now = clock.now()
    after = time.time()
    low, high = anchor + (before - anchor) * speed, anchor + (after - anchor) * speed
    assert low <= now <= high


@pytest.mark.parametrize("offset", [0.0, 3600.0, -120.0])
def test_scaled_clock_offset(offset: float) -> None:
    anchor = time.time()
    plain, shifted = ScaledClock(60.0, anchor), ScaledClock(60.0, anchor, offset)
    assert shifted.now() - plain.now() == pytest.approx(offset, abs=0.5)


@pytest.mark.parametrize("speed", [1.0, 60.0, 1000.0])
def test_two_scaled_clocks_with_one_anchor_agree(speed: float) -> None:
    anchor = time.time() - 5_000.0
    first, second = ScaledClock(speed, anchor), ScaledClock(speed, anchor)
    # 5 ms of wall time between the two reads is 5 clock seconds at 1000x
    assert abs(first.now() - second.now()) <= speed * 0.005
    assert first.anchor == second.anchor == anchor


def test_scaled_clock_default_anchor_is_now() -> None:
    clock = ScaledClock(speed=1000.0)
    assert abs(clock.anchor - time.time()) < 1.0
    assert abs(clock.now() - time.time()) < 50.0  # 50 ms of wall time at 1000x


def test_scaled_clock_advances_speed_times_faster() -> None:
    clock = ScaledClock(speed=1000.0)
    start_clock, start_wall = clock.now(), time.time()
    time.sleep(0.02)
    clock_elapsed, wall_elapsed = clock.now() - start_clock, time.time() - start_wall
    assert clock_elapsed == pytest.approx(wall_elapsed * 1000.0, rel=0.05)


@pytest.mark.parametrize(
    ("speed", "seconds", "real"),
    [(1.0, 5.0, 5.0), (60.0, 60.0, 1.0), (1000.0, 30.0, 0.03)],
    ids=str,
)
def test_scaled_real_seconds(speed: float, seconds: float, real: float) -> None:
    assert ScaledClock(speed).real_seconds(seconds) == pytest.approx(real)


@pytest.mark.parametrize("speed", [0.0, -1.0])
def test_scaled_clock_needs_a_positive_speed(speed: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        ScaledClock(speed)


async def test_scaled_clock_sleep_takes_scaled_wall_time() -> None:
    clock = ScaledClock(speed=1000.0)
    started = time.monotonic()
    before = clock.now()
    async with asyncio.timeout(2):
        await clock.sleep(50.0)  # 50 ms of wall time
    assert time.monotonic() - started >= 0.045
    assert clock.now() - before >= 45.0


async def test_scaled_clock_negative_sleep_returns_at_once() -> None:
    started = time.monotonic()
    await ScaledClock(speed=1.0).sleep(-10.0)
    assert time.monotonic() - started < 0.05


def test_manual_clock_stands_still_until_advanced() -> None:
    clock = ManualClock()
    assert clock.now() == 1_800_000_000.0
    time.sleep(0.001)
    assert clock.now() == 1_800_000_000.0
    clock.advance(86_400)
    assert clock.now() == 1_800_086_400.0
    assert ManualClock(start=5.0).now() == 5.0
    assert clock.real_seconds(1e9) == 0.0


@pytest.mark.parametrize(("seconds", "moved"), [(30.0, 30.0), (0.0, 0.0), (-5.0, 0.0)], ids=str)
async def test_manual_clock_sleep_moves_time(seconds: float, moved: float) -> None:
    clock = ManualClock(start=100.0)
    started = time.monotonic()
    await clock.sleep(seconds)
    assert clock.now() == 100.0 + moved
    assert time.monotonic() - started < 0.05


async def test_manual_clock_sleep_yields_to_the_loop() -> None:
    clock = ManualClock()
    ran = asyncio.Event()

    async def other() -> None:
        ran.set()

    task = asyncio.create_task(other())
    await clock.sleep(1.0)
    assert ran.is_set()
    await task


def test_system_clock() -> None:
    clock = SystemClock()
    assert abs(clock.now() - time.time()) < 0.01
    assert clock.real_seconds(12.5) == 12.5
