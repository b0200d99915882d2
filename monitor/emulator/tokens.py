"""Tokens: access tokens, refresh tokens and authorization codes as a ServiceNow instance
keeps them, plus the bookkeeping that lets the emulator tell "expired" from "never ours".

Every token is 64 bytes shown as 86 base64url characters, like ServiceNow's: a random
nonce, what the token is (kind, instance, client; masked) and an HMAC of both under a
per-run key. That lets the store forget tokens once they expire (memory
stays bounded over days of emulated time) and still recognise a forgotten token as one
it issued, which is what `expired_token_uses` counts.

A refresh token belongs to a `Family`: the lineage started by one password or code
grant. ServiceNow keeps one refresh token per family; in strict mode every refresh
rotates it and a reused old token revokes the family, access tokens included.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import os
from typing import NamedTuple

from monitor.emulator.fleet import Instance, OAuthClient

ACCESS = 1
REFRESH = 2
CODE = 3


class Family:
    __slots__ = ("client", "instance", "refresh_expires_at", "revoked", "scope", "user")

    def __init__(
        self, instance: Instance, client: OAuthClient, user: str, scope: str, expires_at: float
    ) -> None:
        self.instance = instance
        self.client = client
        self.user = user
        self.scope = scope
        self.refresh_expires_at = expires_at  # never extended by a refresh
        self.revoked = False


class RefreshToken:
    __slots__ = ("family", "generation", "inflight", "used")

    def __init__(self, family: Family, generation: int) -> None:
        self.family = family
        self.generation = generation
        self.used = False  # strict mode: already exchanged for a newer refresh token
        self.inflight = 0  # refresh requests carrying this token being processed now

    def is_live(self, now: float) -> bool:
        family = self.family
        return (
            not family.revoked
            and self.generation == family.client.generation
            and now < family.refresh_expires_at
        )


class AccessToken:
    __slots__ = ("client", "expires_at", "family", "generation", "instance", "user")

    def __init__(
        self,
        instance: Instance,
        client: OAuthClient,
        user: str,
        expires_at: float,
        family: Family | None,
    ) -> None:
        self.instance = instance
        self.client = client
        self.user = user
        self.expires_at = expires_at
        self.family = family
        self.generation = client.generation

    def is_revoked(self) -> bool:
        family = self.family
        return self.generation != self.client.generation or (family is not None and family.revoked)


class AuthorizationCode:
    __slots__ = (
        "challenge",
        "challenge_method",
        "client",
        "expires_at",
        "instance",
        "redirect_uri",
        "scope",
        "user",
    )

    def __init__(
        self,
        instance: Instance,
        client: OAuthClient,
        user: str,
        redirect_uri: str,
        scope: str,
        challenge: str | None,
        challenge_method: str,
        expires_at: float,
    ) -> None:
        self.instance = instance
        self.client = client
        self.user = user
        self.redirect_uri = redirect_uri
        self.scope = scope
        self.challenge = challenge
        self.challenge_method = challenge_method
        self.expires_at = expires_at


class Minted(NamedTuple):
    kind: int
    instance_index: int
    client_index: int


class TokenStore:
    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else os.urandom(32)
        self.access: dict[str, AccessToken] = {}
        self.refresh: dict[str, RefreshToken] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self._expiry: list[tuple[float, int, str]] = []  # heap of (expires_at, kind, token)

    def _mask(self, nonce: bytes) -> bytes:
        return hmac.new(self._key, b"mask" + nonce, hashlib.sha256).digest()[:6]

    def mint(self, kind: int, instance_index: int, client_index: int) -> str:
        # nonce, then what the token is (masked so tokens share no visible prefix), then MAC
        nonce = os.urandom(26)
        meta = bytes((kind,)) + instance_index.to_bytes(4, "big") + bytes((client_index,))
        masked = bytes(a ^ b for a, b in zip(meta, self._mask(nonce), strict=True))
        mac = hmac.new(self._key, nonce + meta, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(nonce + masked + mac).rstrip(b"=").decode("ascii")

    def recognise(self, token: str) -> Minted | None:
        """What an unknown token was, if this store minted it (it has since been forgotten)."""
        if len(token) != 86:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "==")
        except ValueError:
            return None
        nonce, masked, mac = raw[:26], raw[26:32], raw[32:]
        meta = bytes(a ^ b for a, b in zip(masked, self._mask(nonce), strict=True))
        expected = hmac.new(self._key, nonce + meta, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected):
            return None
        return Minted(meta[0], int.from_bytes(meta[1:5], "big"), meta[5])

    def issue_access(
        self,
        instance: Instance,
        client: OAuthClient,
        user: str,
        now: float,
        family: Family | None,
    ) -> str:
        token = self.mint(ACCESS, instance.index, client.index)
        record = AccessToken(instance, client, user, now + client.access_lifespan, family)
        self.access[token] = record
        self._remember(record.expires_at, ACCESS, token, now)
        return token

    def issue_refresh(self, family: Family, now: float) -> str:
        token = self.mint(REFRESH, family.instance.index, family.client.index)
        self.refresh[token] = RefreshToken(family, family.client.generation)
        self._remember(family.refresh_expires_at, REFRESH, token, now)
        return token

    def issue_code(self, code: AuthorizationCode, now: float) -> str:
        token = self.mint(CODE, code.instance.index, code.client.index)
        self.codes[token] = code
        self._remember(code.expires_at, CODE, token, now)
        return token

    def _remember(self, expires_at: float, kind: int, token: str, now: float) -> None:
        heapq.heappush(self._expiry, (expires_at, kind, token))
        self.forget_expired(now)

    def forget_expired(self, now: float) -> None:
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            _, kind, token = heapq.heappop(expiry)
            if kind == ACCESS:
                self.access.pop(token, None)
            elif kind == REFRESH:
                self.refresh.pop(token, None)
            else:
                self.codes.pop(token, None)

    def counts(self) -> dict[str, int]:
        return {"access": len(self.access), "refresh": len(self.refresh), "codes": len(self.codes)}
