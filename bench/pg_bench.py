"""PostgreSQL store benchmark: what a 100,000-connection fleet shared by replicas asks of it.

Times one lease round over the whole fleet (claiming every id, renewing every id, the
claim scan when nothing is free, a 3-replica split), token saves with the version and
lease fences (one at a time and many in flight), and the fleet-wide reads a status API
makes. Works in a schema of its own, dropped at the end. Prints one JSON object.

    .venv/bin/python bench/pg_bench.py [--connections 100000] [--dsn postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from monitor.model import Grant, Health, State, TokenSet
from monitor.secret import Secret
from monitor.store.crypto import Keyring, generate_key
from monitor.store.leases import fair_share
from monitor.store.postgres import PostgresStore

T0 = 1_800_000_000.0
LEASE = 30.0


def tokens(i: int, generation: int = 0) -> TokenSet:
    at = T0 + generation * 1800
    return TokenSet(
        access_token=Secret(f"{i:08d}-{generation}-" + "a" * 32),
        access_expires_at=at + 1800,
        obtained_at=at,
        refresh_token=Secret(f"{i:08d}-" + "r" * 40),
        refresh_issued_at=T0,
        refresh_expires_at=T0 + 100 * 86400,
        scope="useraccount",
        grant=Grant.PASSWORD,
    )


async def timed(fn: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await fn()
    return time.perf_counter() - started, result


async def best_of(n: int, fn: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    times = [(await timed(fn))[0] for _ in range(n)]
    return {
        "median_ms": round(statistics.median(times) * 1000, 1),
        "min_ms": round(min(times) * 1000, 1),
    }


async def saves_per_second(
    store: PostgresStore, ids: list[str], versions: dict[str, int], in_flight: int, generation: int
) -> float:
    queue = list(ids)

    async def worker() -> None:
        while queue:
            cid = queue.pop()
            i = int(cid.split("-")[1])
            versions[cid] = await store.save_tokens(
                cid, tokens(i, generation), expected_version=versions[cid]
            )

    took, _ = await timed(lambda: asyncio.gather(*(worker() for _ in range(in_flight))))
    return round(len(ids) / took)


async def run(dsn: str, n: int) -> dict[str, Any]:
    schema = f"snowmon_bench_{secrets.token_hex(4)}"
    keyring = Keyring([generate_key()])
    ids = [f"conn-{i:06d}" for i in range(n)]
    stores = [
        PostgresStore(dsn, keyring, replica=f"r{k}", schema=schema, max_size=10) for k in range(3)
    ]
    a, b, c = stores
    out: dict[str, Any] = {"connections": n}
    try:
        for store in stores:
            await store.open()
        out["register_ms"] = round((await timed(lambda: a.register(ids)))[0] * 1000, 1)

        took, held = await timed(lambda: a.claim(n, LEASE))
        assert len(held) == n
        out["claim_all_ms"] = round(took * 1000, 1)
        out["renew_all_ms"] = await best_of(5, lambda: a.claim(0, LEASE))
        # b finds nothing free: the claim is a scan of the whole table.
        out["claim_nothing_free_ms"] = await best_of(5, lambda: b.claim(1000, LEASE))
        out["owners_ms"] = await best_of(3, a.owners)

        # Three replicas: a gives back two thirds, b and c claim their share.
        share = fair_share(n, 3)
        took, released = await timed(lambda: a.release_excess(share))
        out["released"] = len(released)
        out["release_two_thirds_ms"] = round(took * 1000, 1)
        took, _ = await timed(lambda: asyncio.gather(b.claim(share, LEASE), c.claim(share, LEASE)))
        out["two_replicas_claim_a_third_each_ms"] = round(took * 1000, 1)
        out["renew_a_third_ms"] = await best_of(5, lambda: b.claim(0, LEASE))
        owners = await a.owners()
        out["split"] = sorted(sum(1 for o in owners.values() if o == s.replica) for s in stores)

        # Token saves by the owner (version + lease fence in one statement).
        mine = [cid for cid, owner in owners.items() if owner == "r0"]
        versions = dict.fromkeys(mine, 0)
        sample = mine[:2000]
        out["save_tokens_per_s_1_in_flight"] = await saves_per_second(a, sample, versions, 1, 0)
        out["save_tokens_per_s_64_in_flight"] = await saves_per_second(a, mine, versions, 64, 1)
        unfenced = PostgresStore(dsn, keyring, schema=schema, max_size=10)
        await unfenced.open()
        try:
            out["save_tokens_per_s_64_in_flight_no_replica"] = await saves_per_second(
                unfenced, mine, versions, 64, 2
            )
            took, loaded = await timed(unfenced.load_all_tokens)
            out["load_all_tokens_ms"] = round(took * 1000, 1)
            out["load_all_tokens_rows"] = len(loaded)
            out["load_token_times_ms"] = await best_of(3, unfenced.load_token_times)
            health = Health(State.HEALTHY, T0, consecutive_successes=3, last_probe_at=T0)
            batches = [[(cid, health) for cid in ids[i : i + 1000]] for i in range(0, n, 1000)]
            took, _ = await timed(
                lambda: asyncio.gather(*(unfenced.save_health(batch) for batch in batches))
            )
            out["save_health_rows_per_s"] = round(n / took)
            out["load_all_health_ms"] = await best_of(3, unfenced.load_all_health)
        finally:
            await unfenced.close()
        out["release_all_ms"] = round((await timed(a.release_all))[0] * 1000, 1)
        await asyncio.sleep(1.5)  # statistics reach pg_stat_* within a second
        conn = await asyncpg.connect(dsn)
        try:
            stats = await conn.fetchrow(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
                " WHERE schemaname = $1 AND relname = 'leases'",
                schema,
            )
        finally:
            await conn.close()
        assert stats is not None
        out["leases_updates_hot_percent"] = round(100 * stats[1] / max(1, stats[0]), 1)
    finally:
        for store in stores:
            await store.close()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=100_000)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.dsn, args.connections)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
