"""Config field types: the building blocks every config section is made of.

Each type carries its own rule and a message written for the person editing the TOML
file ("must be between 5 and 86400 seconds"), so sections stay declarations. Models are
strict: TOML already types its values, so `interval = "60"` or `enabled = 1` is a
mistake to report, not to coerce.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, TypeVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, PlainSerializer, PlainValidator

from monitor.instance_url import is_loopback_host
from monitor.secret import Secret
from monitor.secrets_ref import is_reference

TEN_YEARS: Final = 10 * 365 * 86400.0

_N = TypeVar("_N", int, float)

# Stands in for a secret whose reference did not resolve (already reported), so the
# model neither adds "required" nor checks the format of a value that does not exist.
UNRESOLVED: Final = Secret("unresolved")


class ConfigModel(BaseModel):
    """Frozen, strict, and unknown keys are problems: a misspelt key must not silently
    fall back to a default."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def between(lo: float, hi: float, unit: str = "") -> AfterValidator:
    suffix = f" {unit}" if unit else ""

    def check(value: _N) -> _N:
        if not lo <= value <= hi:
            raise ValueError(f"must be between {_number(lo)} and {_number(hi)}{suffix}")
        return value

    return AfterValidator(check)


def matching(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"must be {what}")
        return value

    return AfterValidator(check)


def _as_secret(value: object) -> Secret:
    # The loader has resolved every reference before validation; a reference still here
    # means a model was built around the loader, and must not become a literal secret.
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string: a secret, env:NAME or file:/path")  # noqa: TRY004
    if is_reference(value):
        raise ValueError("unresolved secret reference; load the file with load_config")
    if not value:
        raise ValueError("is empty")
    return Secret(value)


# In JSON (an API that shows the running config, a debug dump) a secret is its mask.
SecretValue = Annotated[
    Secret, PlainValidator(_as_secret), PlainSerializer(str, return_type=str, when_used="json")
]

SLUG_PATTERN: Final = r"[a-z0-9][a-z0-9._-]{0,62}"
Slug = Annotated[
    str,
    matching(
        SLUG_PATTERN,
        "a slug: 1 to 63 of a-z 0-9 . _ - starting with a letter or digit",
    ),
]

# Prometheus label-name syntax: labels become metric labels and Slack routing keys.
LabelName = Annotated[
    str, matching(r"[a-zA-Z_][a-zA-Z0-9_]{0,62}", "a label name like customer or team")
]


def check_http_url(value: str, *, https_off_loopback: bool) -> str:
    """An http(s) URL with a host. With `https_off_loopback`, plain http only to loopback:
    for URLs that carry credentials (Slack API, Slack webhooks). Messages never repeat
    the URL, so the check also serves secret URLs."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username is not None or "@" in parts.netloc:
        raise ValueError("must not contain user:password@")
    if https_off_loopback and parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError("http is only allowed on loopback; use https://")
    return value


def http_url(*, https_off_loopback: bool, allow_empty: bool = False) -> AfterValidator:
    """`check_http_url` as a field rule; with `allow_empty`, "" (the TOML way of saying
    "not set") passes."""

    def check(value: str) -> str:
        if allow_empty and value == "":
            return value
        return check_http_url(value, https_off_loopback=https_off_loopback)

    return AfterValidator(check)
