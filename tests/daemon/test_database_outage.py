"""A replica of a PostgreSQL fleet whose database goes away keeps probing what it holds
with the tokens it has, past the end of its leases, makes no token request once they have
lapsed, and carries on as before when the database is back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.emulator import Emulator, FleetOptions
from monitor.keeper import Keeper
from monitor.model import State
from tests.daemon.configs import on_postgres, write_config
from tests.store.relay import Relay

pytestmark = pytest.mark.postgres

INSTANCES = 5
SPEED = 10.0
PROBE = 20.0  # emulated seconds: 2 s of wall time
LEASE = 2.0  # wall seconds


async def _until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.1)


def _all_healthy_and_owned(keeper: Keeper) -> bool:
    conns = keeper.connections()
    return len(conns) == INSTANCES and all(
        c.owned and c.health.state is State.HEALTHY for c in conns
    )


async def test_a_replica_keeps_probing_through_a_database_outage(
    tmp_path: Path, database: str
) -> None:
    relay = Relay()
    await relay.start()
    try:
        async with Emulator(FleetOptions(instances=INSTANCES, speed=SPEED, seed=23)) as emu:
            path, _ = write_config(emu.fleet_info(), tmp_path, probe_interval=PROBE)
            dsn = f"postgresql://postgres@127.0.0.1:{relay.port}/{database.rsplit('/', 1)[1]}"
            path.write_text(
                on_postgres(path.read_text(), dsn, lease_seconds=LEASE, request_timeout=1.0)
            )
            daemon = Daemon(load_config(path).config)
            async with asyncio.TaskGroup() as group:
                group.create_task(daemon.run())
                try:
                    await asyncio.wait_for(daemon.started.wait(), 30)
                    assert daemon.running is not None
                    keeper = daemon.running.keeper
                    await _until(lambda: _all_healthy_and_owned(keeper), 60, "healthy, owned")

                    await relay.cut()
                    cut_at = time.monotonic()
                    before = emu.totals()
                    # Three lease periods without the database: every lease has lapsed.
                    await asyncio.sleep(3 * LEASE)
                    during = emu.totals()
                    probes = sum(during.table_requests.values()) - sum(
                        before.table_requests.values()
                    )
                    # A probe every ~2 s per connection: ~3 each in 6 s, well above one.
                    assert probes >= 2 * INSTANCES, probes
                    assert all(c.owned for c in keeper.connections())
                    assert all(
                        c.last_probe is not None and c.last_probe.ok for c in keeper.connections()
                    )
                    # Leases lapsed: no token request may start (another replica could
                    # hold the connections by now).
                    assert time.monotonic() - cut_at > LEASE
                    assert sum(during.token_requests.values()) == sum(
                        before.token_requests.values()
                    )

                    await relay.restore()
                    restored = emu.totals()
                    await asyncio.sleep(2 * LEASE)
                    await _until(lambda: _all_healthy_and_owned(keeper), 30, "healthy again")
                    after = emu.totals()
                    assert sum(after.table_requests.values()) > sum(
                        restored.table_requests.values()
                    )
                    assert after.expired_token_uses == 0
                    assert after.refresh_overlaps == 0
                finally:
                    daemon.stop.set()
    finally:
        relay.resume()
        await relay.cut()
