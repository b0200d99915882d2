"""Connection config: one ServiceNow instance, one OAuth client, one grant, one probe.

`ConnectionConfig` is what the loader hands out, with `[defaults]` already merged in;
`ConnectionDefaults` is the same set of fields minus identity and credentials, all
optional. Field types are shared so a default and a connection obey the same limits.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from monitor.config_fields import (
    TEN_YEARS,
    ConfigModel,
    LabelName,
    SecretValue,
    Slug,
    between,
    matching,
)
from monitor.config_rules import CONFIGURABLE_GRANTS, credential_rules, raise_rules
from monitor.instance_url import InstanceURLError, normalize_instance_url
from monitor.model import ConnectionInfo, Grant

DEFAULT_ACCESS_LIFESPAN: Final = 1800.0  # ServiceNow's default for an OAuth application
DEFAULT_REFRESH_LIFESPAN: Final = 8_640_000.0  # 100 days, ditto


def _grant(value: object) -> Grant:
    if isinstance(value, str) and value in CONFIGURABLE_GRANTS:
        return Grant(value)
    # refresh_token is how the keeper renews tokens, never how a connection starts.
    raise ValueError("must be password, client_credentials or authorization_code")


ConfigGrant = Annotated[Grant, BeforeValidator(_grant)]
Lifespan = Annotated[float, between(30.0, TEN_YEARS, "seconds (10 years)")]
ProbeInterval = Annotated[float, between(5.0, 86400.0, "seconds")]
ProbeTimeout = Annotated[float, between(0.1, 120.0, "seconds")]
TableName = Annotated[str, matching(r"[a-z][a-z0-9_]{0,79}", "a table name like sys_user")]
FieldList = Annotated[
    str, matching(r"[a-z0-9_.]+(,[a-z0-9_.]+)*", "comma-separated field names like sys_id")
]
# RFC 6749 scope-token: printable ASCII without space, quote or backslash.
Scope = Annotated[str, matching(r"[\x21\x23-\x5b\x5d-\x7e]+", "a scope token without spaces")]
ClientId = Annotated[str, matching(r"[\x21-\x7e]{1,255}", "a client id without spaces")]
Username = Annotated[str, matching(r"\S(.{0,253}\S)?", "a user name")]
Labels = dict[LabelName, str]


def _probe_rules(timeout: float, interval: float) -> list[tuple[str, str]]:
    if timeout < interval:
        return []
    return [("timeout", f"must be less than probe.interval ({interval:g} s)")]


def _lifespan_rules(access: float, refresh: float) -> list[tuple[str, str]]:
    if refresh > access:
        return []
    return [("refresh_token_lifespan", f"must be longer than access_token_lifespan ({access:g} s)")]


class ProbeConfig(ConfigModel):
    """The Table API call that proves a token works: `GET /api/now/table/{table}`."""

    table: TableName = "sys_user"
    query: str = ""  # an encoded query (sysparm_query); "" for none
    fields: FieldList = "sys_id"
    interval: ProbeInterval = 300.0
    timeout: ProbeTimeout = 10.0

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> ProbeConfig:
        raise_rules(_probe_rules(self.timeout, self.interval))
        return self


class ConnectionAlerts(ConfigModel):
    channel: str = ""  # Slack channel for this connection's alerts; "" routes by labels


class ConnectionConfig(ConfigModel):
    """One connection as the daemon runs it: defaults merged, secrets resolved."""

    id: Slug
    # Declared before instance_url: the URL check reads it from the validated fields.
    allow_custom_domain: bool = False
    instance_url: str
    grant: ConfigGrant
    client_id: ClientId
    client_secret: SecretValue | None = None
    username: Username | None = None
    password: SecretValue | None = None
    scopes: tuple[Scope, ...] = Field(default=(), strict=False)
    access_token_lifespan: Lifespan = DEFAULT_ACCESS_LIFESPAN
    refresh_token_lifespan: Lifespan = DEFAULT_REFRESH_LIFESPAN
    probe: ProbeConfig = ProbeConfig()
    labels: Labels = Field(default_factory=dict)
    alerts: ConnectionAlerts = ConnectionAlerts()
    source: str = ""  # the config file it came from, set by the loader

    @field_validator("instance_url")
    @classmethod
    def _instance_url(cls, value: str, info: ValidationInfo) -> str:
        allow = info.data.get("allow_custom_domain", False)
        try:
            return normalize_instance_url(value, allow_custom_domain=allow)
        except InstanceURLError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _consistent(self) -> ConnectionConfig:
        present = [name for name in CREDENTIAL_FIELDS if getattr(self, name) is not None]
        raise_rules(
            [
                *credential_rules(self.grant, present),
                *_lifespan_rules(self.access_token_lifespan, self.refresh_token_lifespan),
            ]
        )
        return self

    @property
    def alert_channel(self) -> str:
        return self.alerts.channel

    def info(self) -> ConnectionInfo:
        return ConnectionInfo(
            id=self.id,
            instance_url=self.instance_url,
            grant=self.grant,
            labels=dict(self.labels),
            channel=self.alerts.channel,
        )


CREDENTIAL_FIELDS: Final = ("client_secret", "username", "password")
SECRET_FIELDS: Final = ("client_secret", "password")
# Not allowed in [defaults]: identity, the domain opt-out and credentials are decided
# per connection, so a shared file can never point a whole fleet somewhere else.
PER_CONNECTION_ONLY: Final = ("id", "instance_url", "allow_custom_domain", "client_id")


class ProbeDefaults(ConfigModel):
    table: TableName | None = None
    query: str | None = None
    fields: FieldList | None = None
    interval: ProbeInterval | None = None
    timeout: ProbeTimeout | None = None

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> ProbeDefaults:
        if self.timeout is not None and self.interval is not None:
            raise_rules(_probe_rules(self.timeout, self.interval))
        return self


class ConnectionDefaults(ConfigModel):
    """`[defaults]`: applies to every connection (of the file, for a per-file section)."""

    grant: ConfigGrant | None = None
    scopes: tuple[Scope, ...] | None = Field(default=None, strict=False)
    access_token_lifespan: Lifespan | None = None
    refresh_token_lifespan: Lifespan | None = None
    probe: ProbeDefaults = ProbeDefaults()
    labels: Labels = Field(default_factory=dict)
    alerts: ConnectionAlerts = ConnectionAlerts()

    @model_validator(mode="after")
    def _consistent(self) -> ConnectionDefaults:
        if self.access_token_lifespan is not None and self.refresh_token_lifespan is not None:
            raise_rules(_lifespan_rules(self.access_token_lifespan, self.refresh_token_lifespan))
        return self


# Tables whose keys merge key by key: a connection's `[connections.probe] interval` keeps
# the default table and timeout.
MERGED_TABLES: Final = ("probe", "labels", "alerts")


def merge_defaults(defaults: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """Raw TOML dicts in, raw dict out: validation happens once, on the result."""
    merged = {**defaults, **entry}
    for key in MERGED_TABLES:
        base, own = defaults.get(key), entry.get(key)
        if isinstance(base, dict) and isinstance(own, dict):
            merged[key] = {**base, **own}
    return merged
