"""Which asyncio event loop `snowmon run` runs on: `[daemon] event_loop`.

uvloop (libuv, with its TLS transport written in Cython) holds an idle TLS connection in
about a third of the memory of asyncio's own loop: asyncio's `SSLProtocol` fills a
256 KiB read buffer for every TLS connection, uvloop allocates it without touching it
(docs/benchmarks.md, `bench.conn_memory`). `auto` takes uvloop where it is installed,
else asyncio's loop; `uvloop` insists on it. Tests and `snowmon demo` run on the loop
they are given.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from typing import Literal

EventLoopChoice = Literal["auto", "uvloop", "asyncio"]
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def uvloop_installed() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def resolve(choice: EventLoopChoice) -> Literal["uvloop", "asyncio"]:
    """The loop a choice means on this machine (`auto`: uvloop when installed)."""
    if choice == "auto":
        return "uvloop" if uvloop_installed() else "asyncio"
    return choice


def loop_factory(choice: EventLoopChoice) -> LoopFactory:
    """A new-loop factory for `asyncio.Runner`; ImportError if `uvloop` is chosen but
    missing (the config check refuses that first)."""
    if resolve(choice) == "uvloop":
        import uvloop  # noqa: PLC0415 - optional: asyncio's loop serves where it is missing

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def running_loop_name() -> str:
    """`uvloop` or `asyncio`: the package of the running loop's class, for the start log."""
    return type(asyncio.get_running_loop()).__module__.split(".", 1)[0]
