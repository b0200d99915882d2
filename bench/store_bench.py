"""Store benchmark: what a 100,000-connection fleet asks of the SQLite store.

Times loading every token (decrypt included) and every health snapshot at start-up,
durable token saves one at a time and in bursts (group commit), health and history
batches of 1000, and re-encrypting the whole fleet under a new key. Prints one JSON object.

    .venv/bin/python bench/store_bench.py [--connections 100000] [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from monitor.model import Grant, Health, HistoryEntry, HistoryKind, State, TokenSet
from monitor.secret import Secret
from monitor.store.crypto import Keyring, generate_key
from monitor.store.sqlite import SqliteStore

T0 = 1_800_000_000.0
BATCH = 1000


class _AlwaysFullSync(SqliteStore):
    """The alternative design: every commit fsync'd, health and history included."""

    @contextlib.contextmanager
    def _transaction(self, *, durable: bool) -> Iterator[sqlite3.Connection]:
        with super()._transaction(durable=True) as conn:
            yield conn


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


def health(i: int, tick: int) -> Health:
    return Health(
        state=State.HEALTHY,
        since=T0,
        consecutive_successes=tick,
        last_reason="ok",
        last_probe_at=T0 + tick * 300,
        last_probe_reason="ok",
        last_probe_duration=0.042,
        last_probe_status=200,
    )


def history(i: int, tick: int) -> HistoryEntry:
    return HistoryEntry(f"conn-{i:06d}", T0 + tick, HistoryKind.PROBE, "ok", "", 0.04, 200)


def ids(n: int) -> list[str]:
    return [f"conn-{i:06d}" for i in range(n)]


async def batched_health(store: SqliteStore, n: int, tick: int) -> list[float]:
    names = ids(n)
    times = []
    for start in range(0, n, BATCH):
        items = [(names[i], health(i, tick)) for i in range(start, min(n, start + BATCH))]
        began = time.perf_counter()
        await store.save_health(items)
        times.append(time.perf_counter() - began)
    return times


async def run(n: int, directory: Path, saves: int) -> dict[str, object]:
    path = directory / "bench.db"
    key = generate_key()
    store = SqliteStore(path, Keyring([key]))
    await store.open()
    out: dict[str, object] = {"connections": n, "sqlite": sqlite3.sqlite_version}

    names = ids(n)
    began = time.perf_counter()
    for start in range(0, n, BATCH):
        await asyncio.gather(
            *(
                store.save_tokens(names[i], tokens(i), expected_version=0)
                for i in range(start, min(n, start + BATCH))
            )
        )
    out["save_tokens_burst_of_1000_per_s"] = round(n / (time.perf_counter() - began))

    health_times = await batched_health(store, n, 1)
    out["save_health_batch_1000_ms_mean"] = round(statistics.mean(health_times) * 1000, 2)
    out["save_health_batch_1000_ms_max"] = round(max(health_times) * 1000, 2)

    history_times = []
    for tick in range(3):
        for start in range(0, n, BATCH):
            entries = [history(i, tick) for i in range(start, min(n, start + BATCH))]
            began = time.perf_counter()
            await store.append_history(entries)
            history_times.append(time.perf_counter() - began)
    out["append_history_batch_1000_ms_mean"] = round(statistics.mean(history_times) * 1000, 2)

    latencies = []
    for j in range(saves):
        i = j % n
        began = time.perf_counter()
        await store.save_tokens(names[i], tokens(i, 1 + j // n), expected_version=1 + j // n)
        latencies.append(time.perf_counter() - began)
    out["save_tokens_sequential_per_s"] = round(saves / sum(latencies))
    out["save_tokens_sequential_ms_p50"] = round(statistics.median(latencies) * 1000, 3)
    out["save_tokens_sequential_ms_p99"] = round(
        statistics.quantiles(latencies, n=100)[98] * 1000, 3
    )
    await store.close()

    began = time.perf_counter()
    store = SqliteStore(path, Keyring([key]))
    await store.open()
    out["open_s"] = round(time.perf_counter() - began, 3)
    began = time.perf_counter()
    loaded_tokens = await store.load_all_tokens()
    out["load_all_tokens_s"] = round(time.perf_counter() - began, 3)
    began = time.perf_counter()
    loaded_health = await store.load_all_health()
    out["load_all_health_s"] = round(time.perf_counter() - began, 3)
    assert len(loaded_tokens) == len(loaded_health) == n
    await store.close()

    full = _AlwaysFullSync(path, Keyring([key]))
    await full.open()
    full_times = await batched_health(full, n, 2)
    out["save_health_batch_1000_full_sync_ms_mean"] = round(statistics.mean(full_times) * 1000, 2)
    await full.close()

    rotated = SqliteStore(path, Keyring([generate_key(), key]))
    await rotated.open()
    began = time.perf_counter()
    out["reencrypt_all_rows"] = await rotated.reencrypt_all()
    out["reencrypt_all_s"] = round(time.perf_counter() - began, 3)
    await rotated.close()
    out["file_bytes"] = sum(entry.stat().st_size for entry in os.scandir(directory))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=100_000)
    parser.add_argument("--saves", type=int, default=2000, help="sequential durable saves")
    parser.add_argument("--dir", type=Path, default=None, help="where the database goes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="snowmon-bench-") as directory:
        result = asyncio.run(run(args.connections, Path(directory), args.saves))
    result["python"] = sys.version.split()[0]
    result["cpus"] = os.cpu_count()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
