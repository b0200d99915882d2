"""The OAuth token endpoint, `POST /oauth_token.do`, as ServiceNow runs it.

Grants: password, refresh_token, client_credentials and authorization_code (PKCE S256 or
plain), client id and secret in the form body or as HTTP Basic. Every failure is the one
generic 401 body. A refresh hands back the same refresh token and never extends its life;
in strict mode it rotates instead, and a reused old token revokes the whole family.

Handling is async on purpose: the latency fault is awaited inside the interval during
which a refresh token is "in flight", so two refreshes carrying the same token overlap
exactly when a careless client sends them at once, and the overlap is counted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, unquote_plus

from aiohttp import web

from monitor.emulator.fleet import Instance, OAuthClient
from monitor.emulator.state import FleetState
from monitor.emulator.stats import ClientStats
from monitor.emulator.tokens import Family
from monitor.emulator.wire import Reply, access_denied, no_integration_user, token_success

FORM_TYPE = "application/x-www-form-urlencoded"
DEFAULT_SCOPE = "useraccount"

Pause = Callable[[], Awaitable[None]]


def same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def pkce_matches(verifier: str, challenge: str, method: str) -> bool:
    if method == "S256":
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        return same(computed, challenge)
    return same(verifier, challenge)


def parse_form(raw: bytes) -> dict[str, str] | None:
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return None
    form: dict[str, str] = {}
    for key, value in pairs:
        form.setdefault(key, value)
    return form


def client_credentials(
    authorization: str | None, form: dict[str, str]
) -> tuple[str | None, str | None]:
    """client_secret_basic wins over client_secret_post, as on most servers."""
    if authorization is not None and authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        client_id, sep, secret = decoded.partition(":")
        return (client_id, secret) if sep else (None, None)
    return form.get("client_id"), form.get("client_secret")


def _secret_ok(client: OAuthClient, secret: str | None) -> bool:
    # RFC 6749 wants Basic credentials form-encoded; most clients skip that, accept both
    return secret is not None and (
        same(secret, client.secret) or same(unquote_plus(secret), client.secret)
    )


class TokenEndpoint:
    def __init__(self, state: FleetState) -> None:
        self.state = state

    async def handle(self, instance: Instance, request: web.BaseRequest, pause: Pause) -> Reply:
        if request.method != "POST" or request.content_type != FORM_TYPE:
            await pause()
            return access_denied()
        form = parse_form(await request.read())
        if form is None:
            await pause()
            return access_denied()
        client_id, secret = client_credentials(request.headers.get("Authorization"), form)
        client = instance.client(client_id) if client_id else None
        grant = form.get("grant_type", "")
        if grant == "refresh_token":
            reply = await self._refresh(instance, client, secret, form, pause)
        else:
            await pause()
            reply = self._grant(instance, client, secret, grant, form)
        if reply.status != 200 and client is not None:
            instance.live_stats().client(client.client_id).rejected += 1
        return reply

    def _flaky(self, instance: Instance, stats: ClientStats) -> bool:
        faults = instance.faults
        if (
            faults is not None
            and faults.flaky_token
            and self.state.rng.random() < faults.flaky_token
        ):
            stats.flaky_denials += 1
            return True
        return False

    def _grant(
        self,
        instance: Instance,
        client: OAuthClient | None,
        secret: str | None,
        grant: str,
        form: dict[str, str],
    ) -> Reply:
        if client is None or not client.grant_enabled(grant):
            return access_denied()
        if grant == "password":
            return self._password(instance, client, secret, form)
        if grant == "client_credentials":
            return self._client_credentials(instance, client, secret, form)
        if grant == "authorization_code":
            return self._code(instance, client, secret, form)
        return access_denied()

    def _issue_family(
        self, instance: Instance, client: OAuthClient, user: str, scope: str, grant: str
    ) -> Reply:
        now = self.state.clock.now()
        family = Family(instance, client, user, scope, now + client.refresh_lifespan)
        tokens = self.state.tokens
        access = tokens.issue_access(instance, client, user, now, family)
        refresh = tokens.issue_refresh(family, now)
        instance.live_stats().client(client.client_id).grants[grant] += 1
        return token_success(access, refresh, scope, client.access_lifespan - 1)

    def _password(
        self, instance: Instance, client: OAuthClient, secret: str | None, form: dict[str, str]
    ) -> Reply:
        if not _secret_ok(client, secret):
            return access_denied()
        username, password = form.get("username"), form.get("password")
        if (
            username != instance.username
            or password is None
            or not same(password, instance.password)
        ):
            return access_denied()
        if self._flaky(instance, instance.live_stats().client(client.client_id)):
            return access_denied()
        scope = form.get("scope") or DEFAULT_SCOPE
        return self._issue_family(instance, client, username, scope, "password")

    def _client_credentials(
        self, instance: Instance, client: OAuthClient, secret: str | None, form: dict[str, str]
    ) -> Reply:
        if not _secret_ok(client, secret):
            return access_denied()
        if not client.app_user:
            return no_integration_user(client.client_id)
        stats = instance.live_stats().client(client.client_id)
        if self._flaky(instance, stats):
            return access_denied()
        now = self.state.clock.now()
        user = self.state.options.app_username
        access = self.state.tokens.issue_access(instance, client, user, now, None)
        stats.grants["client_credentials"] += 1
        scope = form.get("scope") or DEFAULT_SCOPE
        return token_success(access, None, scope, client.access_lifespan - 1)

    def _code(
        self, instance: Instance, client: OAuthClient, secret: str | None, form: dict[str, str]
    ) -> Reply:
        code_value = form.get("code", "")
        code = self.state.tokens.codes.get(code_value)
        now = self.state.clock.now()
        if code is None or code.instance is not instance or code.client is not client:
            return access_denied()
        if now >= code.expires_at or form.get("redirect_uri", "") != code.redirect_uri:
            return access_denied()
        if secret is not None and not _secret_ok(client, secret):
            return access_denied()
        if code.challenge is not None:
            verifier = form.get("code_verifier")
            if not verifier or not pkce_matches(verifier, code.challenge, code.challenge_method):
                return access_denied()
        elif secret is None:
            return access_denied()  # without PKCE the client must authenticate
        if self._flaky(instance, instance.live_stats().client(client.client_id)):
            return access_denied()
        del self.state.tokens.codes[code_value]
        return self._issue_family(instance, client, code.user, code.scope, "authorization_code")

    async def _refresh(
        self,
        instance: Instance,
        client: OAuthClient | None,
        secret: str | None,
        form: dict[str, str],
        pause: Pause,
    ) -> Reply:
        token = form.get("refresh_token", "")
        record = self.state.tokens.refresh.get(token)
        if record is None:
            await pause()
            if client is not None and _secret_ok(client, secret):
                instance.live_stats().client(client.client_id).rejected_refresh_tokens += 1
            return access_denied()
        owner = instance.live_stats().client(record.family.client.client_id)
        owner.refresh_overlaps += record.inflight
        record.inflight += 1
        try:
            await pause()
        finally:
            record.inflight -= 1
        if client is None or not client.refresh_token or not _secret_ok(client, secret):
            return access_denied()
        family = record.family
        stats = instance.live_stats().client(client.client_id)
        now = self.state.clock.now()
        if (
            family.instance is not instance
            or family.client is not client
            or not record.is_live(now)
        ):
            stats.rejected_refresh_tokens += 1
            return access_denied()
        if record.used:
            # strict mode: an old token came back, so someone holds a copy; kill the family
            family.revoked = True
            stats.reused_refresh_tokens += 1
            return access_denied()
        if self._flaky(instance, stats):
            return access_denied()
        tokens = self.state.tokens
        access = tokens.issue_access(instance, client, family.user, now, family)
        refresh = token
        if self.state.options.strict_rotation:
            record.used = True
            refresh = tokens.issue_refresh(family, now)
        stats.grants["refresh_token"] += 1
        stats.refreshes += 1
        stats.last_refresh_at = now
        return token_success(access, refresh, family.scope, client.access_lifespan - 1)
