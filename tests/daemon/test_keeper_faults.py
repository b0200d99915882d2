"""Faults on the emulator give their own states, and only on evidence: a dead credential
turns exactly its connection credentials_expired; a flaky token endpoint turns none."""

from __future__ import annotations

import math

from monitor.clock import ScaledClock
from monitor.emulator import Emulator, FleetOptions
from monitor.model import Grant, State
from tests.daemon.harness import authorize, connections, fleet, keeper_on

PROBE = 60.0


def _healthy(states: dict[str, State]) -> bool:
    return all(s is State.HEALTHY for s in states.values())


async def test_rotated_secret_expires_exactly_that_connection_within_two_probes() -> None:
    async with fleet(FleetOptions(instances=4, speed=30.0, seed=11)) as h:
        await h.until(lambda: _healthy(h.states()), emulated=120, what="healthy")
        victim = h.emu.instances[1].name
        h.emu.revoke(victim)
        h.emu.rotate_secret(victim)
        # Revoked tokens, and no grant works with the old secret any more.
        await h.until(
            lambda: h.states()[victim] is State.CREDENTIALS_EXPIRED,
            emulated=2 * PROBE + 10,
            what="credentials_expired",
        )
        others = {k: v for k, v in h.states().items() if k != victim}
        assert _healthy(others), others


async def test_revoked_tokens_of_a_password_connection_heal_with_a_new_grant() -> None:
    async with fleet(FleetOptions(instances=2, speed=30.0, seed=12)) as h:
        await h.until(lambda: _healthy(h.states()), emulated=120)
        victim = h.emu.instances[0].name
        h.emu.revoke(victim)
        await h.until(
            lambda: h.emu.totals().grants["password"] >= 3, emulated=2 * PROBE, what="regrant"
        )
        await h.run_for(PROBE * 1.5)
        assert _healthy(h.states()), h.states()


async def test_revoked_authorization_code_connection_expires_then_recovers_by_connect() -> None:
    async with fleet(
        FleetOptions(instances=2, speed=30.0, seed=13),
        make_connections=lambda emu: connections(emu, grant=Grant.AUTHORIZATION_CODE),
    ) as h:
        ids = [i.name for i in h.emu.instances]
        # Nobody has authorized yet: a person must act.
        await h.until(
            lambda: all(s is State.CREDENTIALS_EXPIRED for s in h.states().values()),
            emulated=2 * PROBE,
            what="not authorized",
        )
        for cid in ids:
            await authorize(h, cid)
        await h.until(lambda: _healthy(h.states()), emulated=30, what="healthy after connect")
        h.emu.revoke(ids[0])
        await h.until(
            lambda: h.states()[ids[0]] is State.CREDENTIALS_EXPIRED,
            emulated=2 * PROBE + 10,
        )
        assert h.states()[ids[1]] is State.HEALTHY
        await authorize(h, ids[0])
        await h.until(lambda: _healthy(h.states()), emulated=30, what="recovered")


async def test_flaky_token_endpoint_expires_nothing() -> None:
    options = FleetOptions(instances=20, speed=60.0, access_lifespan=30, seed=14)
    async with Emulator(options) as emu:
        for inst in emu.instances:
            emu.set_faults(inst.name, flaky_token=0.3)
        clock = ScaledClock(60.0, anchor=emu.clock.anchor)
        async with keeper_on(emu, clock, connections(emu, interval=20.0), None) as h:
            await h.run_for(600)
            states = h.states()
            totals = emu.totals()
    assert State.CREDENTIALS_EXPIRED not in states.values(), states
    assert totals.expired_token_uses == 0
    assert totals.refresh_overlaps == 0
    assert sum(emu.stats(i.name).clients[i.client_id].flaky_denials for i in emu.instances) > 50


async def test_hibernation_rate_limit_maintenance_and_acl_have_their_own_states() -> None:
    async with fleet(FleetOptions(instances=5, speed=30.0, seed=15)) as h:
        await h.until(lambda: _healthy(h.states()), emulated=120)
        a, b, c, d, e = (i.name for i in h.emu.instances)
        h.emu.set_faults(a, hibernate=True)
        h.emu.set_faults(b, rate_limit=0)
        h.emu.set_faults(c, maintenance=True)
        h.emu.set_faults(d, acl_deny=["sys_user"])
        want = {
            a: State.HIBERNATING,
            b: State.RATE_LIMITED,
            c: State.FAILING,
            d: State.FORBIDDEN,
            e: State.HEALTHY,
        }
        await h.until(lambda: h.states() == want, emulated=5 * PROBE, what=str(want))
        last = {s.info.id: s.health.last_reason for s in h.keeper.statuses()}
        assert last[c] == "maintenance"
        # The rate-limited connection waits out Retry-After (the end of the emulator's hourly
        # rate window) instead of probing again on its interval.
        limited = h.keeper.status(b)
        assert limited is not None
        assert limited.next_probe_at is not None
        assert limited.health.last_probe_at is not None
        window_end = (math.floor(limited.health.last_probe_at / 3600.0) + 1) * 3600.0
        assert limited.next_probe_at >= window_end - 1.0
        h.emu.clear_faults()
        recovered = {a, c, d, e}
        await h.until(
            lambda: all(h.states()[x] is State.HEALTHY for x in recovered),
            emulated=6 * PROBE,
            what=lambda: f"recovered {h.states()}",
        )
