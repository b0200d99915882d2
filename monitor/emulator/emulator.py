"""The emulator as a Python object: start a fleet, steer it, read its evidence.

    async with Emulator(FleetOptions(instances=3)) as emu:
        inst = emu.instances[0]        # .name .base_url .client_id .client_secret ...
        emu.clock.advance(86400)
        emu.faults(inst.name).hibernate = True
        emu.stats(inst.name).clients[inst.client_id].refreshes

Everything here is also reachable over the admin API at `emu.admin_url`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiohttp import web

from monitor.emulator.admin import admin_app
from monitor.emulator.clock import EmulatorClock
from monitor.emulator.faults import ClientSettings, Faults
from monitor.emulator.fleet import FleetOptions, Instance, OAuthClient
from monitor.emulator.scenario import Scenario, apply_scenario, patch_faults
from monitor.emulator.server import FleetServer
from monitor.emulator.state import FleetState
from monitor.emulator.stats import FleetTotals, InstanceStats
from monitor.emulator.tls import TlsFiles

ADMIN_HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    name: str
    base_url: str
    client_id: str
    client_secret: str
    username: str
    password: str
    client_credentials: bool


@dataclass(frozen=True, slots=True)
class FleetInfo:
    """What a daemon needs to monitor the fleet: see `write_daemon_config`."""

    instances: tuple[InstanceInfo, ...]
    admin_url: str
    speed: float
    anchor: float
    access_lifespan: int
    refresh_lifespan: int


class Emulator:
    def __init__(
        self,
        options: FleetOptions | None = None,
        scenario: Scenario | None = None,
        *,
        tls: TlsFiles | None = None,
    ) -> None:
        """`tls`: the instances speak HTTPS with these certificates (`monitor.emulator.tls`)."""
        self._created = time.perf_counter()
        self.options = options if options is not None else FleetOptions()
        self._scenario = scenario
        self.state = FleetState(self.options)
        self._server = FleetServer(self.state, tls)
        self._admin: web.AppRunner | None = None
        self.admin_url = ""
        self.startup_seconds = 0.0

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._scenario is not None:
            apply_scenario(self.state, self._scenario)
        try:
            await self._server.start()
            self._admin = web.AppRunner(
                admin_app(self.state), access_log=None, handle_signals=False
            )
            await self._admin.setup()
            site = web.TCPSite(self._admin, ADMIN_HOST, self.options.admin_port)
            await site.start()
        except BaseException:
            await self.stop()
            raise
        port = self._admin.addresses[0][1]
        self.admin_url = f"http://{ADMIN_HOST}:{port}"
        # from construction: building the fleet is most of the start-up
        self.startup_seconds = time.perf_counter() - self._created

    async def stop(self) -> None:
        if self._admin is not None:
            await self._admin.cleanup()
            self._admin = None
        await self._server.stop()

    # --- the fleet ------------------------------------------------------------------

    @property
    def instances(self) -> list[Instance]:
        return self.state.instances

    @property
    def clock(self) -> EmulatorClock:
        return self.state.clock

    def instance(self, name: str) -> Instance:
        return self.state.instance(name)

    def fleet_info(self) -> FleetInfo:
        return FleetInfo(
            instances=tuple(
                InstanceInfo(
                    name=instance.name,
                    base_url=instance.base_url,
                    client_id=instance.client_id,
                    client_secret=instance.client_secret,
                    username=instance.username,
                    password=instance.password,
                    client_credentials=instance.clients[0].client_credentials,
                )
                for instance in self.state.instances
            ),
            admin_url=self.admin_url,
            speed=self.clock.speed,
            anchor=self.clock.anchor,
            access_lifespan=self.options.access_lifespan,
            refresh_lifespan=self.options.refresh_lifespan,
        )

    # --- steering -------------------------------------------------------------------

    def faults(self, name: str) -> Faults:
        """The instance's live faults; setting a field takes effect on the next request."""
        return self.state.faults(name)

    def set_faults(self, name: str, **fields: Any) -> Faults | None:
        """Merge fields into the instance's faults (validated); returns the result."""
        return patch_faults(self.state.instance(name), fields)

    def clear_faults(self, name: str | None = None) -> None:
        """Clear one instance's faults, or every instance's."""
        targets = self.state.instances if name is None else [self.state.instance(name)]
        for target in targets:
            target.faults = None

    def revoke(self, name: str, client_id: str | None = None) -> None:
        self.state.revoke(name, client_id)

    def rotate_secret(self, name: str, client_id: str | None = None) -> str:
        return self.state.rotate_secret(name, client_id)

    def configure_client(
        self, name: str, client_id: str | None = None, **settings: Any
    ) -> OAuthClient:
        """E.g. `configure_client(name, password=False, client_credentials=True)`."""
        return self.state.configure_client(name, ClientSettings.model_validate(settings), client_id)

    # --- evidence -------------------------------------------------------------------

    def stats(self, name: str) -> InstanceStats:
        """Live counts of one instance (the object keeps counting; copy via to_json())."""
        return self.state.stats(name)

    def totals(self) -> FleetTotals:
        return self.state.totals()

    def reset_stats(self) -> None:
        self.state.reset_stats()
