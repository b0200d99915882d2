"""The emulator's clock: ScaledClock's formula, admin advances, and a speed factor."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from monitor.clock import ScaledClock
from monitor.emulator import Emulator, EmulatorClock, FleetOptions
from tests.emulator.calls import PROBE, get_table, post_token, refresh_form, tokens


def test_reads_the_same_time_as_the_daemons_scaled_clock() -> None:
    anchor = time.time() - 1000.0
    ours, theirs = EmulatorClock(speed=60.0, anchor=anchor), ScaledClock(speed=60.0, anchor=anchor)
    assert abs(ours.now() - theirs.now()) < 0.5  # 60x: half a second is < 10 ms of wall time
    assert abs(ours.now() - (anchor + (time.time() - anchor) * 60.0)) < 0.5


def test_wall_time_by_default() -> None:
    clock = EmulatorClock()
    assert abs(clock.now() - time.time()) < 0.01


def test_advance_and_set_move_only_the_offset() -> None:
    clock = EmulatorClock(anchor=1_000_000.0)
    before = clock.now()
    assert clock.advance(86_400) - before == pytest.approx(86_400, abs=0.05)
    assert clock.set(2_000_000_000.0) == pytest.approx(2_000_000_000.0, abs=0.05)
    assert clock.anchor == 1_000_000.0
    with pytest.raises(ValueError, match="positive"):
        EmulatorClock(speed=0)


async def test_advancing_ages_a_refresh_token_by_100_days_in_an_instant(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    instance = emu.instances[0]
    refresh = (await tokens(session, instance))["refresh_token"]
    started = time.monotonic()
    emu.clock.advance(8_640_000)
    assert (await post_token(session, instance, refresh_form(instance, refresh)))[0] == 401
    assert time.monotonic() - started < 1.0


async def test_speed_makes_access_tokens_expire_in_wall_milliseconds(
    session: aiohttp.ClientSession,
) -> None:
    options = FleetOptions(instances=1, speed=600.0, access_lifespan=60)
    async with Emulator(options) as emulator:
        instance = emulator.instances[0]
        access = (await tokens(session, instance))["access_token"]
        assert (await get_table(session, instance, PROBE, access))[0] == 200
        await asyncio.sleep(0.15)  # 90 emulated seconds
        assert (await get_table(session, instance, PROBE, access))[0] == 401
        assert emulator.stats(instance.name).expired_token_uses == 1
