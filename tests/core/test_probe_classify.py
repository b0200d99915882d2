"""`probe.classify` against the Table API answers in servicenow.md, and the probe URL."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl, urlsplit

import pytest

from monitor.model import ProbeReason, ProbeResult, RateLimit
from monitor.probe import ProbeTarget, classify
from tests.core.wire import (
    ACCESS,
    ACL_DENIED,
    BAD_GATEWAY,
    CANCELLED_TRANSACTION,
    EMPTY_RESULT,
    HIBERNATING,
    HIBERNATING_H1_ONLY,
    HIBERNATING_TITLE_ONLY,
    HTML_TYPE,
    INVALID_TABLE,
    JSON_TYPE,
    LOGIN_PAGE,
    MAINTENANCE,
    NO_RECORD,
    NOT_AUTHENTICATED,
    NOT_AUTHENTICATED_NEW,
    ONE_RECORD,
    QUERY_DENIED,
    RATE_LIMITED,
    SEMAPHORE,
    SERVER_ERROR,
    SINGLE_RECORD,
    headers,
)

STARTED = 1_800_000_000.0
DURATION = 0.183


def answer(
    status: int,
    body: bytes,
    content_type: str = JSON_TYPE,
    answer_headers: Mapping[str, str] | None = None,
) -> ProbeResult:
    return classify(
        status,
        answer_headers if answer_headers is not None else headers(),
        content_type,
        body,
        started_at=STARTED,
        duration=DURATION,
    )


R = ProbeReason
CASES = [
    # status, body, content type, reason, detail
    pytest.param(200, EMPTY_RESULT, JSON_TYPE, R.OK, "", id="200-empty-result"),
    pytest.param(200, ONE_RECORD, JSON_TYPE, R.OK, "", id="200-one-record"),
    pytest.param(200, SINGLE_RECORD, JSON_TYPE, R.OK, "", id="200-single-record-object"),
    pytest.param(200, EMPTY_RESULT, "application/json", R.OK, "", id="200-plain-json-type"),
    pytest.param(200, EMPTY_RESULT, "", R.OK, "", id="200-no-content-type"),
    pytest.param(401, NOT_AUTHENTICATED, JSON_TYPE, R.AUTH_REJECTED, "User Not Authenticated",
                 id="401-not-authenticated"),
    pytest.param(401, NOT_AUTHENTICATED_NEW, JSON_TYPE, R.AUTH_REJECTED,
                 "User is not authenticated", id="401-newer-wording"),
    pytest.param(401, b"", "", R.AUTH_REJECTED, "HTTP 401", id="401-empty"),
    pytest.param(401, LOGIN_PAGE, HTML_TYPE, R.AUTH_REJECTED, "HTTP 401", id="401-html"),
    pytest.param(403, ACL_DENIED, JSON_TYPE, R.FORBIDDEN, "User Not Authorized",
                 id="403-acl-denied"),
    pytest.param(403, QUERY_DENIED, JSON_TYPE, R.FORBIDDEN,
                 "Insufficient rights to query records", id="403-query-denied"),
    pytest.param(403, b"", "", R.FORBIDDEN, "HTTP 403", id="403-empty"),
    pytest.param(400, INVALID_TABLE, JSON_TYPE, R.INVALID_TABLE,
                 "Invalid table not_a_real_class", id="400-invalid-table"),
    pytest.param(400, b'{"error":{"message":"Requested URI does not represent any resource","detail":null},"status":"failure"}',  # noqa: E501
                 JSON_TYPE, R.BAD_RESPONSE, "Requested URI does not represent any resource",
                 id="400-other"),
    pytest.param(404, NO_RECORD, JSON_TYPE, R.OK, "", id="404-no-record-v1"),
    pytest.param(404, b"<html><body>Not Found</body></html>", HTML_TYPE, R.BAD_RESPONSE,
                 "HTTP 404", id="404-html"),
    pytest.param(429, SEMAPHORE, HTML_TYPE, R.RATE_LIMITED, "HTTP 429", id="429-semaphore-html"),
    pytest.param(429, b"Too busy", "text/plain", R.RATE_LIMITED, "HTTP 429",
                 id="429-semaphore-text"),
    pytest.param(429, RATE_LIMITED, JSON_TYPE, R.RATE_LIMITED, "Rate limit exceeded",
                 id="429-rate-limit-rule"),
    pytest.param(500, SERVER_ERROR, JSON_TYPE, R.SERVER_ERROR, "Something broke",
                 id="500-envelope"),
    pytest.param(500, b"", "", R.SERVER_ERROR, "HTTP 500", id="500-empty"),
    pytest.param(500, LOGIN_PAGE, HTML_TYPE, R.SERVER_ERROR, "HTTP 500", id="500-html"),
    pytest.param(503, MAINTENANCE, HTML_TYPE, R.MAINTENANCE, "HTTP 503 with an HTML page",
                 id="503-maintenance-html"),
    pytest.param(503, MAINTENANCE, "", R.MAINTENANCE, "HTTP 503 with an HTML page",
                 id="503-html-no-content-type"),
    pytest.param(502, BAD_GATEWAY, HTML_TYPE, R.MAINTENANCE, "HTTP 502 with an HTML page",
                 id="502-bad-gateway-html"),
    pytest.param(504, BAD_GATEWAY, HTML_TYPE, R.MAINTENANCE, "HTTP 504 with an HTML page",
                 id="504-html"),
    pytest.param(503, b"", "", R.SERVER_ERROR, "HTTP 503", id="503-empty"),
    pytest.param(503, SERVER_ERROR, JSON_TYPE, R.SERVER_ERROR, "Something broke",
                 id="503-json-envelope"),
    pytest.param(200, HIBERNATING, HTML_TYPE, R.HIBERNATING, "instance is hibernating",
                 id="200-hibernating"),
    pytest.param(200, HIBERNATING, JSON_TYPE, R.HIBERNATING, "instance is hibernating",
                 id="200-hibernating-labelled-json"),
    pytest.param(200, HIBERNATING_TITLE_ONLY, HTML_TYPE, R.HIBERNATING,
                 "instance is hibernating", id="200-hibernating-title-marker"),
    pytest.param(200, HIBERNATING_H1_ONLY, HTML_TYPE, R.HIBERNATING, "instance is hibernating",
                 id="200-hibernating-h1-marker"),
    pytest.param(503, HIBERNATING, HTML_TYPE, R.HIBERNATING, "instance is hibernating",
                 id="503-hibernating"),
    pytest.param(200, CANCELLED_TRANSACTION, JSON_TYPE, R.SERVER_ERROR,
                 "Transaction cancelled: maximum execution time exceeded",
                 id="200-partial-result-transaction-cancelled"),
    pytest.param(200, b'{"error":"x"}', JSON_TYPE, R.SERVER_ERROR, "error in a 200 answer",
                 id="200-error-without-message"),
    pytest.param(200, LOGIN_PAGE, HTML_TYPE, R.BAD_RESPONSE, "HTTP 200 with an HTML page",
                 id="200-html-login-page"),
    pytest.param(200, LOGIN_PAGE, JSON_TYPE, R.BAD_RESPONSE, "HTTP 200 with an HTML page",
                 id="200-html-labelled-json"),
    pytest.param(200, b"\x1f\x8b\x08\x00garbage", JSON_TYPE, R.BAD_RESPONSE,
                 "HTTP 200 with non-JSON", id="200-garbage"),
    pytest.param(200, b"", JSON_TYPE, R.BAD_RESPONSE, "HTTP 200 with non-JSON", id="200-empty"),
    pytest.param(200, b'{"result":', JSON_TYPE, R.BAD_RESPONSE, "HTTP 200 with non-JSON",
                 id="200-truncated-json"),
    pytest.param(200, b"[]", JSON_TYPE, R.BAD_RESPONSE, "HTTP 200 with non-JSON",
                 id="200-json-list"),
    pytest.param(200, b"{}", JSON_TYPE, R.BAD_RESPONSE, "HTTP 200 without result",
                 id="200-json-without-result"),
    pytest.param(200, b'{"records":[]}', JSON_TYPE, R.BAD_RESPONSE, "HTTP 200 without result",
                 id="200-json-other-key"),
    pytest.param(200, b'{"result":null}', JSON_TYPE, R.BAD_RESPONSE, "HTTP 200 without result",
                 id="200-null-result"),
    pytest.param(200, b'{"result":"ok"}', JSON_TYPE, R.BAD_RESPONSE, "HTTP 200 without result",
                 id="200-string-result"),
    pytest.param(302, b"", "", R.BAD_RESPONSE, "HTTP 302", id="302-redirect"),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "content_type", "reason", "detail"), CASES)
def test_classify(
    status: int, body: bytes, content_type: str, reason: ProbeReason, detail: str
) -> None:
    result = answer(status, body, content_type)
    assert result.reason is reason
    assert result.detail == detail
    assert result.ok is (reason is ProbeReason.OK)
    assert (result.status, result.started_at, result.duration) == (status, STARTED, DURATION)
    assert result.retry_after is None
    assert result.rate_limit is None


@pytest.mark.parametrize(
    "body",
    [HIBERNATING, HIBERNATING_TITLE_ONLY, HIBERNATING_H1_ONLY, LOGIN_PAGE, b"", b"<html/>"],
    ids=["hibernating", "title-marker", "h1-marker", "login-page", "empty", "tiny-html"],
)
@pytest.mark.parametrize("content_type", [HTML_TYPE, JSON_TYPE, ""], ids=["html", "json", "none"])
def test_a_200_that_is_not_json_is_never_ok(body: bytes, content_type: str) -> None:
    assert not answer(200, body, content_type).ok


# --- rate limits and Retry-After ----------------------------------------------------------

RULE = "0f1b2c3d4e5f60718293a4b5c6d7e8f9"
RESET = str(int(STARTED) + 1800)


@pytest.mark.parametrize(
    ("status", "body", "answer_headers", "retry_after"),
    [
        pytest.param(429, RATE_LIMITED, headers(Retry_After="120"), 120.0, id="retry-after"),
        pytest.param(429, RATE_LIMITED, headers(Retry_After="0"), 0.0, id="retry-after-0"),
        pytest.param(429, RATE_LIMITED, headers(Retry_After=" 45 "), 45.0, id="retry-after-spaces"),
        pytest.param(
            429,
            RATE_LIMITED,
            headers(Retry_After="60", X_RateLimit_Reset=RESET),
            60.0,
            id="retry-after-wins-over-reset",
        ),
        pytest.param(
            429, RATE_LIMITED, headers(X_RateLimit_Reset=RESET), 1800.0, id="reset-minus-started"
        ),
        pytest.param(
            429,
            RATE_LIMITED,
            headers(X_RateLimit_Reset=str(int(STARTED) - 5)),
            None,
            id="reset-in-the-past",
        ),
        pytest.param(
            429,
            RATE_LIMITED,
            headers(Retry_After="soon", X_RateLimit_Reset=RESET),
            1800.0,
            id="bad-retry-after-falls-back-to-reset",
        ),
        pytest.param(429, RATE_LIMITED, headers(Retry_After="-5"), None, id="negative-retry-after"),
        pytest.param(429, SEMAPHORE, headers(Retry_After="5"), 5.0, id="semaphore-retry-after"),
        pytest.param(429, SEMAPHORE, headers(), None, id="semaphore-no-headers"),
        pytest.param(
            429, RATE_LIMITED, headers(retry_after="30"), 30.0, id="lower-case-header-name"
        ),
    ],
)
def test_rate_limited_retry_after(
    status: int, body: bytes, answer_headers: Mapping[str, str], retry_after: float | None
) -> None:
    content_type = JSON_TYPE if body is RATE_LIMITED else HTML_TYPE
    result = answer(status, body, content_type, answer_headers)
    assert result.reason is ProbeReason.RATE_LIMITED
    assert result.retry_after == retry_after


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(200, EMPTY_RESULT, id="200"),
        pytest.param(429, RATE_LIMITED, id="429"),
        pytest.param(401, NOT_AUTHENTICATED, id="401"),
    ],
)
def test_rate_limit_headers(status: int, body: bytes) -> None:
    limits = headers(X_RateLimit_Limit="100", X_RateLimit_Reset=RESET, X_RateLimit_Rule=RULE)
    result = answer(status, body, JSON_TYPE, limits)
    assert result.rate_limit == RateLimit(limit=100, reset_at=float(RESET), rule=RULE)


@pytest.mark.parametrize(
    ("answer_headers", "expected"),
    [
        pytest.param(headers(), None, id="none"),
        pytest.param(headers(X_RateLimit_Limit="100"), RateLimit(100, None, None), id="limit"),
        pytest.param(
            headers(X_RateLimit_Reset=RESET), RateLimit(None, float(RESET), None), id="reset"
        ),
        pytest.param(headers(X_RateLimit_Rule=RULE), RateLimit(None, None, RULE), id="rule"),
        pytest.param(
            headers(X_RateLimit_Limit="lots", X_RateLimit_Rule=RULE),
            RateLimit(None, None, RULE),
            id="bad-limit",
        ),
        pytest.param(
            headers(X_RateLimit_Limit="100", X_RateLimit_Remaining="7"),
            RateLimit(100, None, None),
            id="remaining-ignored",
        ),
    ],
)
def test_rate_limit_parsing(answer_headers: Mapping[str, str], expected: RateLimit | None) -> None:
    assert answer(200, EMPTY_RESULT, JSON_TYPE, answer_headers).rate_limit == expected


def test_rate_limit_has_no_remaining_field() -> None:
    assert not hasattr(RateLimit(1, 2.0, "r"), "remaining")


# --- details ------------------------------------------------------------------------------


def test_details_are_redacted_one_line_and_short() -> None:
    body = (
        f'{{"error":{{"message":"token {ACCESS} rejected\\nsecond line {"x" * 300}",'
        f'"detail":null}},"status":"failure"}}'
    ).encode()
    result = answer(500, body)
    assert result.reason is ProbeReason.SERVER_ERROR
    assert ACCESS not in result.detail
    assert "[redacted]" in result.detail
    assert "\n" not in result.detail
    assert len(result.detail) <= 200


# --- the probe URL ------------------------------------------------------------------------

BASE = "https://dev284244.service-now.com"
DOCUMENTED = (
    "https://dev284244.service-now.com/api/now/table/sys_user?sysparm_limit=1"
    "&sysparm_fields=sys_id&sysparm_no_count=true&sysparm_suppress_pagination_header=true"
)


def test_default_url_is_the_documented_probe() -> None:
    assert ProbeTarget(BASE).url() == DOCUMENTED


@pytest.mark.parametrize(
    ("target", "path", "params"),
    [
        pytest.param(ProbeTarget(BASE), "/api/now/table/sys_user", {}, id="default"),
        pytest.param(
            ProbeTarget(BASE, table="incident"), "/api/now/table/incident", {}, id="table"
        ),
        pytest.param(
            ProbeTarget(BASE, table="x_acme/odd table?"),
            "/api/now/table/x_acme%2Fodd%20table%3F",
            {},
            id="table-url-quoted",
        ),
        pytest.param(
            ProbeTarget(BASE, query="active=true^nameSTARTSWITHa&b"),
            "/api/now/table/sys_user",
            {"sysparm_query": "active=true^nameSTARTSWITHa&b"},
            id="query",
        ),
        pytest.param(
            ProbeTarget(BASE, fields="sys_id,name"),
            "/api/now/table/sys_user",
            {"sysparm_fields": "sys_id,name"},
            id="fields",
        ),
    ],
)
def test_url(target: ProbeTarget, path: str, params: dict[str, str]) -> None:
    url = urlsplit(target.url())
    assert (url.scheme, url.netloc) == ("https", "dev284244.service-now.com")
    assert url.path == path
    expected = {
        "sysparm_limit": "1",
        "sysparm_fields": "sys_id",
        "sysparm_no_count": "true",
        "sysparm_suppress_pagination_header": "true",
    }
    expected.update(params)
    pairs = parse_qsl(url.query, keep_blank_values=True)
    assert dict(pairs) == expected
    assert len(pairs) == len(expected)  # each once; no sysparm_query unless set
