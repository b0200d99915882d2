"""Serve an aiohttp app from a thread of its own, for clients that block (schemathesis)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from aiohttp import web


@contextmanager
def serve_in_thread(make: Callable[[], web.Application]) -> Iterator[str]:
    """Yield the base URL of `make()` served on 127.0.0.1 from another thread's loop."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()
    base_url: list[str] = []
    failure: list[BaseException] = []

    async def main() -> None:
        runner = web.AppRunner(make(), access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            base_url.append(f"http://{host}:{port}")
            ready.set()
            await stop.wait()
        finally:
            await runner.cleanup()

    def run() -> None:
        try:
            loop.run_until_complete(main())
        except (OSError, RuntimeError) as exc:  # reported to the test thread below
            failure.append(exc)
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="web-under-test", daemon=True)
    thread.start()
    if not ready.wait(10) or failure:
        raise RuntimeError(f"the server did not start: {failure}")
    try:
        yield base_url[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
