"""What one Prometheus scrape of /metrics costs the daemon, by fleet size.

The web handler renders the exposition in a worker thread (`asyncio.to_thread`), but the
render holds the interpreter lock, so its CPU competes with every probe and refresh (one
interpreter, one core's worth of Python). This builds the daemon's
`Metrics` for N connections (every per-connection row filled, as after a probe and a
token), then times `monitor.telemetry.render` (the handler's work) for the classic text
format and for OpenMetrics, with `per_connection_metrics` on and off. The rows' values
are formatted when written (building the fleet, not timed), as in the daemon.

    .venv/bin/python -m bench.scrape_bench                  # 1k, 10k, 100k (~1 min)
    .venv/bin/python -m bench.scrape_bench --quick          # 1k, 10k
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from prometheus_client import CollectorRegistry

from bench import harness as h
from monitor.model import Grant, ProbeReason, ProbeResult, State, TokenSet
from monitor.secret import Secret
from monitor.telemetry.metrics import Metrics, render

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
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
    print(f"\nsaved {path.relative_to(h.ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
