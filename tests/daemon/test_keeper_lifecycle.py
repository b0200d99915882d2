"""The keeper against the emulator: tokens obtained, refreshed on time, never used
expired, never refreshed twice at once; faults give their own states."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from monitor.clock import ScaledClock
from monitor.config import load_config
from monitor.emulator import Emulator, FleetOptions
from monitor.model import State
from monitor.store.crypto import Keyring, generate_key
from monitor.store.memory import MemoryStore
from monitor.store.sqlite import SqliteStore
from monitor.timing import PROBE_JITTER
from tests.daemon.harness import connections, fleet, keeper_on


async def test_every_connection_gets_a_token_and_turns_healthy() -> None:
    async with fleet(FleetOptions(instances=5, speed=10.0, seed=2)) as h:
        await h.until(
            lambda: all(s is State.HEALTHY for s in h.states().values()),
            emulated=120,
            what="all healthy",
        )
        totals = h.emu.totals()
        assert totals.grants["password"] == 5
        tokens = await h.store.load_all_tokens()
        assert sorted(tokens) == sorted(h.states())


async def test_short_tokens_refresh_on_time_without_overlap_or_expired_use() -> None:
    # 30-second access tokens, ten emulated minutes: ~20 s of token life per refresh.
    options = FleetOptions(instances=20, speed=60.0, access_lifespan=30, seed=3)
    async with fleet(options) as h:
        await h.run_for(600)
        totals = h.emu.totals()
        states = h.states()
    assert totals.expired_token_uses == 0
    assert totals.refresh_overlaps == 0
    per_connection = totals.refreshes / 20
    # One refresh per 18-21 s of token life over ~600 s, minus the first grant.
    assert 22 <= per_connection <= 34, per_connection
    assert totals.grants["password"] == 20
    assert all(s is State.HEALTHY for s in states.values()), states


async def test_password_grant_renews_its_refresh_token_before_it_dies() -> None:
    # Refresh tokens of 120 s (the emulator never extends them, like ServiceNow): a
    # password connection grants afresh at ~80 % of that life instead of presenting a
    # dead refresh token. Ten emulated minutes: ~6 renewals per connection.
    options = FleetOptions(
        instances=3, speed=60.0, access_lifespan=30, refresh_lifespan=120, seed=4
    )
    async with Emulator(options) as emu:
        clock = ScaledClock(60.0, anchor=emu.clock.anchor)
        conns = connections(emu, refresh_token_lifespan=120.0)
        async with keeper_on(emu, clock, conns, None) as h:
            await h.run_for(600)
            totals = emu.totals()
            states = h.states()
    assert totals.expired_token_uses == 0
    assert totals.rejected_refresh_tokens == 0  # no dead refresh token ever presented
    assert totals.refresh_overlaps == 0
    assert 3 * 5 <= totals.grants["password"] <= 3 * 9, totals.grants  # 7 each expected
    assert totals.refreshes >= 3 * 10  # between renewals, the access token is refreshed
    assert all(s is State.HEALTHY for s in states.values()), states


async def test_restart_inside_one_emulator_makes_no_new_grant() -> None:
    store = MemoryStore()
    async with Emulator(FleetOptions(instances=4, speed=10.0, seed=5)) as emu:
        clock = ScaledClock(10.0, anchor=emu.clock.anchor)
        conns = connections(emu)
        async with keeper_on(emu, clock, conns, store) as h:
            await h.until(
                lambda: all(s is State.HEALTHY for s in h.states().values()), emulated=120
            )
        assert emu.totals().grants["password"] == 4
        async with keeper_on(emu, clock, conns, store) as h:
            await h.until(
                lambda: all(c.last_probe is not None for c in h.keeper.connections()),
                emulated=120,
            )
            assert all(s is State.HEALTHY for s in h.states().values())
        assert emu.totals().grants["password"] == 4


async def test_restart_keeps_the_probe_phase_of_healthy_connections(tmp_path: Path) -> None:
    """A restart over a full SQLite store: healthy connections are probed one interval
    after their stored last probe (not all within the initial spread); one stored as
    failing is probed at once, because whoever restarts wants to know about it."""
    # 120 s: the healthy connections' next probes lie ~100 emulated seconds (10 s of wall
    # time) past the restart's spread, a margin a busy machine does not eat.
    interval, spread = 120.0, 5.0  # the harness's initial_spread
    key = generate_key()
    async with Emulator(FleetOptions(instances=4, speed=10.0, seed=8)) as emu:
        clock = ScaledClock(10.0, anchor=emu.clock.anchor)
        conns = connections(emu, interval=interval)
        store = SqliteStore(tmp_path / "snowmon.db", Keyring([key]))
        await store.open()
        try:
            async with keeper_on(emu, clock, conns, store) as h:
                await h.until(
                    lambda: all(s is State.HEALTHY for s in h.states().values()), emulated=60
                )
            healths = await store.load_all_health()
            failing_id = conns[0].id
            await store.save_health(
                [(failing_id, replace(healths[failing_id], state=State.FAILING))]
            )
        finally:
            await store.close()
        store = SqliteStore(tmp_path / "snowmon.db", Keyring([key]))
        await store.open()
        try:
            before = clock.now()
            async with keeper_on(emu, clock, conns, store) as h:
                after = clock.now()
                due = {}
                for conn in h.keeper.connections():
                    assert conn.probe_job is not None
                    assert conn.probe_job.due is not None
                    due[conn.id] = conn.probe_job.due
                assert before <= due[failing_id] <= after + spread
                for cid, health in healths.items():
                    if cid == failing_id:
                        continue
                    assert health.last_probe_at is not None
                    low = health.last_probe_at + interval * (1 - PROBE_JITTER)
                    high = health.last_probe_at + interval * (1 + PROBE_JITTER)
                    assert max(low, before) <= due[cid] <= min(high, after + interval), cid
                    assert due[cid] > after + spread, cid  # not in the restart burst
                failing = h.keeper.connection(failing_id)
                assert failing is not None
                await h.until(lambda: failing.last_probe is not None, emulated=spread + 5)
                healthy = [c for c in h.keeper.connections() if c.id != failing_id]
                assert all(c.last_probe is None for c in healthy)
                await h.until(
                    lambda: all(c.last_probe is not None for c in healthy),
                    emulated=interval * (1 + PROBE_JITTER) + 5,
                )
        finally:
            await store.close()
        assert emu.totals().grants["password"] == 4


async def test_a_probe_in_flight_when_released_leaves_no_health_or_series_behind() -> None:
    """A replica gives a connection away while its probe waits on a slow instance: the
    answer, when it comes, is neither applied to the health (the new owner writes that)
    nor counted in this replica's per-connection series."""
    async with fleet(FleetOptions(instances=2, speed=10.0, seed=9)) as h:
        await h.until(lambda: all(s is State.HEALTHY for s in h.states().values()), emulated=60)
        name, other = (i.name for i in h.emu.instances)

        def success(cid: str) -> float | None:
            return h.telemetry.registry.get_sample_value(
                "snowmon_probe_success", {"connection": cid}
            )

        conn = h.keeper.connection(name)
        assert conn is not None
        job = conn.probe_job
        assert job is not None
        probes = conn.health.consecutive_successes
        h.emu.set_faults(name, latency=1.0, latency_on=["table"])
        h.scheduler.schedule(job, h.clock.now())
        await h.until(lambda: job.running, emulated=10, what="probe in flight")
        health = conn.health
        h.keeper.release([name])
        assert success(name) is None
        await h.until(lambda: not job.running, emulated=60, what="probe done")
        assert conn.last_probe is not None
        assert conn.last_probe.ok  # it did answer
        assert conn.health is health
        assert conn.health.consecutive_successes == probes
        assert success(name) is None
        assert success(other) == 1.0


@pytest.mark.slow
async def test_200_connections_one_emulated_hour_of_30_second_tokens(tmp_path: Path) -> None:
    """The issue's bar: 200 instances, 30-second access tokens, one hour of emulated
    time (120 s of wall time at 30x): no expired token ever used, no refresh token used
    twice at once, about one refresh per 20 s of token life. The emulator runs in its
    own process, as a real fleet would, so its work does not delay the daemon's."""
    config = tmp_path / "fleet.toml"
    emulator = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "monitor.emulator",
        "--instances",
        "200",
        "--speed",
        "30",
        "--access-lifespan",
        "30",
        "--seed",
        "6",
        "--config-out",
        str(config),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert emulator.stdout is not None
        ready = json.loads(await asyncio.wait_for(emulator.stdout.readline(), 30))
        admin = ready["admin_url"]
        cfg = load_config(config).config
        clock = ScaledClock(cfg.clock.speed, anchor=cfg.clock.anchor)
        conns = [
            c.model_copy(update={"probe": c.probe.model_copy(update={"interval": 60.0})})
            for c in cfg.connections
        ]
        async with keeper_on(None, clock, conns, None, 256) as h:
            start = clock.now()
            await h.run_for(3600)
            elapsed = clock.now() - start
            states = h.states()
        async with aiohttp.ClientSession() as client, client.get(f"{admin}/admin/stats") as r:
            totals = (await r.json())["totals"]
    finally:
        emulator.terminate()
        await emulator.wait()
    assert totals["expired_token_uses"] == 0
    assert totals["refresh_overlaps"] == 0
    assert totals["grants"]["password"] == 200
    per_connection = totals["refreshes"] / 200
    expected = elapsed / 19.5  # refreshes at 60-70 % of 30 s
    assert 0.85 * expected <= per_connection <= 1.1 * expected, (per_connection, expected)
    assert all(s is State.HEALTHY for s in states.values()), states
