"""The shared readers of ServiceNow answers: redaction, Retry-After, rate-limit headers."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest

from monitor import servicenow
from monitor.model import ProbeReason, RateLimit
from monitor.probe import classify as classify_probe
from tests.core.wire import (
    ACCESS,
    EMPTY_RESULT,
    HIBERNATING,
    JSON_TYPE,
    LOGIN_PAGE,
    RATE_LIMITED,
    REFRESH,
    headers,
)

NOW = 1_800_000_000.0
HEX40 = "0123456789abcdef0123456789abcdef01234567"

# --- redact_detail ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("access_denied", "access_denied", id="plain"),
        pytest.param("", "", id="empty"),
        pytest.param(f"token {ACCESS} rejected", "token [redacted] rejected", id="86-char-token"),
        pytest.param(f"{ACCESS}{REFRESH}", "[redacted]", id="two-tokens-glued"),
        pytest.param(f"{ACCESS} and {REFRESH}", "[redacted] and [redacted]", id="two-tokens"),
        pytest.param(f"secret={HEX40}", "secret=[redacted]", id="40-hex"),
        pytest.param("a" * 40, "[redacted]", id="exactly-40"),
        pytest.param("a" * 39, "a" * 39, id="39-kept"),
        pytest.param(
            "OAuth:0123456789abcdef0123456789abcdef",
            "OAuth:0123456789abcdef0123456789abcdef",
            id="32-hex-client-id-kept",
        ),
        pytest.param("line one\nline two\r\n\tthree", "line one line two three", id="one-line"),
        pytest.param("  padded   words  ", "padded words", id="whitespace-squeezed"),
        pytest.param(f"Bearer\n{ACCESS}\n", "Bearer [redacted]", id="token-on-its-own-line"),
    ],
)
def test_redact_detail(text: str, expected: str) -> None:
    assert servicenow.redact_detail(text) == expected


@pytest.mark.parametrize("length", [199, 200, 201, 500, 10_000])
def test_redact_detail_is_at_most_200_chars(length: int) -> None:
    text = ("word " * length)[:length]
    detail = servicenow.redact_detail(text)
    assert len(detail) <= servicenow.DETAIL_MAX == 200
    if len(" ".join(text.split())) > 200:
        assert detail.endswith("…")


def test_redact_detail_redacts_before_cutting() -> None:
    text = "x " * 90 + ACCESS + " tail"
    detail = servicenow.redact_detail(text)
    assert ACCESS[:20] not in detail
    assert len(detail) <= 200


# --- retry_after --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer_headers", "expected"),
    [
        pytest.param({}, None, id="none"),
        pytest.param({"Retry-After": "30"}, 30.0, id="seconds"),
        pytest.param({"Retry-After": "0"}, 0.0, id="zero"),
        pytest.param({"Retry-After": "2.5"}, 2.5, id="fraction"),
        pytest.param({"Retry-After": " 30 "}, 30.0, id="spaces"),
        pytest.param({"Retry-After": "-1"}, None, id="negative"),
        pytest.param({"Retry-After": "later"}, None, id="word"),
        pytest.param({"Retry-After": ""}, None, id="empty"),
        pytest.param({"X-RateLimit-Reset": str(int(NOW) + 300)}, 300.0, id="reset"),
        pytest.param({"X-RateLimit-Reset": str(int(NOW))}, None, id="reset-now"),
        pytest.param({"X-RateLimit-Reset": str(int(NOW) - 300)}, None, id="reset-past"),
        pytest.param(
            {"Retry-After": "30", "X-RateLimit-Reset": str(int(NOW) + 300)}, 30.0, id="both"
        ),
        pytest.param(
            {"Retry-After": "x", "X-RateLimit-Reset": str(int(NOW) + 300)},
            300.0,
            id="bad-retry-after-then-reset",
        ),
        pytest.param({"Retry-After": "inf"}, None, id="infinite-retry-after"),
        pytest.param({"Retry-After": "nan"}, None, id="nan-retry-after"),
        pytest.param({"X-RateLimit-Reset": "inf"}, None, id="infinite-reset"),
    ],
)
def test_retry_after(answer_headers: Mapping[str, str], expected: float | None) -> None:
    value = servicenow.retry_after(answer_headers, NOW)
    assert value == expected
    assert value is None or math.isfinite(value)


# --- rate_limit ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer_headers", "expected"),
    [
        pytest.param({}, None, id="none"),
        pytest.param(
            {
                "X-RateLimit-Limit": "100",
                "X-RateLimit-Reset": "1800003600",
                "X-RateLimit-Rule": "r1",
            },
            RateLimit(100, 1_800_003_600.0, "r1"),
            id="all-three",
        ),
        pytest.param({"X-RateLimit-Limit": "100"}, RateLimit(100, None, None), id="limit-only"),
        pytest.param({"X-RateLimit-Limit": "100.0"}, RateLimit(100, None, None), id="limit-float"),
        pytest.param({"X-RateLimit-Limit": "-3"}, None, id="negative-limit"),
        pytest.param({"X-RateLimit-Limit": "many"}, None, id="word-limit"),
        pytest.param({"X-RateLimit-Remaining": "5"}, None, id="remaining-alone-ignored"),
        pytest.param({"X-RateLimit-Rule": ""}, RateLimit(None, None, ""), id="empty-rule"),
        pytest.param({"X-RateLimit-Limit": "inf"}, None, id="infinite-limit"),
        pytest.param({"X-RateLimit-Limit": "1e999"}, None, id="overflowing-limit"),
        pytest.param({"X-RateLimit-Reset": "Infinity"}, None, id="infinite-reset"),
    ],
)
def test_rate_limit(answer_headers: Mapping[str, str], expected: RateLimit | None) -> None:
    assert servicenow.rate_limit(answer_headers) == expected


@pytest.mark.parametrize(
    "answer_headers",
    [
        pytest.param(headers(X_RateLimit_Limit="inf"), id="infinite-limit"),
        pytest.param(headers(X_RateLimit_Limit="1e999"), id="overflowing-limit"),
        pytest.param(headers(Retry_After="inf"), id="infinite-retry-after"),
    ],
)
def test_probe_survives_absurd_rate_limit_headers(answer_headers: Mapping[str, str]) -> None:
    """A bad answer is a result, never an exception (probe.py's contract)."""
    result = classify_probe(
        429, answer_headers, JSON_TYPE, RATE_LIMITED, started_at=NOW, duration=0.1
    )
    assert result.reason is ProbeReason.RATE_LIMITED
    assert result.retry_after is None or math.isfinite(result.retry_after)
    ok = classify_probe(200, answer_headers, JSON_TYPE, EMPTY_RESULT, started_at=NOW, duration=0.1)
    assert ok.reason is ProbeReason.OK


# --- small readers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(HIBERNATING, True, id="page"),
        pytest.param(b"x" * 1000 + HIBERNATING, True, id="page-after-padding"),
        pytest.param(LOGIN_PAGE, False, id="login-page"),
        pytest.param(b'{"result":[]}', False, id="json"),
        pytest.param(b"", False, id="empty"),
    ],
)
def test_is_hibernating(body: bytes, expected: bool) -> None:
    assert servicenow.is_hibernating(body) is expected


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        pytest.param(b"", "text/html;charset=UTF-8", True, id="html-type"),
        pytest.param(b"", "TEXT/HTML", True, id="html-type-upper"),
        pytest.param(b"<!DOCTYPE html><html>", "application/json", True, id="doctype"),
        pytest.param(b"\n  <html><body>", "", True, id="html-tag"),
        pytest.param(b"<!doctype html>", "", True, id="doctype-lower"),
        pytest.param(b'{"result":[]}', "application/json", False, id="json"),
        pytest.param(b"<xml/>", "application/xml", False, id="xml"),
    ],
)
def test_looks_like_html(body: bytes, content_type: str, expected: bool) -> None:
    assert servicenow.looks_like_html(body, content_type) is expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b'{"a":1}', {"a": 1}, id="object"),
        pytest.param(b"[]", [], id="list"),
        pytest.param(b"", None, id="empty"),
        pytest.param(b"<html>", None, id="html"),
        pytest.param(b"\xff\xfe\x00", None, id="bad-utf8"),
    ],
)
def test_parse_json(body: bytes, expected: object) -> None:
    assert servicenow.parse_json(body) == expected


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        pytest.param({"error": {"message": "Rate limit exceeded"}}, "Rate limit exceeded", id="ok"),
        pytest.param({"error": {"message": None}}, "", id="null-message"),
        pytest.param({"error": {"detail": "x"}}, "", id="no-message"),
        pytest.param({"error": "invalid_client"}, "", id="oauth-style"),
        pytest.param({"result": []}, "", id="no-error"),
        pytest.param([], "", id="list"),
        pytest.param(None, "", id="none"),
    ],
)
def test_error_message(doc: object, expected: str) -> None:
    assert servicenow.error_message(doc) == expected
