"""What one Prometheus scrape of /metrics costs the daemon, by fleet size.

The web handler renders the exposition in a worker thread (`asyncio.to_thread`), but the
render holds the interpreter lock, so its CPU competes with every probe and refresh (one
interpreter, one core's worth of Python). This builds the daemon's
`Metrics` for N connections (every per-connection row filled, as after a probe and a
token), then times `monitor.telemetry.render` (the handler's work) for the classic text
format and for OpenMetrics, with `per_connection_metrics` on and off. The rows' values
are formatted when written (building the fleet, not timed), as in the daemon.

`--serve` adds one whole scrape per fleet size: the daemon's `/metrics` handler
(`monitor.web.app.metrics`) on an aiohttp server on loopback, read by a client in another
process that sends no Accept header (the classic text format). Measured in this process:
CPU (user and system: render, copies, page faults and the socket writes), and how far
the scrape raised the peak RSS above the RSS before it (the peak is reset first through
/proc/self/clear_refs). To measure the code in DIR/monitor instead (its renderer, whole
or in chunks, whichever it has), run from another directory with
`PYTHONPATH=DIR:/path/to/repo` (`python -m` puts the working directory first); the
JSON's `code` is the digest of the package that ran.

    .venv/bin/python -m bench.scrape_bench                  # 1k, 10k, 100k (~1 min)
    .venv/bin/python -m bench.scrape_bench --quick          # 1k, 10k
    .venv/bin/python -m bench.scrape_bench --serve --connections 100000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from bench import harness as h
from monitor.model import Grant, ProbeReason, ProbeResult, State, TokenSet
from monitor.secret import Secret
from monitor.telemetry import metrics as metrics_module
from monitor.telemetry.metrics import Metrics, render
from monitor.web import app as web_app
from monitor.web.keys import METRICS_RENDER

# The client of `--serve`: reads the whole body, prints its size.
CLIENT = (
    "import sys, urllib.request\n"
    "with urllib.request.urlopen(sys.argv[1], timeout=120) as r:\n"
    "    n = 0\n"
    "    while chunk := r.read(1 << 20):\n"
    "        n += len(chunk)\n"
    "print(n)\n"
)

T0 = 1_800_000_000.0
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def fleet_metrics(n: int, per_connection: bool) -> Metrics:
    metrics = Metrics(CollectorRegistry(), per_connection=per_connection)
    tokens = TokenSet(
        access_token=Secret("a" * 86),
        access_expires_at=T0 + 1799,
        obtained_at=T0,
        refresh_token=Secret("r" * 86),
        refresh_issued_at=T0,
        refresh_expires_at=T0 + 8_640_000,
        grant=Grant.PASSWORD,
    )
    result = ProbeResult(ProbeReason.OK, T0, 0.0123, 200)
    for i in range(n):
        cid = f"dev{100_001 + i}"
        metrics.state_changed(cid, None, State.HEALTHY, T0)
        metrics.token_expiry(cid, tokens)
        metrics.probe_done(cid, result)
    return metrics


def timed(fn: Any, repeat: int) -> tuple[float, int]:
    best, size = float("inf"), 0
    for _ in range(repeat):
        began = time.process_time()
        body = fn()
        best = min(best, time.process_time() - began)
        size = len(body)
    return best, size


def measure(n: int, repeat: int) -> list[dict[str, Any]]:
    rows = []
    for per_connection in (True, False):
        metrics = fleet_metrics(n, per_connection)
        for fmt, accept in (("text", ""), ("openmetrics", OPENMETRICS)):
            registry = metrics.registry
            seconds, size = timed(lambda r=registry, a=accept: render(r, a)[0], repeat)
            rows.append(
                {
                    "connections": n,
                    "per_connection_metrics": per_connection,
                    "format": fmt,
                    "cpu_seconds": round(seconds, 4),
                    "bytes": size,
                }
            )
    return rows


async def served(n: int) -> dict[str, Any]:
    """One scrape of the /metrics handler over loopback, per-connection series on."""
    registry = fleet_metrics(n, per_connection=True).registry
    # Trees before the chunked renderer hand the handler one piece.
    renderer = getattr(metrics_module, "render_chunks", None) or render
    app = web.Application()
    app[METRICS_RENDER] = lambda accept: renderer(registry, accept)
    app.router.add_get("/metrics", web_app.metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = h.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        gc.collect()
        rss_before = h.rss_bytes(os.getpid())
        h.reset_peak_rss()
        before = h.cpu_times(os.getpid())
        client = await h.spawn(
            [h.PYTHON, "-c", CLIENT, f"http://127.0.0.1:{port}/metrics"],
            cpu=h.CONTROL_CPU, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await client.communicate()
        after = h.cpu_times(os.getpid())
        peak = h.rss_bytes(os.getpid(), "VmHWM")
    finally:
        await runner.cleanup()
    return {
        "connections": n,
        "bytes": int(out),
        "user_seconds": round(after[0] - before[0], 3),
        "system_seconds": round(after[1] - before[1], 3),
        "cpu_seconds": round(sum(after) - sum(before), 3),
        "rss_before_mb": round(rss_before / 2**20, 1),
        "peak_rise_mb": round((peak - rss_before) / 2**20, 1),
        "code": h.tree_digest(Path(metrics_module.__file__).parents[1]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--serve", action="store_true", help="also a whole scrape over HTTP")
    args = parser.parse_args()
    if args.quick:
        args.connections, args.repeat = [1000, 10_000], 2
    h.pin(h.SUT_CPU)
    result: dict[str, Any] = {
        "bench": "scrape_bench",
        "command": h.command_line(),
        "machine": h.machine(),
        "rows": [row for n in args.connections for row in measure(n, args.repeat)],
    }
    if args.serve:
        result["served"] = [asyncio.run(served(n)) for n in args.connections]
    path = h.save("scrape_bench", result)
    print(h.json_dumps(result))
    print()
    print(
        h.table(
            ["connections", "per-connection", "format", "CPU s (= loop blocked)", "MB"],
            [
                [
                    r["connections"],
                    r["per_connection_metrics"],
                    r["format"],
                    r["cpu_seconds"],
                    round(r["bytes"] / 2**20, 2),
                ]
                for r in result["rows"]
            ],
        )
    )
    if args.serve:
        print()
        print(
            h.table(
                ["connections", "MB sent", "CPU s", "user s", "system s", "peak rise MB"],
                [
                    [
                        r["connections"],
                        round(r["bytes"] / 2**20, 2),
                        r["cpu_seconds"],
                        r["user_seconds"],
                        r["system_seconds"],
                        r["peak_rise_mb"],
                    ]
                    for r in result["served"]
                ],
            )
        )
    print(f"\nsaved {path.relative_to(h.ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
