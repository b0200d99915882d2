"""The emulator's shared state: the fleet, its clock, its tokens and its dice.

One `FleetState` is handed to every request handler and to the admin API; nothing in the
emulator is global, so two emulators can run side by side in one test process.
"""

from __future__ import annotations

import random

from monitor.emulator.clock import EmulatorClock
from monitor.emulator.faults import ClientSettings, Faults
from monitor.emulator.fleet import FleetOptions, Instance, OAuthClient, build_instances
from monitor.emulator.stats import FleetTotals, InstanceStats
from monitor.emulator.tokens import TokenStore


class UnknownInstanceError(KeyError):
    pass


class UnknownClientError(KeyError):
    pass


class FleetState:
    def __init__(self, options: FleetOptions) -> None:
        self.options = options
        self.clock = EmulatorClock(options.speed, options.anchor)
        self.tokens = TokenStore()
        self.instances = build_instances(options)
        self.by_name = {instance.name: instance for instance in self.instances}
        # seeded so a fault share picks the same requests on every run of a test
        self.rng = random.Random(options.seed)  # noqa: S311
        self.connections_accepted = 0  # counted by the server, whatever the instance

    def instance(self, name: str) -> Instance:
        try:
            return self.by_name[name]
        except KeyError:
            raise UnknownInstanceError(name) from None

    def client(self, name: str, client_id: str | None = None) -> OAuthClient:
        instance = self.instance(name)
        if client_id is None:
            return instance.clients[0]
        client = instance.client(client_id)
        if client is None:
            raise UnknownClientError(client_id)
        return client

    def faults(self, name: str) -> Faults:
        instance = self.instance(name)
        if instance.faults is None:
            instance.faults = Faults()
        return instance.faults

    def clear_faults(self, name: str) -> None:
        self.instance(name).faults = None

    def revoke(self, name: str, client_id: str | None = None) -> None:
        """Revoke every access and refresh token of the client issued so far."""
        self.client(name, client_id).generation += 1

    def rotate_secret(self, name: str, client_id: str | None = None) -> str:
        client = self.client(name, client_id)
        client.secret = f"{self.rng.getrandbits(96):024x}"
        return client.secret

    def configure_client(
        self, name: str, settings: ClientSettings, client_id: str | None = None
    ) -> OAuthClient:
        client = self.client(name, client_id)
        for field, value in settings.model_dump(exclude_unset=True).items():
            setattr(client, field, value)
        return client

    def stats(self, name: str) -> InstanceStats:
        return self.instance(name).live_stats()

    def totals(self) -> FleetTotals:
        totals = FleetTotals()
        for instance in self.instances:
            if instance.stats is not None:
                totals.add(instance.stats)
        totals.connections_accepted = self.connections_accepted
        return totals

    def reset_stats(self) -> None:
        for instance in self.instances:
            instance.stats = None
        self.connections_accepted = 0
