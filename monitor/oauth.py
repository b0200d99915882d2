"""The ServiceNow token endpoint client: one function per grant, every answer classified.

`POST /oauth_token.do` with a form body. What comes back is a `TokenResult`: a `TokenSet`,
or a typed failure (rejected, invalid client, grant not allowed, transient, hibernating,
malformed). Nothing here schedules, retries or stores: the keeper does.

ServiceNow hides most failures behind one generic 401 `access_denied` body, so that is
`rejected` whatever the cause; an RFC 6749 server's `invalid_grant` is the same thing.
"""

from __future__ import annotations

import asyncio
import base64
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from opentelemetry import trace

from monitor import servicenow
from monitor.clock import Clock
from monitor.http import BodyTooLarge, read_body, transport_failure
from monitor.model import Grant, TokenFailure, TokenResult, TokenSet
from monitor.secret import Secret

TOKEN_PATH = "/oauth_token.do"  # noqa: S105 (a path, not a secret)
MAX_TOKEN_BODY = 64 * 1024
FORM_TYPE: Final = "application/x-www-form-urlencoded"
# The form is encoded here, once: aiohttp's `data=dict` builds a FormData per request
# (with a uuid4 multipart boundary): ~4 % of the samples of
# `bench.profile_daemon --scenario coldstart` (docs/benchmarks.md).
_TOKEN_HEADERS: Final = CIMultiDictProxy(
    CIMultiDict({"Accept": "application/json", "Content-Type": FORM_TYPE})
)

_REJECTED_ERRORS = frozenset({"access_denied", "invalid_grant", "server_error"})
_NOT_ALLOWED_ERRORS = frozenset({"unauthorized_client", "unsupported_grant_type"})


@dataclass(frozen=True, slots=True)
class TokenEndpoint:
    """Where and as whom to ask for tokens."""

    base_url: str
    client_id: str
    client_secret: Secret | None
    refresh_lifespan: float
    basic_auth: bool = False  # RFC 6749 client_secret_basic instead of form fields

    @property
    def url(self) -> str:
        return self.base_url + TOKEN_PATH


async def password_grant(
    session: aiohttp.ClientSession,
    endpoint: TokenEndpoint,
    clock: Clock,
    *,
    username: str,
    password: Secret,
    scopes: Sequence[str],
    deadline: float,
) -> TokenResult:
    form = {"grant_type": "password", "username": username, "password": password.reveal()}
    if scopes:
        form["scope"] = " ".join(scopes)
    return await _request(session, endpoint, clock, Grant.PASSWORD, form, None, deadline)


async def client_credentials_grant(
    session: aiohttp.ClientSession,
    endpoint: TokenEndpoint,
    clock: Clock,
    *,
    scopes: Sequence[str],
    deadline: float,
) -> TokenResult:
    form = {"grant_type": "client_credentials"}
    if scopes:
        form["scope"] = " ".join(scopes)
    return await _request(session, endpoint, clock, Grant.CLIENT_CREDENTIALS, form, None, deadline)


async def refresh_grant(
    session: aiohttp.ClientSession,
    endpoint: TokenEndpoint,
    clock: Clock,
    *,
    previous: TokenSet,
    deadline: float,
) -> TokenResult:
    if previous.refresh_token is None:
        raise ValueError("refresh_grant needs a token set with a refresh token")
    form = {"grant_type": "refresh_token", "refresh_token": previous.refresh_token.reveal()}
    return await _request(session, endpoint, clock, Grant.REFRESH_TOKEN, form, previous, deadline)


async def authorization_code_grant(
    session: aiohttp.ClientSession,
    endpoint: TokenEndpoint,
    clock: Clock,
    *,
    code: Secret,
    redirect_uri: str,
    code_verifier: Secret | None,
    deadline: float,
) -> TokenResult:
    form = {
        "grant_type": "authorization_code",
        "code": code.reveal(),
        "redirect_uri": redirect_uri,
    }
    if code_verifier is not None:
        form["code_verifier"] = code_verifier.reveal()
    return await _request(session, endpoint, clock, Grant.AUTHORIZATION_CODE, form, None, deadline)


async def _request(
    session: aiohttp.ClientSession,
    endpoint: TokenEndpoint,
    clock: Clock,
    grant: Grant,
    form: dict[str, str],
    previous: TokenSet | None,
    deadline: float,
) -> TokenResult:
    request_headers = _TOKEN_HEADERS
    if endpoint.basic_auth and endpoint.client_secret is not None:
        request_headers = CIMultiDictProxy(
            CIMultiDict(
                _TOKEN_HEADERS,
                Authorization=_basic_auth(endpoint.client_id, endpoint.client_secret),
            )
        )
    else:
        form["client_id"] = endpoint.client_id
        if endpoint.client_secret is not None:
            form["client_secret"] = endpoint.client_secret.reveal()
    encoded = urlencode(form).encode()
    sent_at = clock.now()
    started = time.perf_counter()  # not loop.time(): uvloop's is cached, in whole ms
    try:
        async with (
            asyncio.timeout_at(deadline),
            session.post(endpoint.url, data=encoded, headers=request_headers) as resp,
        ):
            body = await read_body(resp, MAX_TOKEN_BODY)
            status = resp.status
            headers: Mapping[str, str] = resp.headers
            content_type = resp.headers.get("Content-Type", "")
    except TimeoutError:
        return _failed(grant, TokenFailure.TRANSIENT, None, "timeout", sent_at, started)
    except BodyTooLarge:
        return _failed(grant, TokenFailure.MALFORMED, None, "answer too large", sent_at, started)
    except (aiohttp.ClientError, OSError) as exc:
        kind = transport_failure(exc)
        if kind is None:
            raise
        return _failed(grant, TokenFailure.TRANSIENT, None, kind, sent_at, started)
    result = classify(
        grant,
        status,
        headers,
        content_type,
        body,
        sent_at=sent_at,
        previous=previous,
        refresh_lifespan=endpoint.refresh_lifespan,
    )
    duration = time.perf_counter() - started
    span = trace.get_current_span()
    span.set_attribute("snowmon.token.outcome", "ok" if result.ok else str(result.failure))
    return TokenResult(
        grant=result.grant,
        tokens=result.tokens,
        failure=result.failure,
        status=result.status,
        detail=result.detail,
        retry_after=result.retry_after,
        started_at=sent_at,
        duration=duration,
    )


def _basic_auth(client_id: str, client_secret: Secret) -> str:
    """The `Authorization` value of client_secret_basic: base64 of `id:secret` in UTF-8,
    as ServiceNow and common clients send it (not form-urlencoded first as RFC 6749
    2.3.1 asks; aiohttp's deprecated `BasicAuth` used latin-1, which fails on non-ASCII)."""
    if ":" in client_id:
        raise ValueError('a client_id with ":" cannot be sent with HTTP Basic')
    pair = f"{client_id}:{client_secret.reveal()}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def _failed(
    grant: Grant,
    failure: TokenFailure,
    status: int | None,
    detail: str,
    sent_at: float,
    started: float,
) -> TokenResult:
    return TokenResult(
        grant=grant,
        tokens=None,
        failure=failure,
        status=status,
        detail=detail,
        started_at=sent_at,
        duration=time.perf_counter() - started,
    )


def classify(
    grant: Grant,
    status: int,
    headers: Mapping[str, str],
    content_type: str,
    body: bytes,
    *,
    sent_at: float,
    previous: TokenSet | None,
    refresh_lifespan: float,
) -> TokenResult:
    """Turn one token-endpoint answer into a `TokenResult` (pure)."""

    def fail(failure: TokenFailure, detail: str, retry: float | None = None) -> TokenResult:
        return TokenResult(
            grant, None, failure, status, servicenow.redact_detail(detail), retry, sent_at
        )

    if servicenow.is_hibernating(body):
        return fail(TokenFailure.HIBERNATING, "instance is hibernating")
    doc = servicenow.parse_json(body)
    if status == 429 or status >= 500:
        retry = servicenow.retry_after(headers, sent_at)
        return fail(TokenFailure.TRANSIENT, f"HTTP {status}", retry)
    if not isinstance(doc, Mapping):
        if servicenow.looks_like_html(body, content_type):
            return fail(TokenFailure.MALFORMED, f"HTTP {status} with an HTML page")
        return fail(TokenFailure.MALFORMED, f"HTTP {status} without a JSON object")
    if status == 200 and "error" not in doc:
        tokens = _token_set(grant, doc, sent_at, previous, refresh_lifespan)
        if isinstance(tokens, str):
            return fail(TokenFailure.MALFORMED, tokens)
        return TokenResult(grant, tokens, None, 200, "", None, sent_at)
    error = doc.get("error")
    description = doc.get("error_description")
    code = error if isinstance(error, str) else servicenow.error_message(doc)
    text = f"{code}: {description}" if isinstance(description, str) else code
    if code == "invalid_client":
        return fail(TokenFailure.INVALID_CLIENT, text)
    if code in _NOT_ALLOWED_ERRORS:
        return fail(TokenFailure.GRANT_NOT_ALLOWED, text)
    if status in (400, 401) and (code in _REJECTED_ERRORS or description == "access_denied"):
        return fail(TokenFailure.REJECTED, text)
    if status == 401:
        return fail(TokenFailure.REJECTED, text or "HTTP 401")
    return fail(TokenFailure.MALFORMED, f"HTTP {status}: {text}")


def _token_set(
    grant: Grant,
    doc: Mapping[str, object],
    sent_at: float,
    previous: TokenSet | None,
    refresh_lifespan: float,
) -> TokenSet | str:
    """The token set of a 200 answer, or why it is not one."""
    access = doc.get("access_token")
    expires_in = doc.get("expires_in")
    token_type = doc.get("token_type", "Bearer")
    if not isinstance(access, str) or not access:
        return "answer without access_token"
    life = _lifetime(expires_in)
    if life is None:
        return "answer without a positive expires_in"
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        return "token_type is not Bearer"
    scope = doc.get("scope")
    refresh = doc.get("refresh_token")
    refresh_token: Secret | None = None
    issued_at: float | None = None
    refresh_expires: float | None = None
    if isinstance(refresh, str) and refresh:
        if (
            previous is not None
            and previous.refresh_token is not None
            and previous.refresh_token.reveal() == refresh
        ):
            # ServiceNow hands back the same refresh token and does not extend its life.
            refresh_token = previous.refresh_token
            issued_at, refresh_expires = previous.refresh_issued_at, previous.refresh_expires_at
        else:
            refresh_token = Secret(refresh)
            issued_at, refresh_expires = sent_at, sent_at + refresh_lifespan
    elif previous is not None:
        # An answer without refresh_token keeps the one we have.
        refresh_token = previous.refresh_token
        issued_at, refresh_expires = previous.refresh_issued_at, previous.refresh_expires_at
    return TokenSet(
        access_token=Secret(access),
        access_expires_at=sent_at + life,
        obtained_at=sent_at,
        refresh_token=refresh_token,
        refresh_issued_at=issued_at,
        refresh_expires_at=refresh_expires,
        scope=scope if isinstance(scope, str) else "",
        grant=previous.grant if previous is not None and grant is Grant.REFRESH_TOKEN else grant,
    )


def _lifetime(value: object) -> float | None:
    """`expires_in` as seconds: a positive finite number, or digits in a string."""
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 15):
            return None
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        life = float(value)
    except OverflowError:
        return None
    return life if math.isfinite(life) and life > 0 else None
