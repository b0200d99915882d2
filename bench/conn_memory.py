"""What an idle kept-alive connection costs the client in memory, over HTTP and HTTPS.

The daemon's pool keeps a connection open for `[http] keepalive_timeout` after its last
request, so at a steady request rate R about R x keepalive connections sit idle at any
moment (at the design point ~417 requests/s: ~1,250 at the default 3 s). This opens N
connections to N emulated instances (a socket each) from one aiohttp session with the
daemon's pool settings but a keep-alive longer than the run, one Table API request on
each, and reports how much the client's RSS grew per connection held, once over HTTP
and once over HTTPS (the emulator's `--tls`, trusted through an SSL context), on
asyncio's event loop and on uvloop's (`[daemon] event_loop`). Each runs in a process of
its own, so no two share an allocator's history.

    .venv/bin/python -m bench.conn_memory                  # 2,000 connections (~60 s)
    .venv/bin/python -m bench.conn_memory --connections 500 --loop asyncio
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import ssl
import sys
from typing import Any

import aiohttp

from bench import harness as h
from monitor.event_loop import loop_factory


async def hold(fleet_file: str, ca_file: str | None) -> dict[str, Any]:
    """In the child: open a connection to every instance, keep them all, measure."""
    with open(fleet_file, encoding="utf-8") as f:  # noqa: ASYNC230 - before any I/O runs
        instances = json.load(f)["instances"]
    context: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=ca_file) if ca_file is not None else True
    )
    async with h.bare_session(3600, limit=0, ssl=context) as session:
        semaphore = asyncio.Semaphore(100)

        async def one(instance: dict[str, str]) -> None:
            async with semaphore, session.get(instance["base_url"] + h.PROBE_QUERY) as r:
                await r.read()

        await one(instances[0])  # the session's own first-use allocations
        before = h.rss_bytes(os.getpid())
        held = instances[1:]
        await asyncio.gather(*(one(i) for i in held))
        after = h.rss_bytes(os.getpid())
        return {
            "connections": len(held),
            "rss_before_bytes": before,
            "rss_after_bytes": after,
            "kb_per_connection": round((after - before) / len(held) / 1024, 1),
        }


async def measure(n: int, tls: bool, loop: str) -> dict[str, Any]:
    workdir = h.work_dir(f"conn_memory-{'https' if tls else 'http'}")
    emulator = await h.Emulator.start(workdir, n + 1, own_sockets=True, tls=tls)
    try:
        async with aiohttp.ClientSession() as session:
            fleet_file = await emulator.write_fleet(session, n + 1, workdir / "fleet.json")
        child = await h.spawn(
            [h.PYTHON, "-m", "bench.conn_memory", "--hold", str(fleet_file),
             "--loop", loop, *(["--ca-file", emulator.ca_file] if emulator.ca_file else [])],
            cpu=h.SUT_CPU, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        result = await h.read_json_line(child, "the holding client")
        await child.wait()
    finally:
        await emulator.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return {"scheme": "https" if tls else "http", "loop": loop, **result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--hold", help=argparse.SUPPRESS)  # the child's fleet file
    parser.add_argument("--ca-file", help=argparse.SUPPRESS)
    parser.add_argument(
        "--loop",
        choices=["asyncio", "uvloop", "both"],
        default="both",
        help="the holding client's event loop (default: both, one run each)",
    )
    args = parser.parse_args()
    if args.hold is not None:
        with asyncio.Runner(loop_factory=loop_factory(args.loop)) as runner:
            held = runner.run(hold(args.hold, args.ca_file))
        sys.stdout.write(json.dumps(held) + "\n")
        return 0
    loops = ["asyncio", "uvloop"] if args.loop == "both" else [args.loop]
    h.pin(h.CONTROL_CPU)
    result: dict[str, Any] = {
        "bench": "conn_memory",
        "command": h.command_line(),
        "machine": h.machine(),
        "runs": [
            asyncio.run(measure(args.connections, tls, loop))
            for loop in loops
            for tls in (False, True)
        ],
    }
    path = h.save("conn_memory", result)
    print(h.json_dumps(result))
    print()
    print(
        h.table(
            ["loop", "scheme", "connections held", "KB per connection"],
            [
                [r["loop"], r["scheme"], r["connections"], r["kb_per_connection"]]
                for r in result["runs"]
            ],
        )
    )
    print(f"\nsaved {path.relative_to(h.ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
