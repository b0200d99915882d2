"""Serialisation of stored values: token sets, health snapshots and alert records as JSON.

This is the one place where a token's `Secret` values are revealed for storage; the
bytes `encode_tokens` returns go straight to `crypto.Keyring.encrypt`. Decoders ignore
fields they do not know, so a database written by a newer snowmon still loads after a
rollback, and fall back to the dataclass defaults for fields an older one did not write.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import fields
from typing import Any, Final

from monitor.errors import StoreError
from monitor.model import AlertRecord, Grant, Health, State, TokenSet
from monitor.secret import Secret

_TOKENS_FORMAT: Final = 1
_HEALTH_NAMES: Final = tuple(f.name for f in fields(Health))
_HEALTH_FIELDS: Final = frozenset(_HEALTH_NAMES)
_STATES: Final = {state.value: state for state in State}
_ALERT_NAMES: Final = tuple(f.name for f in fields(AlertRecord))
_ALERT_FIELDS: Final = frozenset(_ALERT_NAMES)

# Compact separators: 100,000 rows of health are rewritten all day long. NaN and infinity
# are allowed because only snowmon reads these documents and json.loads accepts them.
_dumps = json.JSONEncoder(separators=(",", ":")).encode


def encode_tokens(tokens: TokenSet) -> bytes:
    refresh = tokens.refresh_token
    return _dumps(
        {
            "format": _TOKENS_FORMAT,
            "access_token": tokens.access_token.reveal(),
            "access_expires_at": tokens.access_expires_at,
            "obtained_at": tokens.obtained_at,
            "refresh_token": None if refresh is None else refresh.reveal(),
            "refresh_issued_at": tokens.refresh_issued_at,
            "refresh_expires_at": tokens.refresh_expires_at,
            "scope": tokens.scope,
            "grant": tokens.grant.value,
        }
    ).encode("utf-8")


def decode_tokens(data: bytes, *, what: str) -> TokenSet:
    try:
        raw = json.loads(data)
        fmt = raw.get("format")
    except (ValueError, AttributeError):
        fmt = None
    if fmt != _TOKENS_FORMAT:
        raise StoreError(f"{what} decrypted but is not a token set this snowmon can read")
    try:
        refresh = raw.get("refresh_token")
        return TokenSet(
            access_token=Secret(raw["access_token"]),
            access_expires_at=float(raw["access_expires_at"]),
            obtained_at=float(raw["obtained_at"]),
            refresh_token=None if refresh is None else Secret(refresh),
            refresh_issued_at=raw.get("refresh_issued_at"),
            refresh_expires_at=raw.get("refresh_expires_at"),
            scope=raw.get("scope", ""),
            grant=Grant(raw.get("grant", Grant.PASSWORD.value)),
        )
    except (ValueError, KeyError, TypeError) as exc:
        # The message must not quote the plaintext: it holds the tokens.
        raise StoreError(
            f"{what} decrypted but is not a token set ({type(exc).__name__})"
        ) from None


def encode_health(health: Health) -> str:
    # StrEnum members serialise as their value; every other field is a JSON scalar.
    return _dumps({name: getattr(health, name) for name in _HEALTH_NAMES})


def decode_health(text: str | bytes, *, what: str) -> Health:
    # Hot at start-up (100,000 rows): try the document as it is, and only filter fields
    # when it carries one this version does not know.
    try:
        raw: dict[str, Any] = json.loads(text)
        raw["state"] = _STATES[raw["state"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{what} is not a health snapshot: {exc!r}") from None
    try:
        return Health(**raw)
    except TypeError:
        known = {k: v for k, v in raw.items() if k in _HEALTH_FIELDS}
    try:
        return Health(**known)
    except TypeError as exc:
        raise StoreError(f"{what} is not a health snapshot: {exc}") from None


def encode_alert(record: AlertRecord) -> str:
    return _dumps({name: getattr(record, name) for name in _ALERT_NAMES})


def decode_alert_rows(rows: Iterable[Any]) -> list[AlertRecord]:
    """Rows of (connection id, alert, stored document), as both stores select them."""
    return [decode_alert(doc, what=f"alert {a!r} of {c!r}") for c, a, doc in rows]


def decode_alert(text: str | bytes, *, what: str) -> AlertRecord:
    try:
        raw: dict[str, Any] = json.loads(text)
        known = {k: v for k, v in raw.items() if k in _ALERT_FIELDS}
        known["extra"] = {str(k): str(v) for k, v in known.get("extra", {}).items()}
        return AlertRecord(**known)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreError(f"{what} is not an alert record: {exc}") from None
