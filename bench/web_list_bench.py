"""How fast the status API and page answer for a big fleet (default 10,000 connections).

    .venv/bin/python -m bench.web_list_bench [--connections 10000] [--requests 50]

Serves the web app on 127.0.0.1 with an in-memory fleet and times real HTTP requests
(one keep-alive client, one request at a time), then times the same handlers' rendering
without HTTP. The bar: the connection list answers in well under 100 ms at 10,000.
The in-memory fleet's `statuses()` is a list copy; the keeper's own `statuses()` cost
(building a snapshot per connection) comes on top: measured last, alone and with the
list and the page served from a real keeper of the same size.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

import aiohttp
from aiohttp import web

from monitor.clock import ManualClock
from monitor.health import Thresholds
from monitor.keeper import Keeper
from monitor.model import Grant
from monitor.schedule import Scheduler
from monitor.secret import Secret
from monitor.store.memory import MemoryStore
from monitor.telemetry import Telemetry, TelemetrySettings
from monitor.web import WebSettings, build_app
from monitor.web.api import select
from monitor.web.page import render_page
from monitor.web.ports import FleetView
from monitor.web.render import connection_json, summary_json
from tests.daemon.harness import Conn
from tests.web.fakes import T0, FakeFleet, FakeReadiness, render_metrics, sample_fleet

TOKEN = "bench-read-token"
PATHS = [
    "/api/v1/connections",
    "/api/v1/connections?limit=1000",
    "/api/v1/connections?state=failing&label=customer:acme",
    "/api/v1/connections?offset=9900",
    "/api/v1/connections/acme-00000",
    "/api/v1/summary",
    "/",
]


def describe(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return (
        f"median {statistics.median(ordered) * 1000:7.2f} ms  "
        f"p95 {p95 * 1000:7.2f} ms  max {ordered[-1] * 1000:7.2f} ms"
    )


def time_calls(fn: Callable[[], object], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


async def serve_and_time(
    fleet: FleetView, clock: ManualClock, paths: list[str], requests: int, label: str
) -> None:
    """Serve the web app over `fleet` on loopback; time `requests` GETs of each path."""
    app = build_app(
        fleet=fleet,
        readiness=FakeReadiness(),
        metrics_render=render_metrics,
        settings=WebSettings(read_tokens=[Secret(TOKEN)]),
        clock=clock,
        tracer_provider=None,
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession(f"http://{host}:{port}", headers=headers) as session:
            for path in paths:
                samples, size = [], 0
                for _ in range(requests):
                    start = time.perf_counter()
                    async with session.get(path) as response:
                        body = await response.read()
                        assert response.status == 200, (path, response.status)
                    samples.append(time.perf_counter() - start)
                    size = len(body)
                print(f"{label} {path:58} {describe(samples)}  {size / 1024:7.1f} KiB")
    finally:
        await runner.cleanup()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    clock = ManualClock(T0)
    statuses = sample_fleet(args.connections)
    print(f"{args.connections} connections, {args.requests} requests per path")
    await serve_and_time(FakeFleet.of(clock, statuses), clock, PATHS, args.requests, "HTTP")

    print("without HTTP:")
    n = args.requests
    rows = {
        "select (no filter) + sort by id": lambda: select(statuses, None, []),
        "render 100 connections": lambda: [connection_json(s) for s in statuses[:100]],
        "render 1000 connections": lambda: [connection_json(s) for s in statuses[:1000]],
        "summary": lambda: summary_json(statuses, T0, 7 * 86400),
        "status page": lambda: render_page(
            statuses, now=T0, label=None, can_reauthorize=lambda _: True
        ),
    }
    for name, fn in rows.items():
        print(f"     {name:58} {describe(time_calls(fn, n))}")
    await keeper_statuses(args.connections, n)


async def keeper_statuses(count: int, n: int) -> None:
    """What the fake leaves out: the keeper's own `statuses()`, one snapshot per
    connection per request (added to every list, summary and page request)."""
    clock = ManualClock(T0)
    conns = [
        Conn(
            id=f"acme-{i:05d}",
            instance_url=f"https://acme{i}.service-now.com",
            grant=Grant.PASSWORD,
            client_id="c" * 32,
            client_secret=Secret("s"),
            username="u",
            password=Secret("p"),
        )
        for i in range(count)
    ]
    telemetry = Telemetry.create(TelemetrySettings(traces="none"))
    async with aiohttp.ClientSession() as session:
        keeper = Keeper(
            connections=conns,
            store=MemoryStore(),
            session=session,
            clock=clock,
            scheduler=Scheduler(clock, max_in_flight=64),
            metrics=telemetry.metrics,
            tracer=telemetry.tracer,
            thresholds=Thresholds(),
            request_timeout=5.0,
        )
        print(
            f"     {'Keeper.statuses() of ' + str(count):58} "
            f"{describe(time_calls(keeper.statuses, n))}"
        )
        # The list and the page served from the real keeper (all connections pending).
        await serve_and_time(keeper, clock, ["/api/v1/connections", "/"], n, "keeper HTTP")


if __name__ == "__main__":
    asyncio.run(main())
