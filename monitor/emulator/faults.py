"""Faults: the ugly parts of real instances, switchable per instance at runtime.

A `Faults` object is live: the server reads it on every request, so setting a field (in
process, through the admin API or from a scenario file) takes effect on the next request.
Shares are probabilities in [0, 1] drawn from the emulator's seeded random generator.
Latency is wall time (it stands for the network and the instance's CPU), everything
about token and rate-limit lifetimes is emulated time.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Endpoint = Literal["token", "table", "authorize"]

Share = float


def _token_and_table() -> list[Endpoint]:
    return ["token", "table"]


class Faults(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # HTML 200 "Your instance is hibernating" on every path, OAuth endpoints included
    hibernate: bool = False
    # HTML 503 maintenance page on every path
    maintenance: bool = False
    # tables whose ACLs deny the integration user: 403 "User Not Authorized"
    acl_deny: list[str] = Field(default_factory=list)
    # fields that may not be read: a sysparm_query naming one gets 403 "Insufficient rights"
    deny_query_fields: list[str] = Field(default_factory=list)
    # Table API requests per user per hour; None is no rule
    rate_limit: int | None = Field(None, ge=0)
    # share of Table API requests rejected by a full API_INT semaphore (429, not JSON)
    semaphore: Share = Field(0.0, ge=0.0, le=1.0)
    # wall seconds added before answering: fixed + uniform(0, jitter)
    latency: float = Field(0.0, ge=0.0, le=600.0)
    jitter: float = Field(0.0, ge=0.0, le=600.0)
    latency_on: list[Endpoint] = Field(default_factory=_token_and_table)
    # shares of server errors
    error_500: Share = Field(0.0, ge=0.0, le=1.0)
    error_502: Share = Field(0.0, ge=0.0, le=1.0)
    error_503: Share = Field(0.0, ge=0.0, le=1.0)
    # share of requests whose connection is reset (TCP RST) before any answer
    reset: Share = Field(0.0, ge=0.0, le=1.0)
    # share of JSON answers cut off mid-body (connection closed early)
    truncated: Share = Field(0.0, ge=0.0, le=1.0)
    # share of JSON answers that arrive complete but are not valid JSON
    malformed: Share = Field(0.0, ge=0.0, le=1.0)
    # wall seconds over which a JSON body is dribbled out; 0 sends it at once
    slow_body: float = Field(0.0, ge=0.0, le=600.0)
    # endpoints the server-error, reset, truncated, malformed and slow faults apply to
    on: list[Endpoint] = Field(default_factory=_token_and_table)
    # share of Table API list answers that are 200 with "Transaction cancelled"
    cancelled: Share = Field(0.0, ge=0.0, le=1.0)
    # share of otherwise valid token requests answered 401 access_denied, consuming nothing
    flaky_token: Share = Field(0.0, ge=0.0, le=1.0)

    def is_clear(self) -> bool:
        return self == Faults()


class ClientSettings(BaseModel):
    """Changes to one OAuth application, from a scenario file or the admin API."""

    model_config = ConfigDict(extra="forbid")

    access_lifespan: int | None = Field(None, ge=2)
    refresh_lifespan: int | None = Field(None, ge=2)
    password: bool | None = None
    refresh_token: bool | None = None
    authorization_code: bool | None = None
    client_credentials: bool | None = None
    app_user: bool | None = None
    redirect_uri: str | None = None
