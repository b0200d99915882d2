"""`daemon.store` URLs to backends."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from monitor.errors import StoreError
from monitor.store.crypto import Keyring
from monitor.store.factory import open_store
from monitor.store.sqlite import SqliteStore
from tests.store.samples import history_entry


async def test_sqlite_url_names_an_absolute_file(tmp_path: Path, key_a: str) -> None:
    store = open_store(f"sqlite://{tmp_path}/fleet.db", Keyring([key_a]), history_per_connection=2)

    assert isinstance(store, SqliteStore)
    assert store.path == tmp_path / "fleet.db"
    await store.open()
    await store.append_history([history_entry("c1", n) for n in range(5)])
    assert len(await store.recent_history("c1", 10)) == 2
    await store.close()


def test_sqlite_url_may_be_relative(key_a: str) -> None:
    store = open_store("sqlite://state/snowmon.db", Keyring([key_a]), history_per_connection=5)

    assert isinstance(store, SqliteStore)
    assert store.path == Path("state/snowmon.db")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://", "store URL 'sqlite://' names no file"),
        ("mysql://root:hunter2@db/x", "store URL scheme 'mysql' is not supported"),
        ("/var/lib/snowmon.db", "store URL scheme '(none)' is not supported"),
    ],
)
def test_unusable_urls_are_clear_and_never_echo_credentials(
    url: str, message: str, key_a: str
) -> None:
    with pytest.raises(StoreError, match=re.escape(message)) as info:
        open_store(url, Keyring([key_a]), history_per_connection=5)

    assert "hunter2" not in str(info.value)
