"""Stored documents survive version skew and never echo a token in an error."""

from __future__ import annotations

import json

import pytest

from monitor.errors import StoreError
from monitor.model import Health, State
from monitor.store.codec import (
    decode_alert,
    decode_health,
    decode_tokens,
    encode_alert,
    encode_health,
    encode_tokens,
)
from tests.store.samples import bare_tokens, full_alert, full_health, full_tokens


def test_round_trips() -> None:
    assert decode_tokens(encode_tokens(full_tokens()), what="t") == full_tokens()
    assert decode_tokens(encode_tokens(bare_tokens()), what="t") == bare_tokens()
    assert decode_health(encode_health(full_health()), what="h") == full_health()
    assert decode_alert(encode_alert(full_alert()), what="a") == full_alert()


def test_health_from_a_newer_version_drops_unknown_fields() -> None:
    document = json.loads(encode_health(full_health()))
    document["added_in_a_later_release"] = 1

    assert decode_health(json.dumps(document), what="h") == full_health()


def test_health_from_an_older_version_takes_defaults() -> None:
    document = {"state": "healthy", "since": 5.0}

    assert decode_health(json.dumps(document), what="h") == Health(State.HEALTHY, 5.0)


@pytest.mark.parametrize(
    "document",
    ['{"state": "sleepy", "since": 1}', '{"since": 1}', "[]", "not json", '{"state": "healthy"}'],
)
def test_unreadable_health_is_a_store_error_naming_the_row(document: str) -> None:
    with pytest.raises(StoreError, match=r"^health of 'c1' is not a health snapshot"):
        decode_health(document, what="health of 'c1'")


def test_alert_extra_values_come_back_as_strings_and_unknown_fields_are_dropped() -> None:
    document = json.loads(encode_alert(full_alert()))
    document["extra"] = {"attempt": 3}
    document["later_field"] = True

    assert decode_alert(json.dumps(document), what="a").extra == {"attempt": "3"}


@pytest.mark.parametrize(
    "plaintext",
    [
        b'{"format": 1, "access_token": "LEAKME", "obtained_at": 1}',  # no access_expires_at
        b'{"format": 1, "access_token": "LEAKME", "access_expires_at": "x", "obtained_at": 1}',
        b'{"format": 2, "access_token": "LEAKME"}',
        b'["LEAKME"]',
        b"LEAKME",
    ],
    ids=["missing-field", "bad-number", "unknown-format", "not-an-object", "not-json"],
)
def test_unreadable_token_plaintext_is_reported_without_quoting_it(plaintext: bytes) -> None:
    with pytest.raises(StoreError, match=r"^token of connection 'c1' decrypted but is not") as info:
        decode_tokens(plaintext, what="token of connection 'c1'")

    assert "LEAKME" not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or "LEAKME" not in str(info.value.__context__)


def test_token_plaintext_is_compact_json_of_every_field() -> None:
    document = json.loads(encode_tokens(full_tokens("x")))

    assert document == {
        "format": 1,
        "access_token": "ACCESS-x-4f9c2d7e1b",
        "access_expires_at": full_tokens().access_expires_at,
        "obtained_at": full_tokens().obtained_at,
        "refresh_token": "REFRESH-x-8a3e5b0c6d",
        "refresh_issued_at": full_tokens().refresh_issued_at,
        "refresh_expires_at": full_tokens().refresh_expires_at,
        "scope": "useraccount snc_platform_rest_api_access",
        "grant": "authorization_code",
    }
