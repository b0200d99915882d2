"""Obtaining tokens for one connection: which grant to use, single-flight, persist first.

`Credentials.obtain(conn)` is the only way a token request is made. It:
- joins the request already in flight for that connection, if there is one, so a
  refresh token is never used twice at once;
- refreshes with the refresh token while it lives, and falls back to a full grant
  (password, client_credentials) when the refresh token is dead, rejected or near its
  fixed end of life;
- checks that a new access token really outlives the old one;
- writes the new token to the store, shielded from cancellation, before anyone uses it;
  a lost version race re-reads the winner's token instead of asking again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from opentelemetry import trace

from monitor import oauth
from monitor.clock import Clock
from monitor.connection import Connection
from monitor.errors import LeaseLostError, StaleWriteError
from monitor.health import CREDENTIAL_FAILURES
from monitor.model import Grant, StoredTokens, TokenFailure, TokenResult, TokenSet
from monitor.secret import Secret
from monitor.store import Store
from monitor.timing import renew_refresh_at

log = logging.getLogger("snowmon.credentials")


@dataclass(frozen=True, slots=True)
class Obtained:
    """What one `obtain` call ended with: the token to use (if any) and every answer
    the token endpoint gave on the way (a refresh, then maybe a full grant)."""

    tokens: TokenSet | None
    results: tuple[TokenResult, ...]


class Credentials:
    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        store: Store,
        clock: Clock,
        tracer: trace.Tracer,
        request_timeout: float,
        on_result: Callable[[Connection, TokenResult], None],
        on_saved: Callable[[Connection], None],
        on_lease_lost: Callable[[Connection], None] = lambda conn: None,
        may_request: Callable[[], bool] = lambda: True,
    ) -> None:
        self._session = session
        self._store = store
        self._clock = clock
        self._tracer = tracer
        self._timeout = request_timeout
        self._on_result = on_result
        self._on_saved = on_saved
        self._on_lease_lost = on_lease_lost
        self.may_request = may_request

    def endpoint(self, conn: Connection) -> oauth.TokenEndpoint:
        s = conn.settings
        return oauth.TokenEndpoint(
            base_url=s.instance_url,
            client_id=s.client_id,
            client_secret=s.client_secret,
            refresh_lifespan=s.refresh_token_lifespan,
        )

    async def obtain(self, conn: Connection) -> TokenSet | None:
        """A fresh token for `conn`, shared with every caller that asks meanwhile."""
        if conn.flight is not None:
            return await asyncio.shield(conn.flight)
        flight: asyncio.Future[TokenSet | None] = asyncio.get_running_loop().create_future()
        conn.flight = flight
        tokens: TokenSet | None = None
        try:
            tokens = (await self._obtain(conn)).tokens
        finally:
            conn.flight = None
            # Waiters get None if the owner was cancelled: they treat it as "no token".
            flight.set_result(tokens)
        return tokens

    async def _obtain(self, conn: Connection) -> Obtained:
        if not conn.owned or not self.may_request():
            # Only the lease holder may use the refresh token, and only while its lease
            # certainly outlives the request.
            return Obtained(None, ())
        current = conn.tokens
        now = self._clock.now()
        grant = conn.settings.grant
        results: list[TokenResult] = []
        use_refresh = current is not None and current.refresh_token is not None
        if use_refresh and current is not None and grant is Grant.PASSWORD:
            renew = renew_refresh_at(current)
            # A password grant mints a new refresh token; do it before the old one dies.
            use_refresh = renew is None or now < renew
        if use_refresh and current is not None:
            with self._tracer.start_as_current_span("token.refresh") as span:
                span.set_attribute("snowmon.connection", conn.id)
                result = await oauth.refresh_grant(
                    self._session,
                    self.endpoint(conn),
                    self._clock,
                    previous=current,
                    deadline=self._deadline(),
                )
                results.append(result)
                self._on_result(conn, result)
                _end_span(span, result)
                if result.tokens is not None:
                    return Obtained(await self._accept(conn, result), tuple(results))
            if result.failure not in CREDENTIAL_FAILURES or grant is Grant.AUTHORIZATION_CODE:
                return Obtained(None, tuple(results))
        if grant is Grant.AUTHORIZATION_CODE:
            return Obtained(None, tuple(results))  # only a person can grant again
        with self._tracer.start_as_current_span("token.grant") as span:
            span.set_attribute("snowmon.connection", conn.id)
            span.set_attribute("snowmon.grant", grant.value)
            result = await self._full_grant(conn)
            results.append(result)
            self._on_result(conn, result)
            _end_span(span, result)
            if result.tokens is None:
                return Obtained(None, tuple(results))
            return Obtained(await self._accept(conn, result), tuple(results))

    async def _full_grant(self, conn: Connection) -> TokenResult:
        s = conn.settings
        if s.grant is Grant.PASSWORD:
            if s.username is None or s.password is None:
                raise ValueError(f"connection {conn.id}: password grant without credentials")
            return await oauth.password_grant(
                self._session,
                self.endpoint(conn),
                self._clock,
                username=s.username,
                password=s.password,
                scopes=s.scopes,
                deadline=self._deadline(),
            )
        return await oauth.client_credentials_grant(
            self._session,
            self.endpoint(conn),
            self._clock,
            scopes=s.scopes,
            deadline=self._deadline(),
        )

    async def exchange_code(
        self, conn: Connection, code: Secret, redirect_uri: str, verifier: Secret | None
    ) -> TokenResult:
        """The connect flow's last step: trade an authorization code for tokens."""
        with self._tracer.start_as_current_span("token.grant") as span:
            span.set_attribute("snowmon.connection", conn.id)
            span.set_attribute("snowmon.grant", Grant.AUTHORIZATION_CODE.value)
            result = await oauth.authorization_code_grant(
                self._session,
                self.endpoint(conn),
                self._clock,
                code=code,
                redirect_uri=redirect_uri,
                code_verifier=verifier,
                deadline=self._deadline(),
            )
            self._on_result(conn, result)
            _end_span(span, result)
            if result.tokens is not None:
                await self._accept(conn, result, replace_any=True)
            return result

    async def _accept(
        self, conn: Connection, result: TokenResult, *, replace_any: bool = False
    ) -> TokenSet | None:
        new = result.tokens
        if new is None:
            return None
        old = conn.tokens
        if not replace_any and old is not None and new.access_expires_at <= old.access_expires_at:
            # A refresh that does not move the expiry forward would make us ask again at
            # once, and again: a refresh storm. Treat it as a bad answer.
            bad = TokenResult(
                result.grant,
                None,
                TokenFailure.MALFORMED,
                result.status,
                "new access token does not outlive the old one",
                None,
                result.started_at,
                result.duration,
            )
            self._on_result(conn, bad)
            return None
        stored = await asyncio.shield(self._save(conn, new, replace_any=replace_any))
        return stored.tokens if stored is not None else None

    async def _save(
        self, conn: Connection, tokens: TokenSet, *, replace_any: bool
    ) -> StoredTokens | None:
        expected = conn.version
        for _ in range(3):
            try:
                version = await self._store.save_tokens(conn.id, tokens, expected_version=expected)
            except LeaseLostError:
                self._on_lease_lost(conn)
                return None
            except StaleWriteError:
                latest = await self._store.load_tokens(conn.id)
                if not replace_any:
                    # Someone else (a replica) saved a newer token: use theirs.
                    conn.stored = latest
                    self._on_saved(conn)
                    log.info(
                        "token.stale_write",
                        extra={"connection": conn.id, "outcome": "reread"},
                    )
                    return latest
                expected = latest.version if latest is not None else 0
                continue
            conn.stored = StoredTokens(tokens, version)
            self._on_saved(conn)
            return conn.stored
        return conn.stored

    def _deadline(self) -> float:
        return asyncio.get_running_loop().time() + self._timeout


def _outcome(result: TokenResult) -> str:
    return "ok" if result.ok else (result.failure.value if result.failure else "failed")


def _end_span(span: trace.Span, result: TokenResult) -> None:
    """The outcome of a token operation on its span; a failed one has status Error."""
    outcome = _outcome(result)
    span.set_attribute("snowmon.outcome", outcome)
    if not result.ok:
        span.set_status(trace.StatusCode.ERROR, outcome)
