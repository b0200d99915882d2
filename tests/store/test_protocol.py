"""The `Store` protocol's semantics, run against every backend."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import pytest

from monitor.errors import StaleWriteError
from monitor.model import StoredTokens, TokenSet
from monitor.store import Store
from tests.store.conftest import HISTORY_KEEP
from tests.store.samples import bare_tokens, full_alert, full_health, full_tokens, history_entry


async def test_versions_start_at_one_and_grow_by_one(store: Store) -> None:
    assert await store.load_tokens("c1") is None
    assert await store.save_tokens("c1", full_tokens("1"), expected_version=0) == 1
    assert await store.save_tokens("c1", full_tokens("2"), expected_version=1) == 2
    assert await store.load_tokens("c1") == StoredTokens(full_tokens("2"), 2)


@pytest.mark.parametrize(
    ("stored_writes", "expected_version"),
    [(0, 1), (1, 0), (1, 2), (2, 1)],
    ids=["none-stored-expects-1", "one-stored-expects-0", "ahead", "behind"],
)
async def test_stale_expected_version_is_refused_and_changes_nothing(
    store: Store, stored_writes: int, expected_version: int
) -> None:
    for version in range(stored_writes):
        await store.save_tokens("c1", full_tokens(f"v{version}"), expected_version=version)
    before = await store.load_tokens("c1")

    with pytest.raises(StaleWriteError, match=f"version {stored_writes}, not {expected_version}"):
        await store.save_tokens("c1", full_tokens("intruder"), expected_version=expected_version)

    assert await store.load_tokens("c1") == before


@pytest.mark.parametrize("make", [full_tokens, bare_tokens], ids=["every-field", "no-refresh"])
async def test_token_round_trip_keeps_every_field(
    store: Store, make: Callable[[str], TokenSet]
) -> None:
    tokens = make("rt")
    await store.save_tokens("c1", tokens, expected_version=0)

    loaded = await store.load_tokens("c1")

    assert loaded is not None
    assert loaded.tokens == tokens
    assert loaded.tokens.access_token.reveal() == tokens.access_token.reveal()
    assert loaded.tokens.grant is tokens.grant


async def test_load_all_tokens_returns_every_connection(store: Store) -> None:
    for i in range(20):
        await store.save_tokens(f"c{i}", full_tokens(str(i)), expected_version=0)
    await store.save_tokens("c3", full_tokens("3b"), expected_version=1)

    loaded = await store.load_all_tokens()

    assert set(loaded) == {f"c{i}" for i in range(20)}
    assert loaded["c3"] == StoredTokens(full_tokens("3b"), 2)
    assert loaded["c7"] == StoredTokens(full_tokens("7"), 1)


async def test_delete_tokens_then_grant_again_from_version_zero(store: Store) -> None:
    await store.save_tokens("c1", full_tokens(), expected_version=0)
    await store.delete_tokens("c1")
    await store.delete_tokens("never-stored")

    assert await store.load_tokens("c1") is None
    assert "c1" not in await store.load_all_tokens()
    assert await store.save_tokens("c1", full_tokens("again"), expected_version=0) == 1


async def test_concurrent_writers_with_the_same_version_exactly_one_wins(store: Store) -> None:
    await store.save_tokens("c1", full_tokens("base"), expected_version=0)

    results = await asyncio.gather(
        *(store.save_tokens("c1", full_tokens(f"w{i}"), expected_version=1) for i in range(50)),
        return_exceptions=True,
    )

    winners = [i for i, result in enumerate(results) if result == 2]
    assert len(winners) == 1
    assert all(isinstance(r, StaleWriteError) for i, r in enumerate(results) if i != winners[0])
    assert await store.load_tokens("c1") == StoredTokens(full_tokens(f"w{winners[0]}"), 2)


async def test_concurrent_writers_to_different_connections_all_win(store: Store) -> None:
    results = await asyncio.gather(
        *(store.save_tokens(f"c{i}", full_tokens(str(i)), expected_version=0) for i in range(50))
    )

    assert results == [1] * 50
    assert len(await store.load_all_tokens()) == 50


async def test_health_round_trip_and_latest_snapshot_wins(store: Store) -> None:
    await store.save_health([("c1", full_health(0)), ("c2", full_health(1))])
    await store.save_health([("c1", full_health(5)), ("c1", full_health(6))])
    await store.save_health([])

    assert await store.load_all_health() == {"c1": full_health(6), "c2": full_health(1)}


async def test_history_is_newest_first_and_bounded_per_connection(store: Store) -> None:
    entries = [history_entry("c1", n) for n in range(12)]
    await store.append_history(entries[:4])
    await store.append_history([*entries[4:], history_entry("c2", 100)])
    await store.append_history([])

    recent = await store.recent_history("c1", 100)

    assert recent == entries[::-1][:HISTORY_KEEP]
    assert await store.recent_history("c1", 2) == entries[::-1][:2]
    assert await store.recent_history("c1", 0) == []
    assert await store.recent_history("c2", 10) == [history_entry("c2", 100)]
    assert await store.recent_history("unknown", 10) == []


async def test_alerts_upsert_delete_and_round_trip(store: Store) -> None:
    first = full_alert("c1", "probe_failing")
    await store.save_alerts([first, full_alert("c1"), full_alert("c2")])
    updated = dataclasses.replace(full_alert("c1"), last_notified_at=99.0, extra={})
    await store.save_alerts([updated])
    await store.delete_alerts([("c2", "credentials_expired"), ("c9", "nothing")])
    await store.save_alerts([])
    await store.delete_alerts([])

    loaded = sorted(await store.load_alerts(), key=lambda r: (r.connection_id, r.alert))

    assert loaded == [updated, first]


async def test_outbox_keeps_payloads_until_deleted(store: Store) -> None:
    await store.outbox_put("k2", '{"text":"second"}')
    await store.outbox_put("k1", '{"text":"first"}')
    await store.outbox_put("k2", '{"text":"second, edited"}')
    await store.outbox_delete("k1")
    await store.outbox_delete("k-missing")

    assert await store.outbox_all() == [("k2", '{"text":"second, edited"}')]


async def test_ping_answers_while_open(store: Store) -> None:
    await store.ping()


async def test_load_alerts_for_reads_just_those_connections(store: Store) -> None:
    records = [
        full_alert("c1", "probe_failing"),
        full_alert("c1"),
        full_alert("c2"),
        full_alert("c3"),
        full_alert("c10"),
    ]
    await store.save_alerts(records)

    loaded = await store.load_alerts_for(["c3", "c1", "missing"])

    key = lambda r: (r.connection_id, r.alert)  # noqa: E731
    assert sorted(loaded, key=key) == sorted([records[0], records[1], records[3]], key=key)
    assert await store.load_alerts_for([]) == []
    assert await store.load_alerts_for(["c10"]) == [records[4]]
