"""Fixtures: a small emulated fleet on loopback and a real aiohttp client session."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from monitor.emulator import Emulator, FleetOptions


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator(FleetOptions(instances=3, seed=7)) as emulator:
        yield emulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as client:
        yield client
