"""Run as a separate process by the bad-disk tests (as another user, or in a private mount
namespace): open a SQLite store and write to it, print how it went as one JSON line.

Usage: python -m tests.store.store_probe DB_PATH KEY ACTION  (ACTION: open | fill)
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from monitor.errors import StoreError
from monitor.model import Health, State
from monitor.store.crypto import Keyring
from monitor.store.sqlite import SqliteStore
from tests.store.samples import full_tokens


async def probe(path: Path, key: str, action: str) -> dict[str, object]:
    store = SqliteStore(path, Keyring([key]))
    stage = "open"
    try:
        await store.open()
        stage = "save tokens"
        await store.save_tokens("c1", full_tokens(), expected_version=0)
        if action == "fill":
            stage = "fill"
            for batch in range(100_000):
                padding = "x" * 4000
                await store.save_health(
                    [
                        (f"c{batch}-{i}", Health(State.HEALTHY, 0.0, last_error=padding))
                        for i in range(50)
                    ]
                )
        stage = "read back"
        tokens = await store.load_all_tokens()
        return {"ok": True, "stage": stage, "connections": sorted(tokens)}
    except StoreError as exc:
        failed = {"ok": False, "stage": stage, "error": type(exc).__name__, "message": str(exc)}
        if stage == "fill":  # a full disk must not cost what was already saved
            failed["readable_after"] = sorted(await store.load_all_tokens())
        return failed
    finally:
        await store.close()


def main() -> int:
    path, key, action = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    print(json.dumps(asyncio.run(probe(path, key, action))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
