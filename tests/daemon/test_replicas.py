"""Three `snowmon run` replicas share one emulated fleet of 500 instances through a real
PostgreSQL: every connection kept alive, no refresh token used twice at once, no
connection probed twice per interval; a replica killed with SIGKILL hands its connections
over within a lease period plus a probe interval; one paused past its lease (SIGSTOP)
never writes over a newer token. The emulator rotates refresh tokens strictly (a reused
one revokes the family), so any double use would show as dead connections."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from monitor.emulator import Emulator, FleetOptions
from tests.daemon.configs import READ_TOKEN, free_port, on_postgres, write_config

pytestmark = pytest.mark.postgres

INSTANCES = 500
SPEED = 10.0
PROBE = 60.0  # emulated seconds: 6 s of wall time
LEASE = 4.0  # wall seconds


class Replica:
    def __init__(self, config: Path, port: int) -> None:
        self.config = config
        self.port = port
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with (self.config.parent / f"{self.config.stem}.log").open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "monitor.cli",
                "run",
                "--config",
                str(self.config),
                "--replica",
                self.config.stem,
                stdout=log,
                stderr=log,
            )

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    async def connections(self) -> dict[str, dict[str, object]]:
        headers = {"Authorization": f"Bearer {READ_TOKEN}"}
        items: dict[str, dict[str, object]] = {}
        async with aiohttp.ClientSession() as client:
            offset: int | None = 0
            while offset is not None:
                url = f"http://127.0.0.1:{self.port}/api/v1/connections?limit=1000&offset={offset}"
                async with client.get(url, headers=headers) as resp:
                    body = await resp.json()
                for item in body["items"]:
                    items[item["id"]] = item
                offset = body["next_offset"]
        return items


async def _gauge(replica: Replica, sample: str) -> float:
    """One sample of a replica's /metrics (name with labels, as exposed)."""
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"http://127.0.0.1:{replica.port}/metrics") as resp,
    ):
        text = await resp.text()
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    raise AssertionError(f"{sample} not in /metrics")


async def _wait(replica: Replica, check: str, seconds: float) -> dict[str, dict[str, object]]:
    """Until every connection is healthy (and, for `check == "owned"`, owned by a live
    replica), as seen through `replica`'s fleet-wide API."""
    deadline = time.monotonic() + seconds
    last: dict[str, dict[str, object]] = {}
    while time.monotonic() < deadline:
        try:
            last = await replica.connections()
        except aiohttp.ClientError:
            await asyncio.sleep(0.5)
            continue
        if len(last) == INSTANCES and all(c["state"] == "healthy" for c in last.values()):
            return last
        await asyncio.sleep(0.5)
    bad = {k: (v["state"], v["owner"]) for k, v in last.items() if v["state"] != "healthy"}
    raise AssertionError(f"{check}: {len(bad)} not healthy, e.g. {list(bad.items())[:5]}")


async def test_three_replicas_share_a_fleet_and_survive_kill_and_pause(
    tmp_path: Path, database: str
) -> None:
    options = FleetOptions(
        instances=INSTANCES, speed=SPEED, access_lifespan=300, strict_rotation=True, seed=41
    )
    async with Emulator(options) as emu:
        base, _ = write_config(emu.fleet_info(), tmp_path, probe_interval=PROBE)
        text = base.read_text()
        shared = on_postgres(text, database, lease_seconds=LEASE, request_timeout=1.5)
        replicas = []
        for n in range(3):
            port = free_port()
            config = tmp_path / f"replica{n}.toml"
            body = shared.replace(f"127.0.0.1:{_port_of(text)}", f"127.0.0.1:{port}")
            config.write_text(body)
            replicas.append(Replica(config, port))
        try:
            for replica in replicas:
                await replica.start()
            seen = await _wait(replicas[0], "start", 90)
            owners = {c["owner"] for c in seen.values()}
            assert len(owners) == 3, owners
            before = emu.totals()
            window_start = time.monotonic()
            await asyncio.sleep(PROBE / SPEED * 2)
            window = time.monotonic() - window_start
            after = emu.totals()
            probes = sum(after.table_requests.values()) - sum(before.table_requests.values())
            # One probe per connection per interval (0.9-1.1 x jitter); two replicas
            # probing the same connection would double this.
            assert probes <= INSTANCES * window / (PROBE / SPEED) / 0.9 + INSTANCES * 0.1

            # Any replica's API answers for the whole fleet, token expiry times included.
            fleet = await replicas[0].connections()
            missing = [
                cid
                for cid, c in fleet.items()
                if c["access_token_expires_at"] is None or c["refresh_token_expires_at"] is None
            ]
            assert not missing, missing[:5]
            assert len({c["owner"] for c in fleet.values()}) == 3
            # Metrics say who holds what, without counting the fleet three times.
            held = [await _gauge(r, "snowmon_replica_leases_held") for r in replicas]
            assert sum(held) == INSTANCES, held
            assert await _gauge(replicas[0], "snowmon_replicas_live") == 3
            states = [await _gauge(r, 'snowmon_connections{state="healthy"}') for r in replicas]
            assert sum(states) == INSTANCES, states

            # Three live replicas: no refresh token was ever presented twice.
            assert emu.totals().reused_refresh_tokens == 0
            assert emu.totals().grants["password"] == INSTANCES
            replicas[2].signal(signal.SIGKILL)
            await replicas[2].proc.wait()  # type: ignore[union-attr]
            killed_at = time.monotonic()
            seen = await _wait(replicas[0], "after kill -9", LEASE * 2 + PROBE / SPEED + 20)
            assert time.monotonic() - killed_at < LEASE * 2 + PROBE / SPEED + 20
            deadline = time.monotonic() + LEASE * 3
            while {c["owner"] for c in seen.values()} - {_name(r) for r in replicas[:2]}:
                assert time.monotonic() < deadline, "killed replica still owns connections"
                await asyncio.sleep(0.5)
                seen = await replicas[0].connections()

            replicas[1].signal(signal.SIGSTOP)
            await asyncio.sleep(LEASE * 2.5)
            replicas[1].signal(signal.SIGCONT)
            await asyncio.sleep(LEASE)
            await _wait(replicas[0], "after pause", 60)
            await _wait(replicas[1], "paused replica's view", 30)
        finally:
            for replica in replicas:
                await replica.stop()
        totals = emu.totals()
    assert totals.refresh_overlaps == 0
    # A replica killed after the server rotated a refresh token but before it stored
    # the new one, or frozen between its lease check and the send, leaves its successor
    # with a token a strict server has rotated: the server revokes that family and the
    # successor grants again. (ServiceNow does not rotate.) The store never took a stale
    # answer (fencing), and every connection is alive (checked above).
    assert totals.reused_refresh_tokens <= 10
    assert totals.expired_token_uses == 0
    # Nobody lost a token: one password grant per connection, plus one per family a
    # thawed replica's stale refresh revoked.
    assert totals.grants["password"] <= INSTANCES + totals.reused_refresh_tokens


def _port_of(text: str) -> int:
    line = next(line for line in text.splitlines() if line.startswith("listen ="))
    return int(line.split(":")[-1].rstrip('"'))


def _name(replica: Replica) -> str:
    return replica.config.stem
