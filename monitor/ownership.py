"""Sharing a fleet between replicas: who works on which connection, by lease.

With a PostgreSQL store, every replica runs `Ownership.run`: a lease round every third
of a lease period (renew what it holds, claim up to its fair share, give back the excess; the
database clock decides). Newly held connections are adopted by the keeper (their tokens
and health come from the database, so no grant is repeated); lost ones stop at once. The
health of connections held elsewhere is read back from the database each round, so the
status API of any replica answers for the whole fleet. While the database is away a
replica keeps probing what it holds, and makes no token request once its leases lapse.

A token request starts only while the lease is certainly valid for longer than the
request can take, so two replicas never use one refresh token at once; a save from a
replica that lost its lease anyway is refused by the store (fencing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from typing import Protocol

from monitor.connection import TokenTimes
from monitor.errors import StoreError
from monitor.keeper import Keeper
from monitor.model import Health, StoredTokens
from monitor.store.leases import Leases, lease_round

log = logging.getLogger("snowmon.ownership")


class SharedStore(Leases, Protocol):
    async def load_tokens_for(self, connection_ids: Collection[str]) -> dict[str, StoredTokens]: ...

    async def load_all_health(self) -> dict[str, Health]: ...

    async def load_token_times(self) -> dict[str, TokenTimes]: ...


class Ownership:
    def __init__(
        self,
        store: SharedStore,
        keeper: Keeper,
        *,
        lease_seconds: float,
        request_timeout: float,
        on_round: Callable[[int, int], None] | None = None,
    ) -> None:
        self._store = store
        self._keeper = keeper
        self._on_round = on_round  # (leases held, live replicas): the metrics
        self._lease = lease_seconds
        self._request_timeout = request_timeout
        self._held: frozenset[str] = frozenset()
        self._valid_until = 0.0

    @property
    def held(self) -> frozenset[str]:
        return self._held

    def may_request(self) -> bool:
        """Whether a token request may start now: the lease outlives the request."""
        return self._valid_until - time.monotonic() > self._request_timeout

    async def run(self, stop: asyncio.Event) -> None:
        ids = [c.id for c in self._keeper.connections()]
        await self._store.register(ids)
        while not stop.is_set():
            await self._round(len(ids))
            try:
                # Renew at a third of the lease: a held lease then always has two thirds of
                # its life left, longer than a token request may take.
                async with asyncio.timeout(self._lease / 3):
                    await stop.wait()
            except TimeoutError:
                pass

    async def _round(self, total: int) -> None:
        try:
            result = await lease_round(
                self._store,
                self._held,
                total=total,
                lease_seconds=self._lease,
                busy=self._keeper.busy(),
            )
        except StoreError as exc:
            # The database is away: keep probing what we hold with the tokens we have.
            # Once the leases have run out, `may_request` refuses token requests (another
            # replica may hold the connections by now and must be the only one to use a
            # refresh token); the first round that succeeds again renews what is still
            # ours and releases what another replica took meanwhile.
            lapsed = time.monotonic() > self._valid_until
            log.warning(
                "lease.round_failed",
                extra={"error": str(exc), "held": len(self._held), "lease_lapsed": lapsed},
            )
            return
        self._valid_until = result.valid_until
        if result.lost:
            self._keeper.release(result.lost)
        held = result.held
        try:
            # One read of the fleet's health a round serves both the adoption of new
            # connections and the read-back of those other replicas hold.
            health = await self._store.load_all_health()
            if result.acquired:
                tokens = await self._store.load_tokens_for(result.acquired)
                await self._keeper.adopting(result.acquired)
                self._keeper.adopt(result.acquired, tokens, health)
            owners = await self._store.owners()
            # Expiry times (kept in clear: nothing decrypted) of the tokens others hold,
            # so every replica's status API and page show them for the whole fleet.
            times = await self._store.load_token_times()
        except StoreError as exc:
            log.warning("lease.read_back_failed", extra={"error": str(exc)})
            # Not adopted yet: they count as newly acquired again next round.
            held = held - result.acquired
        else:
            self._keeper.observe_remote(health, owners, times)
        self._held = held
        if self._on_round is not None:
            self._on_round(len(held), result.live)
        if result.acquired or result.lost:
            log.info(
                "lease.changed",
                extra={
                    "held": len(result.held),
                    "acquired": len(result.acquired),
                    "lost": len(result.lost),
                    "live_replicas": result.live,
                    "share": result.share,
                },
            )

    async def release_all(self) -> None:
        try:
            await self._store.release_all()
        except StoreError as exc:
            log.warning("lease.release_failed", extra={"error": str(exc)})
