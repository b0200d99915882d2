"""Collector trouble: what a down, failing or slow OTLP collector costs the daemon.

For each scenario the event loop makes `--rate` spans per second (shaped like the HTTP
client spans) for `--seconds`, exporting with the daemon's settings (bounded queue of
2048, batches of 512, 3 s export timeout), while a watcher samples event-loop lag every
10 ms. The collector runs in another process. Scenarios: a healthy collector, a closed
port, a collector answering 500, a collector that holds every request for 30 s.

Reports per scenario: event-loop lag (p50/p99/max, ms), CPU of the process (% of one
core), RSS at start/end and its peak, spans exported/dropped and export failures, and how
long shutdown took. Prints one JSON object; the exporter's own log lines go to stderr.

    .venv/bin/python bench/telemetry_collector_down.py [--rate 2000] [--seconds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from monitor.telemetry import Telemetry, TelemetrySettings, configure_logging

COLLECTOR = """
import asyncio, sys
from aiohttp import web
mode = sys.argv[2]
async def receive(request):
    await request.read()
    if mode == "fail":
        return web.Response(status=500, text="broken")
    if mode == "slow":
        await asyncio.sleep(30)
    return web.Response(body=b"", content_type="application/x-protobuf")
app = web.Application(client_max_size=64 * 1024 * 1024)
app.router.add_post("/v1/traces", receive)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None,
            shutdown_timeout=0.1)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def rss_kib() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in KiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux >= 4.0)


async def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError("collector did not start")


async def scenario(mode: str, rate: int, seconds: float, batch: int) -> dict[str, object]:
    port = free_port()
    server = None
    if mode not in ("closed_port", "traces_off"):
        server = subprocess.Popen([sys.executable, "-c", COLLECTOR, str(port), mode])  # noqa: ASYNC220
        await wait_listening(port)
    settings = TelemetrySettings(
        otlp_endpoint=f"http://127.0.0.1:{port}",
        traces="none" if mode == "traces_off" else "otlp",
        max_export_batch_size=batch,
    )
    telemetry = Telemetry.create(settings)
    tracer = telemetry.tracer
    reset_peak_rss()
    rss_start, _ = rss_kib()
    lags: list[float] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def watch() -> None:
        while not stop.is_set():
            asked = loop.time() + 0.01
            await asyncio.sleep(0.01)
            lags.append(loop.time() - asked)

    produced = 0

    async def produce() -> None:
        nonlocal produced
        tick = 0.01
        per_tick = max(1, round(rate * tick))
        end = loop.time() + seconds
        n = 0
        while loop.time() < end:
            for _ in range(per_tick):
                span = tracer.start_span("GET")
                span.set_attribute("http.request.method", "GET")
                span.set_attribute("url.full", "https://acme.service-now.com/api/now/table/x")
                span.set_attribute("server.address", "acme.service-now.com")
                span.set_attribute("server.port", 443)
                span.set_attribute("http.response.status_code", 200)
                span.set_attribute("snowmon.connection", f"conn-{n % 100000:06d}")
                span.end()
                n += 1
            await asyncio.sleep(tick)
        produced = n
        stop.set()

    cpu0, wall0 = time.process_time(), time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(watch())
        tg.create_task(produce())
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    rss_end, rss_peak = rss_kib()
    shutdown0 = time.perf_counter()
    await telemetry.aclose()
    shutdown = time.perf_counter() - shutdown0
    if server is not None:
        server.terminate()
        server.wait(10)

    def sample(name: str, **labels: str) -> float:
        return telemetry.registry.get_sample_value(name, labels) or 0.0

    lags_ms = sorted(x * 1000 for x in lags)
    return {
        "spans": produced,
        "loop_lag_ms": {
            "p50": round(statistics.median(lags_ms), 2),
            "p99": round(lags_ms[int(len(lags_ms) * 0.99)], 2),
            "max": round(lags_ms[-1], 2),
        },
        "cpu_percent_of_one_core": round(cpu / wall * 100, 1),
        "rss_mib": {
            "start": round(rss_start / 1024, 1),
            "end": round(rss_end / 1024, 1),
            "peak": round(rss_peak / 1024, 1),
        },
        "export_failures": sample("snowmon_telemetry_export_failures_total", signal="traces"),
        "dropped": {
            reason: sample("snowmon_telemetry_dropped_total", signal="traces", reason=reason)
            for reason in ("queue_full", "export_failed", "shutdown")
        },
        "shutdown_s": round(shutdown, 2),
    }


async def run(rate: int, seconds: float, batch: int, modes: list[str]) -> dict[str, object]:
    results: dict[str, object] = {}
    for mode in modes:
        results[mode] = await scenario(mode, rate, seconds, batch)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=2000, help="spans per second")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--batch", type=int, default=TelemetrySettings().max_export_batch_size)
    parser.add_argument(
        "--modes", default="traces_off,ok,closed_port,fail,slow", help="comma-separated"
    )
    args = parser.parse_args()
    configure_logging("info", "json", stream=sys.stderr)  # the exporter's complaints
    report = {
        "rate_spans_per_s": args.rate,
        "seconds": args.seconds,
        "max_export_batch_size": args.batch,
        "scenarios": asyncio.run(run(args.rate, args.seconds, args.batch, args.modes.split(","))),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
