"""Daemon settings: every config section except the connections themselves.

`[daemon]`, `[clock]`, `[http]`, `[web]` and `[telemetry]` live here; `[slack]` and
`[alerts]` in `config_alerts`. Secret fields arrive resolved (the loader turns `env:` and
`file:` references into `Secret` first); the store DSN is normalised against the config
file's directory, which the loader passes as validation context `base_dir`.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from monitor.config_fields import (
    UNRESOLVED,
    ConfigModel,
    SecretValue,
    between,
    http_url,
    matching,
)
from monitor.config_rules import raise_rules
from monitor.event_loop import EventLoopChoice, uvloop_installed
from monitor.secret import Secret

KEY_FORMAT = (
    "not a valid key: must be 32 random bytes in URL-safe base64 (44 characters), "
    "as `snowmon keygen` writes"
)
_KEY = re.compile(r"[A-Za-z0-9_-]{43}=?")


def _encryption_key(value: Secret) -> Secret:
    # The same format store.crypto reads (padding optional), checked here so a bad key is
    # one more line of `snowmon check`, not a crash at start-up.
    if value is UNRESOLVED:
        return value
    raw = value.reveal()
    if not _KEY.fullmatch(raw) or len(base64.urlsafe_b64decode(raw.rstrip("=") + "=")) != 32:
        raise ValueError(KEY_FORMAT)
    return value


def _at_least_one_key(keys: list[Secret]) -> list[Secret]:
    if not keys:
        raise ValueError("needs at least one key (the first encrypts, every key decrypts)")
    return keys


def normalize_store(dsn: str, base_dir: Path | None) -> str:
    """`sqlite:///rel/path` (relative to `base_dir`), `sqlite:////abs/path`, or a
    PostgreSQL DSN. Messages never echo the DSN: it may hold a password."""
    if dsn.startswith(("postgresql://", "postgres://")):
        return dsn
    if not dsn.startswith("sqlite:///"):
        raise ValueError("must be sqlite:///path or a postgresql:// DSN")
    path = dsn[len("sqlite:///") :]
    if path in ("", ":memory:") or path.startswith(("file:", "?")):
        # An in-memory store loses every token on restart: the opposite of a store.
        raise ValueError("sqlite needs a file path, e.g. sqlite:///snowmon.db")
    if not path.startswith("/"):
        if base_dir is None:
            raise ValueError("a relative sqlite path needs the config file's directory")
        path = str((base_dir / path).absolute())
    return f"sqlite:///{path}"


def dsn_has_password(dsn: str) -> bool:
    """Whether an inline store DSN is a secret at all: a sqlite path is not."""
    if not dsn.startswith(("postgresql://", "postgres://")):
        return False
    try:
        parts = urlsplit(dsn)
        password = parts.password
    except ValueError:
        return True
    return password is not None or "password=" in parts.query


class DaemonConfig(ConfigModel):
    store: SecretValue
    encryption_keys: Annotated[
        list[Annotated[SecretValue, AfterValidator(_encryption_key)]],
        AfterValidator(_at_least_one_key),
    ]
    connections_dir: Path | None = Field(default=None, strict=False)
    max_in_flight: Annotated[int, between(1, 100_000)] = 512
    # A SIGTERM ends within 20 s (Kubernetes kills after 30): this long for refreshes in
    # flight, then a few seconds to write the last state and close.
    shutdown_grace: Annotated[float, between(0.0, 15.0, "seconds")] = 10.0
    history_per_connection: Annotated[int, between(1, 10_000)] = 50
    # A start probes (and obtains tokens for) every connection that needs it within this
    # many seconds, at random: a big fleet may want longer, a demo shorter.
    initial_spread: Annotated[float, between(0.0, 3600.0, "seconds")] = 30.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "text"] = "auto"
    # `snowmon run`'s event loop (monitor/event_loop.py): uvloop holds idle TLS
    # connections in a third of the memory; `auto` takes it where it is installed.
    event_loop: EventLoopChoice = "auto"
    # PostgreSQL fleets: how long a replica's claim on a connection lasts unrenewed (it
    # renews every third of it); a dead replica's connections move within about this long.
    lease_seconds: Annotated[float, between(2.0, 600.0, "seconds")] = 30.0

    @field_validator("store")
    @classmethod
    def _store(cls, value: Secret, info: ValidationInfo) -> Secret:
        if value is UNRESOLVED:
            return value
        return Secret(normalize_store(value.reveal(), _base_dir(info)))

    @field_validator("event_loop")
    @classmethod
    def _event_loop(cls, value: EventLoopChoice) -> EventLoopChoice:
        if value == "uvloop" and not uvloop_installed():
            raise ValueError("uvloop is not installed: install it, or set 'auto' or 'asyncio'")
        return value

    @field_validator("connections_dir")
    @classmethod
    def _connections_dir(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        base = _base_dir(info)
        if value is None or value.is_absolute() or base is None:
            return value
        return base / value

    @property
    def store_kind(self) -> Literal["sqlite", "postgresql"]:
        return "sqlite" if self.store.reveal().startswith("sqlite:") else "postgresql"

    @property
    def sqlite_path(self) -> Path | None:
        """The database file, absolute, for a sqlite store; None for PostgreSQL."""
        dsn = self.store.reveal()
        return Path(dsn[len("sqlite:///") :]) if dsn.startswith("sqlite:///") else None


def _base_dir(info: ValidationInfo) -> Path | None:
    context = info.context
    base = context.get("base_dir") if isinstance(context, dict) else None
    return base if isinstance(base, Path) else None


class ClockConfig(ConfigModel):
    """Emulated time: `speed` > 1 only makes sense against the emulator."""

    speed: Annotated[float, between(0.001, 1_000_000.0)] = 1.0
    anchor: Annotated[float, between(0.0, 1e11, "(UNIX time; 0 = start time)")] = 0.0


class HttpConfig(ConfigModel):
    connect_timeout: Annotated[float, between(0.1, 60.0, "seconds")] = 5.0
    request_timeout: Annotated[float, between(0.1, 300.0, "seconds")] = 15.0
    max_body_bytes: Annotated[int, between(1024, 64 * 1024 * 1024, "bytes")] = 1_048_576
    # aiohttp reads 0 as "no limit": never what a fleet of 100,000 connections wants.
    pool_limit: Annotated[int, between(1, 100_000)] = 1000
    pool_limit_per_host: Annotated[int, between(1, 1000)] = 4
    # Idle connections are closed after this long: at a probe every 5 minutes none is
    # reused across probes, and every idle TLS connection holds memory (docs/benchmarks.md).
    keepalive_timeout: Annotated[float, between(1.0, 3600.0, "seconds")] = 3.0
    dns_cache_ttl: Annotated[int, between(0, 86400, "seconds")] = 300


@dataclass(frozen=True, slots=True)
class ListenAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


_HOST = re.compile(r"[A-Za-z0-9.:-]+")


def _listen(value: object) -> ListenAddress:
    if isinstance(value, ListenAddress):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string like 127.0.0.1:8080")  # noqa: TRY004
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not _HOST.fullmatch(host) or not port.isdigit() or int(port) > 65535:
        raise ValueError("must be host:port like 127.0.0.1:8080 or [::1]:8080")
    return ListenAddress(host, int(port))


class WebConfig(ConfigModel):
    enabled: bool = True
    listen: Annotated[ListenAddress, BeforeValidator(_listen)] = ListenAddress("127.0.0.1", 8080)
    # Base of links in Slack and of the OAuth redirect_uri; "" = derived from `listen`.
    public_url: Annotated[str, http_url(https_off_loopback=False, allow_empty=True)] = ""
    read_tokens: list[SecretValue] = Field(default_factory=list)
    admin_tokens: list[SecretValue] = Field(default_factory=list)
    protect_metrics: bool = False

    @field_validator("public_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _tokens_for_metrics(self) -> WebConfig:
        if self.enabled and self.protect_metrics and not (self.read_tokens or self.admin_tokens):
            raise_rules([("protect_metrics", "needs read_tokens or admin_tokens to check")])
        return self

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.listen}"

    @property
    def redirect_uri(self) -> str:
        return f"{self.base_url}/oauth/callback"


class TelemetryConfig(ConfigModel):
    service_name: Annotated[str, matching(r"\S{1,255}", "a name without spaces")] = "snowmon"
    per_connection_metrics: bool = True
    traces: Literal["otlp", "console", "none"] = "otlp"
    otlp_endpoint: Annotated[str, http_url(https_off_loopback=False, allow_empty=True)] = ""
    sample_ratio: Annotated[float, between(0.0, 1.0)] = 1.0
