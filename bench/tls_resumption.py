"""Would TLS session resumption make an HTTPS probe cheaper? The client's CPU per request
with a full handshake each time against one resumed from the instance's last session.

At the design point every probe opens a new connection, and over HTTPS that is a
handshake: most of a probe's CPU (docs/benchmarks.md, fifth round). Neither asyncio's
nor uvloop's SSL transport resumes a session, but both create their `SSLObject` through
`SSLContext.wrap_bio`, so a context subclass can hand in the last session of the same
host. This measures what that would save before anything is built on it: one aiohttp
session (a new connection per request, `force_close`) makes N requests round-robin over
200 emulated instances (a socket each, the emulator's `--tls`, in its own process),
on asyncio's loop and on uvloop, alternating full and resumed, and reports the client
process's own CPU per request and how many handshakes were resumed.

    .venv/bin/python -m bench.tls_resumption                 # 2,000 requests a run (~1 min)
    .venv/bin/python -m bench.tls_resumption --requests 500
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import ssl
import statistics
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bench import harness as h
from monitor.event_loop import EventLoopChoice, loop_factory

INSTANCES = 200
LOOPS: tuple[EventLoopChoice, ...] = ("asyncio", "uvloop")


class ResumingContext(ssl.SSLContext):
    """Hands every new client `SSLObject` the last session of its host, if any."""

    def __init__(self, protocol: int) -> None:  # SSLContext.__new__ takes the protocol
        self.sessions: dict[str, ssl.SSLSession] = {}
        self.last: dict[str, ssl.SSLObject] = {}

    def wrap_bio(  # type: ignore[override]
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        if session is None and server_hostname is not None:
            session = self.sessions.get(server_hostname)
        obj = super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        if server_hostname is not None:
            self.last[server_hostname] = obj
        return obj

    @classmethod
    def trusting(cls, ca_file: str) -> ResumingContext:
        """A client context (hostname checked) that trusts `ca_file`."""
        context = cls(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(ca_file)
        return context

    def keep(self, host: str) -> bool:
        """Keep `host`'s session for its next handshake; whether this one was resumed."""
        obj = self.last[host]
        if obj.session is not None:
            self.sessions[host] = obj.session
        return obj.session_reused


async def requests(urls: list[str], context: ssl.SSLContext | bool, n: int) -> dict[str, Any]:
    """N requests, a new connection each; resumed when `context` is a ResumingContext."""
    resuming = context if isinstance(context, ResumingContext) else None
    connector = aiohttp.TCPConnector(ssl=context, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(url: str) -> bool:
            async with session.get(url) as response:
                await response.read()
            return resuming is not None and resuming.keep(urlsplit(url).hostname or "")

        for url in urls:  # a first session for every host
            await one(url)
        started = time.process_time()
        resumed = sum([await one(urls[k % len(urls)]) for k in range(n)])
        cpu = time.process_time() - started
    return {
        "resume": resuming is not None,
        "requests": n,
        "resumed": resumed,
        "cpu_us": cpu / n * 1e6,
    }


async def measure(loop: str, n: int) -> list[dict[str, Any]]:
    """One emulator (its own process) and, on this loop, full and resumed in turn."""
    workdir = h.work_dir("tls_resumption")
    emulator = await h.Emulator.start(workdir, INSTANCES, own_sockets=True, tls=True)
    try:
        async with aiohttp.ClientSession() as session:
            fleet = await emulator.get(session, f"/admin/fleet?limit={INSTANCES}")
        urls = [i["base_url"] + h.PROBE_QUERY for i in fleet["instances"]]
        ca_file = emulator.ca_file
        if ca_file is None:
            raise RuntimeError("the emulator announced no ca_file")
        runs = []
        for resume in (False, True, False, True):
            # a new context each run: a session is only resumed through the context it
            # came from, so every resumed run starts with none
            context = ResumingContext.trusting(ca_file) if resume else emulator.ssl_context()
            runs.append({"loop": loop, **await requests(urls, context, n)})
        return runs
    finally:
        await emulator.close()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    h.pin(h.SUT_CPU)  # the client; the emulator runs pinned to the other CPU
    runs = []
    for loop in LOOPS:
        with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
            runs += runner.run(measure(loop, args.requests))
    summary = {
        f"{loop} {'resumed' if resume else 'full'}": round(
            statistics.median(
                r["cpu_us"] for r in runs if r["loop"] == loop and r["resume"] == resume
            )
        )
        for loop in LOOPS
        for resume in (False, True)
    }
    result = {
        "bench": "tls_resumption",
        "command": h.command_line(),
        "machine": h.machine(),
        "instances": INSTANCES,
        "runs": runs,
        "median_cpu_us_per_request": summary,
    }
    path = h.save("tls_resumption", result)
    print(h.json_dumps(result))
    print()
    print(
        h.table(
            ["loop", "handshake", "requests", "resumed", "CPU µs / request"],
            [
                [r["loop"], "resumed" if r["resume"] else "full", r["requests"], r["resumed"],
                 round(r["cpu_us"])]
                for r in runs
            ],
        )
    )  # fmt: skip
    print(f"\nsaved {path.relative_to(h.ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
