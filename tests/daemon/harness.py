"""A keeper wired to an in-process emulator, on a clock both share: days of token life
run in seconds of test. Real HTTP over loopback; nothing is mocked."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import aiohttp

from monitor.clock import ScaledClock
from monitor.connection import ConnectionSettings
from monitor.emulator import Emulator, FleetOptions
from monitor.health import Thresholds
from monitor.http import HttpSettings, build_session
from monitor.keeper import Keeper
from monitor.model import ConnectionInfo, Grant, State
from monitor.schedule import Scheduler
from monitor.secret import Secret
from monitor.store import Store
from monitor.store.memory import MemoryStore
from monitor.telemetry import Telemetry, TelemetrySettings


@dataclass(frozen=True)
class Probe:
    table: str = "sys_user"
    query: str = ""
    fields: str = "sys_id"
    interval: float = 60.0
    timeout: float = 5.0


@dataclass(frozen=True)
class Conn:
    id: str
    instance_url: str
    grant: Grant
    client_id: str
    client_secret: Secret | None
    username: str | None
    password: Secret | None
    scopes: tuple[str, ...] = ()
    refresh_token_lifespan: float = 8_640_000.0
    probe: Probe = field(default_factory=Probe)

    def info(self) -> ConnectionInfo:
        return ConnectionInfo(self.id, self.instance_url, self.grant, {"team": "test"})


def connections(
    emu: Emulator, *, grant: Grant = Grant.PASSWORD, interval: float = 60.0, **overrides: object
) -> list[Conn]:
    out = []
    for inst in emu.instances:
        out.append(
            Conn(
                id=inst.name,
                instance_url=inst.base_url,
                grant=grant,
                client_id=inst.client_id,
                client_secret=Secret(inst.client_secret),
                username=inst.username,
                password=Secret(inst.password),
                probe=Probe(interval=interval),
                **overrides,  # type: ignore[arg-type]
            )
        )
    return out


@dataclass
class Harness:
    emu: Emulator  # None when the emulator runs in its own process
    keeper: Keeper
    scheduler: Scheduler
    store: Store
    clock: ScaledClock
    telemetry: Telemetry

    def states(self) -> dict[str, State]:
        return {s.info.id: s.health.state for s in self.keeper.statuses()}

    async def until(
        self, check: Callable[[], bool], *, emulated: float, what: object = "condition"
    ) -> None:
        """Wait until `check()` holds, for at most `emulated` seconds of clock time."""
        deadline = self.clock.now() + emulated
        while not check():
            if self.clock.now() > deadline:
                detail = what() if callable(what) else what
                raise AssertionError(f"{detail} did not happen within {emulated} emulated s")
            await asyncio.sleep(0.01)

    async def run_for(self, emulated: float) -> None:
        await asyncio.sleep(self.clock.real_seconds(emulated))


@asynccontextmanager
async def fleet(
    options: FleetOptions,
    *,
    make_connections: Callable[[Emulator], Sequence[Conn]] = connections,
    store: Store | None = None,
    max_in_flight: int = 64,
) -> AsyncIterator[Harness]:
    """An emulator and a running keeper on one ScaledClock (same anchor and speed)."""
    async with Emulator(options) as emu:
        clock = ScaledClock(options.speed, anchor=emu.clock.anchor)
        async with keeper_on(emu, clock, make_connections(emu), store, max_in_flight) as h:
            yield h


@asynccontextmanager
async def keeper_on(
    emu: Emulator | None,
    clock: ScaledClock,
    conns: Sequence[ConnectionSettings],
    store: Store | None,
    max_in_flight: int = 64,
) -> AsyncIterator[Harness]:
    store = store if store is not None else MemoryStore()
    telemetry = Telemetry.create(TelemetrySettings(traces="none", per_connection_metrics=True))
    session = build_session(HttpSettings(request_timeout=5.0), telemetry)
    scheduler = Scheduler(clock, max_in_flight=max_in_flight)
    keeper = Keeper(
        connections=conns,
        store=store,
        session=session,
        clock=clock,
        scheduler=scheduler,
        metrics=telemetry.metrics,
        tracer=telemetry.tracer,
        thresholds=Thresholds(),
        request_timeout=5.0,
        initial_spread=5.0,
        seed=1,
    )
    stop = asyncio.Event()
    try:
        await keeper.load()
        async with asyncio.TaskGroup() as group:
            group.create_task(scheduler.run(stop, grace=2.0))
            group.create_task(keeper.run_flusher(stop, interval=0.2))
            try:
                yield Harness(emu, keeper, scheduler, store, clock, telemetry)  # type: ignore[arg-type]
            finally:
                stop.set()
        await keeper.flush()
    finally:
        await session.close()
        telemetry.shutdown()


async def authorize(h: Harness, connection_id: str) -> None:
    """Walk the authorization-code flow with PKCE against the emulator's auto-approving
    `/oauth_auth.do`, then let the keeper exchange the code."""
    conn = h.keeper.connection(connection_id)
    assert conn is not None
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    redirect_uri = "http://127.0.0.1:9/oauth/callback"
    state = secrets.token_urlsafe(16)
    params = {
        "response_type": "code",
        "client_id": conn.settings.client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    async with (
        aiohttp.ClientSession() as client,
        client.get(
            conn.settings.instance_url + "/oauth_auth.do", params=params, allow_redirects=False
        ) as resp,
    ):
        assert resp.status == 302, resp.status
        location = resp.headers["Location"]
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [state]
    result = await h.keeper.complete_authorization(
        connection_id, Secret(query["code"][0]), redirect_uri, Secret(verifier)
    )
    assert result.ok, result
