"""Which asyncio event loop `snowmon run` runs on: `[daemon] event_loop`.

uvloop (libuv, with its TLS transport written in Cython) holds an idle TLS connection in
about a third of the memory of asyncio's own loop: asyncio's `SSLProtocol` fills a
256 KiB read buffer for every TLS connection, uvloop allocates it without touching it
(docs/benchmarks.md, `bench.conn_memory`). `auto` takes uvloop where it imports, else
asyncio's loop; `uvloop` insists on it. Tests and `snowmon demo` run on the loop they
are given.

uvloop's `loop.time()` is the time the loop iteration began, in whole milliseconds:
durations are measured with `time.perf_counter()`, not with it.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from typing import Literal, get_args

EventLoopChoice = Literal["auto", "uvloop", "asyncio"]
EVENT_LOOPS: tuple[EventLoopChoice, ...] = get_args(EventLoopChoice)
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def uvloop_installed() -> bool:
    """Whether uvloop imports here (installed, and built for this interpreter)."""
    try:
        importlib.import_module("uvloop")
    except ImportError:
        return False
    return True


def resolve(choice: EventLoopChoice) -> Literal["uvloop", "asyncio"]:
    """The loop a choice means on this machine (`auto`: uvloop where it imports)."""
    if choice == "auto":
        return "uvloop" if uvloop_installed() else "asyncio"
    return choice


def loop_factory(choice: EventLoopChoice) -> LoopFactory | None:
    """The `loop_factory` for `asyncio.Runner`: uvloop's, or None for asyncio's own (the
    Runner then makes it as `asyncio.run` does). ImportError if `uvloop` is chosen but
    does not import (the config check refuses that first)."""
    if resolve(choice) == "uvloop":
        import uvloop  # noqa: PLC0415 - optional: asyncio's loop serves where it is missing

        return uvloop.new_event_loop
    return None


def running_loop_name() -> str:
    """`uvloop` or `asyncio`: the package of the running loop's class, for the start log."""
    return type(asyncio.get_running_loop()).__module__.split(".", 1)[0]
