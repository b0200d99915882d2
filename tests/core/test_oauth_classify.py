"""`oauth.classify`: every documented token-endpoint answer, read into a `TokenResult`."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from monitor.model import Grant, TokenFailure, TokenResult, TokenSet
from monitor.oauth import classify
from monitor.secret import Secret
from tests.core.wire import (
    ACCESS,
    ACCESS_DENIED,
    BAD_GATEWAY,
    HIBERNATING,
    HIBERNATING_H1_ONLY,
    HIBERNATING_TITLE_ONLY,
    HTML_TYPE,
    JSON_TYPE,
    LOGIN_PAGE,
    MAINTENANCE,
    NEW_ACCESS,
    NEW_REFRESH,
    NO_INTEGRATION_USER,
    REFRESH,
    SEMAPHORE,
    headers,
    token,
    token_body,
)

SENT = 1_800_000_000.0
LIFESPAN = 8_640_000.0
ISSUED = SENT - 86_400.0  # the refresh token was issued a day ago


def answer(
    status: int,
    body: bytes,
    *,
    grant: Grant = Grant.PASSWORD,
    content_type: str = JSON_TYPE,
    answer_headers: Mapping[str, str] | None = None,
    previous: TokenSet | None = None,
) -> TokenResult:
    return classify(
        grant,
        status,
        answer_headers if answer_headers is not None else headers(),
        content_type,
        body,
        sent_at=SENT,
        previous=previous,
        refresh_lifespan=LIFESPAN,
    )


def held(refresh: str | None = REFRESH, grant: Grant = Grant.PASSWORD) -> TokenSet:
    """What the daemon holds before a refresh: a token set obtained a day ago."""
    return TokenSet(
        access_token=Secret(token("yesterday's access")),
        access_expires_at=ISSUED + 1799,
        obtained_at=ISSUED,
        refresh_token=Secret(refresh) if refresh is not None else None,
        refresh_issued_at=ISSUED if refresh is not None else None,
        refresh_expires_at=ISSUED + LIFESPAN if refresh is not None else None,
        scope="useraccount",
        grant=grant,
    )


# --- success ------------------------------------------------------------------------------


def test_password_grant_success() -> None:
    result = answer(200, token_body())
    assert result.ok
    assert (result.failure, result.status, result.detail, result.retry_after) == (
        None,
        200,
        "",
        None,
    )
    assert (result.grant, result.started_at) == (Grant.PASSWORD, SENT)
    tokens = result.tokens
    assert tokens is not None
    assert tokens.access_token.reveal() == ACCESS
    assert isinstance(tokens.access_token, Secret)
    assert tokens.access_expires_at == SENT + 1799
    assert tokens.obtained_at == SENT
    assert tokens.refresh_token is not None
    assert tokens.refresh_token.reveal() == REFRESH
    assert tokens.refresh_issued_at == SENT
    assert tokens.refresh_expires_at == SENT + LIFESPAN
    assert tokens.scope == "useraccount"
    assert tokens.grant is Grant.PASSWORD


@pytest.mark.parametrize(
    "grant", [Grant.PASSWORD, Grant.AUTHORIZATION_CODE, Grant.CLIENT_CREDENTIALS], ids=str
)
def test_a_new_grant_issues_a_fresh_refresh_token(grant: Grant) -> None:
    result = answer(200, token_body(NEW_ACCESS, NEW_REFRESH), grant=grant, previous=held())
    tokens = result.tokens
    assert tokens is not None
    assert tokens.refresh_token == Secret(NEW_REFRESH)
    assert (tokens.refresh_issued_at, tokens.refresh_expires_at) == (SENT, SENT + LIFESPAN)
    assert tokens.grant is grant


def test_refresh_with_the_same_refresh_token_never_extends_its_life() -> None:
    previous = held()
    result = answer(
        200, token_body(NEW_ACCESS, REFRESH), grant=Grant.REFRESH_TOKEN, previous=previous
    )
    tokens = result.tokens
    assert tokens is not None
    assert tokens.access_token.reveal() == NEW_ACCESS
    assert tokens.access_expires_at == SENT + 1799
    assert tokens.obtained_at == SENT
    assert tokens.refresh_token == previous.refresh_token
    assert tokens.refresh_issued_at == ISSUED
    assert tokens.refresh_expires_at == ISSUED + LIFESPAN
    assert tokens.grant is Grant.PASSWORD  # the grant that minted the credential
    assert result.grant is Grant.REFRESH_TOKEN


def test_refresh_with_a_rotated_refresh_token_starts_its_life() -> None:
    result = answer(
        200, token_body(NEW_ACCESS, NEW_REFRESH), grant=Grant.REFRESH_TOKEN, previous=held()
    )
    tokens = result.tokens
    assert tokens is not None
    assert tokens.refresh_token == Secret(NEW_REFRESH)
    assert (tokens.refresh_issued_at, tokens.refresh_expires_at) == (SENT, SENT + LIFESPAN)


def test_refresh_answer_without_refresh_token_keeps_the_previous_one() -> None:
    previous = held()
    result = answer(200, token_body(NEW_ACCESS, None), grant=Grant.REFRESH_TOKEN, previous=previous)
    tokens = result.tokens
    assert tokens is not None
    assert tokens.refresh_token == previous.refresh_token
    assert (tokens.refresh_issued_at, tokens.refresh_expires_at) == (ISSUED, ISSUED + LIFESPAN)


def test_client_credentials_without_refresh_token() -> None:
    result = answer(200, token_body(ACCESS, None), grant=Grant.CLIENT_CREDENTIALS)
    tokens = result.tokens
    assert tokens is not None
    assert tokens.refresh_token is None
    assert tokens.refresh_issued_at is None
    assert tokens.refresh_expires_at is None
    assert tokens.grant is Grant.CLIENT_CREDENTIALS
    assert tokens.access_expires_at == SENT + 1799


@pytest.mark.parametrize(
    ("expires_in", "life"),
    [
        pytest.param("1799", 1799.0, id="int"),
        pytest.param('"1799"', 1799.0, id="string-digits"),
        pytest.param('" 1799 "', 1799.0, id="string-digits-spaces"),
        pytest.param("1799.5", 1799.5, id="float"),
        pytest.param("28800", 28800.0, id="8h"),
        pytest.param("1", 1.0, id="one-second"),
    ],
)
def test_expires_in_accepted(expires_in: str, life: float) -> None:
    """`expires_in` is a raw JSON value here."""
    body = f'{{"access_token":"{ACCESS}","token_type":"Bearer","expires_in":{expires_in}}}'
    result = answer(200, body.encode())
    assert result.tokens is not None, result.detail
    assert result.tokens.access_expires_at == SENT + life


@pytest.mark.parametrize("token_type", ["Bearer", "bearer", "BEARER"])
def test_token_type_bearer_any_case(token_type: str) -> None:
    body = f'{{"access_token":"{ACCESS}","token_type":"{token_type}","expires_in":1799}}'
    assert answer(200, body.encode()).ok


def test_scope_is_kept() -> None:
    body = f'{{"access_token":"{ACCESS}","scope":"useraccount snc_read","token_type":"Bearer","expires_in":1799}}'  # noqa: E501
    tokens = answer(200, body.encode()).tokens
    assert tokens is not None
    assert tokens.scope == "useraccount snc_read"


# --- failures -----------------------------------------------------------------------------

RETRY_30 = headers(Retry_After="30")
RESET_IN_120 = headers(X_RateLimit_Reset=str(int(SENT) + 120))

FAILURES = [
    # status, body, content type, headers, failure, retry_after
    pytest.param(401, ACCESS_DENIED, JSON_TYPE, None, TokenFailure.REJECTED, None,
                 id="401-access-denied"),
    pytest.param(400, ACCESS_DENIED, JSON_TYPE, None, TokenFailure.REJECTED, None,
                 id="400-access-denied"),
    pytest.param(400, NO_INTEGRATION_USER, JSON_TYPE, None, TokenFailure.GRANT_NOT_ALLOWED, None,
                 id="400-unauthorized-client"),
    pytest.param(400, b'{"error":"unsupported_grant_type"}', JSON_TYPE, None,
                 TokenFailure.GRANT_NOT_ALLOWED, None, id="400-unsupported-grant-type"),
    pytest.param(401, b'{"error":"invalid_client","error_description":"Client authentication failed"}',  # noqa: E501
                 JSON_TYPE, None, TokenFailure.INVALID_CLIENT, None, id="401-invalid-client"),
    pytest.param(400, b'{"error":"invalid_client"}', JSON_TYPE, None,
                 TokenFailure.INVALID_CLIENT, None, id="400-invalid-client"),
    pytest.param(400, b'{"error":"invalid_grant","error_description":"Invalid refresh token"}',
                 JSON_TYPE, None, TokenFailure.REJECTED, None, id="400-invalid-grant"),
    pytest.param(401, b'{"error":{"message":"User Not Authenticated","detail":"Required to provide Auth information"},"status":"failure"}',  # noqa: E501
                 JSON_TYPE, None, TokenFailure.REJECTED, None, id="401-rest-envelope"),
    pytest.param(429, b'{"error":{"message":"Rate limit exceeded","detail":null},"status":"failure"}',  # noqa: E501
                 JSON_TYPE, RETRY_30, TokenFailure.TRANSIENT, 30.0, id="429-retry-after"),
    pytest.param(429, SEMAPHORE, HTML_TYPE, RETRY_30, TokenFailure.TRANSIENT, 30.0,
                 id="429-semaphore-html"),
    pytest.param(429, b"", JSON_TYPE, RESET_IN_120, TokenFailure.TRANSIENT, 120.0,
                 id="429-ratelimit-reset"),
    pytest.param(429, b"", JSON_TYPE, None, TokenFailure.TRANSIENT, None, id="429-no-headers"),
    pytest.param(500, b'{"error":{"message":"boom","detail":"boom"},"status":"failure"}',
                 JSON_TYPE, None, TokenFailure.TRANSIENT, None, id="500-json"),
    pytest.param(500, ACCESS_DENIED, JSON_TYPE, None, TokenFailure.TRANSIENT, None,
                 id="500-access-denied-body"),
    pytest.param(502, BAD_GATEWAY, HTML_TYPE, None, TokenFailure.TRANSIENT, None,
                 id="502-html"),
    pytest.param(503, MAINTENANCE, HTML_TYPE, RETRY_30, TokenFailure.TRANSIENT, 30.0,
                 id="503-maintenance-retry-after"),
    pytest.param(503, b"", "", None, TokenFailure.TRANSIENT, None, id="503-empty"),
    pytest.param(504, b"", "", None, TokenFailure.TRANSIENT, None, id="504-empty"),
    pytest.param(200, HIBERNATING, HTML_TYPE, None, TokenFailure.HIBERNATING, None,
                 id="200-hibernating"),
    pytest.param(200, HIBERNATING, "", None, TokenFailure.HIBERNATING, None,
                 id="200-hibernating-no-content-type"),
    pytest.param(200, HIBERNATING_TITLE_ONLY, HTML_TYPE, None, TokenFailure.HIBERNATING, None,
                 id="200-hibernating-title-marker"),
    pytest.param(200, HIBERNATING_H1_ONLY, HTML_TYPE, None, TokenFailure.HIBERNATING, None,
                 id="200-hibernating-h1-marker"),
    pytest.param(200, LOGIN_PAGE, HTML_TYPE, None, TokenFailure.MALFORMED, None,
                 id="200-html-without-markers"),
    pytest.param(200, LOGIN_PAGE, JSON_TYPE, None, TokenFailure.MALFORMED, None,
                 id="200-html-labelled-json"),
    pytest.param(200, b"", JSON_TYPE, None, TokenFailure.MALFORMED, None, id="200-empty"),
    pytest.param(200, b"garbage\x00\xff", "", None, TokenFailure.MALFORMED, None,
                 id="200-garbage"),
    pytest.param(200, b"[]", JSON_TYPE, None, TokenFailure.MALFORMED, None, id="200-json-list"),
    pytest.param(200, b'"token"', JSON_TYPE, None, TokenFailure.MALFORMED, None,
                 id="200-json-string"),
    pytest.param(200, b"{}", JSON_TYPE, None, TokenFailure.MALFORMED, None, id="200-json-empty"),
    pytest.param(200, b'{"result":[]}', JSON_TYPE, None, TokenFailure.MALFORMED, None,
                 id="200-table-api-answer"),
    pytest.param(200, ACCESS_DENIED, JSON_TYPE, None, TokenFailure.MALFORMED, None,
                 id="200-with-error"),
    pytest.param(403, b'{"error":"forbidden"}', JSON_TYPE, None, TokenFailure.MALFORMED, None,
                 id="403-unknown-error"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "body", "content_type", "answer_headers", "failure", "retry_after"), FAILURES
)
@pytest.mark.parametrize("grant", [Grant.PASSWORD, Grant.REFRESH_TOKEN], ids=str)
def test_failures(
    status: int,
    body: bytes,
    content_type: str,
    answer_headers: Mapping[str, str] | None,
    failure: TokenFailure,
    retry_after: float | None,
    grant: Grant,
) -> None:
    result = answer(
        status,
        body,
        grant=grant,
        content_type=content_type,
        answer_headers=answer_headers,
        previous=held() if grant is Grant.REFRESH_TOKEN else None,
    )
    assert result.failure is failure, result.detail
    assert not result.ok
    assert result.tokens is None
    assert result.status == status
    assert result.grant is grant
    assert result.started_at == SENT
    assert result.retry_after == (pytest.approx(retry_after) if retry_after is not None else None)
    assert result.detail
    assert "\n" not in result.detail
    assert len(result.detail) <= 200


def test_rejected_detail_names_the_error() -> None:
    result = answer(401, ACCESS_DENIED)
    assert "access_denied" in result.detail
    result = answer(400, NO_INTEGRATION_USER, grant=Grant.CLIENT_CREDENTIALS)
    assert result.detail.startswith("unauthorized_client")


def test_hibernation_wins_over_any_status() -> None:
    assert answer(503, HIBERNATING, content_type=HTML_TYPE).failure is TokenFailure.HIBERNATING


def _body(**fields: str) -> bytes:
    """A 200 token answer with raw JSON values for some fields (None drops the key)."""
    values = {
        "access_token": f'"{ACCESS}"',
        "refresh_token": f'"{REFRESH}"',
        "scope": '"useraccount"',
        "token_type": '"Bearer"',
        "expires_in": "1799",
    }
    values.update(fields)
    inner = ",".join(f'"{k}":{v}' for k, v in values.items() if v != "DROP")
    return ("{" + inner + "}").encode()


MALFORMED_200 = [
    pytest.param(_body(access_token="DROP"), id="no-access-token"),
    pytest.param(_body(access_token='""'), id="empty-access-token"),
    pytest.param(_body(access_token="null"), id="null-access-token"),
    pytest.param(_body(access_token="12345"), id="numeric-access-token"),
    pytest.param(_body(expires_in="DROP"), id="expires-in-missing"),
    pytest.param(_body(expires_in="null"), id="expires-in-null"),
    pytest.param(_body(expires_in="-1"), id="expires-in-negative"),
    pytest.param(_body(expires_in="-1799"), id="expires-in-very-negative"),
    pytest.param(_body(expires_in="0"), id="expires-in-zero"),
    pytest.param(_body(expires_in='"-5"'), id="expires-in-negative-string"),
    pytest.param(_body(expires_in='"abc"'), id="expires-in-word"),
    pytest.param(_body(expires_in='""'), id="expires-in-empty-string"),
    pytest.param(_body(expires_in='"1799.5"'), id="expires-in-decimal-string"),
    pytest.param(_body(expires_in="true"), id="expires-in-bool"),
    pytest.param(_body(expires_in="[1799]"), id="expires-in-list"),
    pytest.param(_body(expires_in="NaN"), id="expires-in-nan"),
    pytest.param(_body(expires_in="Infinity"), id="expires-in-infinity"),
    pytest.param(_body(expires_in='"\u00b2"'), id="expires-in-superscript-digit"),
    pytest.param(_body(expires_in="1" + "0" * 400), id="expires-in-beyond-float"),
    pytest.param(_body(expires_in='"1' + "0" * 400 + '"'), id="expires-in-digits-beyond-float"),
    pytest.param(_body(token_type='"MAC"'), id="token-type-mac"),
    pytest.param(_body(token_type='"Basic"'), id="token-type-basic"),
    pytest.param(_body(token_type="5"), id="token-type-number"),
    pytest.param(_body(token_type="null"), id="token-type-null"),
]


@pytest.mark.parametrize("body", MALFORMED_200)
def test_malformed_success_answers(body: bytes) -> None:
    result = answer(200, body)
    assert result.failure is TokenFailure.MALFORMED, result
    assert result.tokens is None
    assert result.status == 200
    assert result.detail


# --- redaction ----------------------------------------------------------------------------

LEAKY = [
    pytest.param(
        400,
        f'{{"error":"invalid_grant","error_description":"refresh token {REFRESH} is revoked"}}',
        id="400-description",
    ),
    pytest.param(
        401,
        f'{{"error":"server_error","error_description":"access_denied for {ACCESS}"}}',
        id="401-description",
    ),
    pytest.param(400, f'{{"error":"invalid_client {ACCESS}"}}', id="400-error-code"),
    pytest.param(
        403, f'{{"error":"x","error_description":"{ACCESS}\\n{REFRESH}"}}', id="403-multiline"
    ),
    pytest.param(
        401,
        f'{{"error":{{"message":"bad token {ACCESS}","detail":"x"}},"status":"failure"}}',
        id="401-envelope-message",
    ),
    pytest.param(
        200, f'{{"error":"server_error","error_description":"{REFRESH}"}}', id="200-error"
    ),
    pytest.param(200, f'{{"access_token":"{ACCESS}","expires_in":-1}}', id="200-malformed"),
    pytest.param(200, token_body(), id="200-success"),
]


@pytest.mark.parametrize(("status", "body"), LEAKY)
def test_details_never_carry_a_token(status: int, body: str | bytes) -> None:
    raw = body.encode() if isinstance(body, str) else body
    result = answer(status, raw, grant=Grant.REFRESH_TOKEN, previous=held())
    for secret in (ACCESS, REFRESH):
        assert secret not in result.detail
        assert secret not in repr(result)
        assert secret not in str(result)
