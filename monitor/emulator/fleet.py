"""The fleet: emulated instances, their OAuth applications and integration users.

Everything here is generated deterministically from a seed so a test, the demo and a
benchmark see the same names and credentials on every run. Per-instance state is a few
slotted objects and strings (100,000 instances must fit in one process); tables and
records are not stored here at all but generated on demand (see `records`).
"""

from __future__ import annotations

import math
import random
import string
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from monitor.emulator.faults import Faults
from monitor.emulator.stats import InstanceStats

FIRST_ADDRESS = 2  # 127.0.0.1 is left to the admin API and to whatever else runs here
ADDRESSES = 253  # 127.0.0.2 .. 127.0.0.254


class FleetOptions(BaseModel):
    """How the fleet is made. Every field has the default of a fresh developer instance."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instances: int = Field(1, ge=1, le=100_000)
    access_lifespan: int = Field(1800, ge=2)
    refresh_lifespan: int = Field(8_640_000, ge=2)
    speed: float = Field(1.0, gt=0)
    anchor: float | None = None
    strict_rotation: bool = False
    auto_approve: bool = True
    seed: int = 1
    clients_per_instance: int = Field(1, ge=1, le=16)
    # share of instances whose OAuth application has client_credentials enabled
    client_credentials: float = Field(0.0, ge=0.0, le=1.0)
    # auto: one host per instance while instances <= max_sockets, else path prefixes
    addressing: Literal["auto", "hosts", "prefix"] = "auto"
    max_sockets: int = Field(250, ge=1, le=10_000)
    port: int = Field(0, ge=0, le=65535)  # 0: an ephemeral port per socket
    admin_port: int = Field(0, ge=0, le=65535)
    first_number: int = Field(100_001, ge=0)
    username: str = "snowmon.integration"
    app_username: str = "snowmon.app"
    code_lifespan: float = Field(60.0, gt=0)


class OAuthClient:
    """One OAuth application (oauth_entity) of an instance."""

    __slots__ = (
        "access_lifespan",
        "app_user",
        "authorization_code",
        "client_credentials",
        "client_id",
        "generation",
        "index",
        "password",
        "redirect_uri",
        "refresh_lifespan",
        "refresh_token",
        "secret",
    )

    def __init__(
        self, index: int, client_id: str, secret: str, options: FleetOptions, cc: bool
    ) -> None:
        self.index = index
        self.client_id = client_id
        self.secret = secret
        self.access_lifespan = options.access_lifespan
        self.refresh_lifespan = options.refresh_lifespan
        self.password = True
        self.refresh_token = True
        self.authorization_code = True
        self.client_credentials = cc
        self.app_user = True  # an OAuth application user is configured for client_credentials
        self.redirect_uri: str | None = None  # None: any redirect_uri is accepted
        # bumping the generation revokes every token issued before, without an index
        self.generation = 0

    def grant_enabled(self, grant: str) -> bool:
        enabled: bool = getattr(self, grant, False) if grant in GRANTS else False
        return enabled

    def describe(self) -> dict[str, object]:
        return {
            "client_id": self.client_id,
            "client_secret": self.secret,
            "access_lifespan": self.access_lifespan,
            "refresh_lifespan": self.refresh_lifespan,
            "grants": {grant: getattr(self, grant) for grant in GRANTS},
            "app_user": self.app_user,
            "redirect_uri": self.redirect_uri,
        }


GRANTS = ("password", "refresh_token", "authorization_code", "client_credentials")


class Instance:
    """One emulated ServiceNow instance; reachable at `base_url`."""

    __slots__ = (
        "base_url",
        "clients",
        "faults",
        "index",
        "name",
        "password",
        "prefix",
        "rate",
        "socket_index",
        "stats",
        "username",
    )

    def __init__(
        self, index: int, name: str, clients: list[OAuthClient], username: str, password: str
    ) -> None:
        self.index = index
        self.name = name
        self.clients = clients
        self.username = username
        self.password = password
        self.base_url = ""
        self.prefix = ""  # "" when the instance owns its socket, else "/<name>"
        self.socket_index = 0
        self.faults: Faults | None = None
        self.stats: InstanceStats | None = None
        self.rate: dict[str, list[float]] | None = None  # user -> rate-limit window state

    # The first OAuth application is "the" client of the instance for most callers.
    @property
    def client_id(self) -> str:
        return self.clients[0].client_id

    @property
    def client_secret(self) -> str:
        return self.clients[0].secret

    def client(self, client_id: str) -> OAuthClient | None:
        for client in self.clients:
            if client.client_id == client_id:
                return client
        return None

    def live_stats(self) -> InstanceStats:
        if self.stats is None:
            self.stats = InstanceStats()
        return self.stats

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "base_url": self.base_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "username": self.username,
            "password": self.password,
            "clients": [client.describe() for client in self.clients],
        }


_SECRET_ALPHABET = string.ascii_letters + string.digits + "!$*-_."
_PASSWORD_ALPHABET = string.ascii_letters + string.digits + "!#%&*+-=?@^_"


def _word(rng: random.Random, alphabet: str, length: int) -> str:
    return "".join(rng.choices(alphabet, k=length))


def _has_client_credentials(index: int, share: float) -> bool:
    # spreads the share evenly over the fleet instead of taking the first instances
    return math.floor((index + 1) * share) > math.floor(index * share)


def build_instances(options: FleetOptions) -> list[Instance]:
    rng = random.Random(options.seed)  # noqa: S311 - deterministic on purpose, not real secrets
    instances: list[Instance] = []
    for index in range(options.instances):
        cc = _has_client_credentials(index, options.client_credentials)
        clients = [
            OAuthClient(
                number,
                f"{rng.getrandbits(128):032x}",
                _word(rng, _SECRET_ALPHABET, 16),
                options,
                cc,
            )
            for number in range(options.clients_per_instance)
        ]
        instances.append(
            Instance(
                index,
                f"dev{options.first_number + index}",
                clients,
                options.username,
                _word(rng, _PASSWORD_ALPHABET, 20),
            )
        )
    return instances


def socket_plan(options: FleetOptions) -> tuple[int, bool]:
    """How many listening sockets, and whether instances are told apart by path prefix."""
    count = options.instances
    if options.addressing == "hosts":
        return count, False
    if options.addressing == "prefix":
        return min(count, options.max_sockets), True
    if count <= options.max_sockets:
        return count, False
    return options.max_sockets, True


def socket_address(socket_index: int, options: FleetOptions) -> tuple[str, int]:
    host = f"127.0.0.{FIRST_ADDRESS + socket_index % ADDRESSES}"
    if options.port == 0:
        return host, 0
    return host, options.port + socket_index // ADDRESSES
