"""Fleet rate: the steady load of 100,000 connections (a probe every 5 minutes, a 30-minute
access token refreshed at 60-70 % of its life: ~333 probes/s + ~83 refreshes/s), made
by 1,000 connections on a clock running 100 times faster, everything on.

Why a compressed clock: started at real time, a fleet probes all at once at cold start
and next ~5 minutes later, and refreshes first after ~18 minutes, so a short run never
sees the steady mix. At speed S every rate of N connections equals that of N x S
connections at real time (emulator and daemon share the clock: `[clock] speed/anchor`),
and the scheduler's own jitter spreads the fleet over the interval after a few dozen
cycles (one cycle = 3 s). What does not scale: the lag is in wall seconds, so a
refresh's slack before the 5-minute line is 100 times shorter than in real life (a
harsher test), and the heap and memory are those of N connections (`fleet_scale`
measures 100,000 at real time). Nor does the keep-alive of idle HTTP connections: it runs
on the wall clock. At real time a connection is probed every 5 minutes and kept alive
3 s, so every probe and nearly every refresh opens a new TCP connection; at speed 100
(a probe every 3 s of wall time) a 30 s keep-alive would reuse every one. The daemon
therefore runs with `[http] keepalive_timeout = 1` (`--keepalive`, the smallest it
takes; 0.3 s would be the exact scale) against an emulator that gives every instance a
socket of its own, which brings back the real regime; the emulator's count of accepted
TCP connections per request ("conn/req") shows it.

Three variants, each with its own emulator and daemon (CPU 1 for the daemon alone):
- `mixed`: the design load; measures cores, lag and refreshes in time;
- `probes`: the same probes, access tokens that never need a refresh: CPU per probe;
- `refreshes`: the same refreshes, one probe per connection a day: CPU per refresh.

After a warm-up, a window measures the daemon's CPU (/proc), probes and refreshes
(/metrics deltas), the scheduler lag (`snowmon_scheduler_lag_seconds` delta) and the
emulator's evidence. Then /metrics is sampled every second for a while: a connection
whose access-token expiry moved was refreshed in between, and its old expiry minus the
new token's send time is the life its old token had left; "in time" = at least 5
minutes left. Scrapes happen outside the CPU window.

    .venv/bin/python -m bench.fleet_rate                       # 3 variants, ~8 min
    .venv/bin/python -m bench.fleet_rate --quick               # mixed only, < 1 min
    .venv/bin/python -m bench.fleet_rate --connections 1000 --speed 100 --variants mixed
    .venv/bin/python -m bench.fleet_rate --variants mixed --keepalive 30   # reuse connections
    .venv/bin/python -m bench.fleet_rate --variants mixed --tls   # a TLS handshake each
    .venv/bin/python -m bench.fleet_rate --variants probes --tls --connections 10000 \
        --speed 10 --keepalive 3 --loop asyncio   # idle TLS connections at the 100k rate
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shutil
import statistics
from typing import Any

import aiohttp

from bench import harness as h

DESIGN_CONNECTIONS = 100_000
PROBE_INTERVAL = 300.0
ACCESS_LIFESPAN = 1800
IN_TIME_MARGIN = 300.0  # seconds of access-token life left at a refresh
NEVER = 86_400_000  # 1,000 days: a token that needs no refresh during a run
EXPIRY = "snowmon_access_token_expiry_timestamp_seconds"
VARIANTS = ("mixed", "probes", "refreshes")


def in_time(samples: list[dict[str, float]], expires_in: float) -> dict[str, Any]:
    """Life left on the old access token at each refresh seen between two samples."""
    left: list[float] = []
    for before, after in itertools.pairwise(samples):
        for cid, expiry in after.items():
            old = before.get(cid)
            if old is not None and expiry > old + 1.0:
                left.append(old - (expiry - expires_in))
    if not left:
        return {"refreshes_seen": 0}
    left.sort()
    ok = sum(1 for v in left if v >= IN_TIME_MARGIN)
    return {
        "refreshes_seen": len(left),
        "in_time": ok,
        "share_in_time": round(ok / len(left), 5),
        "left_seconds_min": round(left[0], 1),
        "left_seconds_p01": round(left[int(0.01 * (len(left) - 1))], 1),
        "left_seconds_median": round(statistics.median(left), 1),
    }


def counts(samples: h.Samples) -> dict[str, float]:
    return {
        "probes": h.total(samples, "snowmon_probes_total"),
        "probe_failures": h.total(samples, "snowmon_probes_total", result="failure"),
        "refreshes": h.total(samples, "snowmon_token_requests_total", grant="refresh_token"),
        "refresh_ok": h.total(
            samples, "snowmon_token_requests_total", grant="refresh_token", result="ok"
        ),
        "grants": h.total(samples, "snowmon_token_requests_total", grant="password"),
        "spans_dropped": h.total(samples, "snowmon_telemetry_dropped_total"),
    }


async def variant(
    name: str, args: argparse.Namespace, session: aiohttp.ClientSession, sink: h.Sink
) -> dict[str, Any]:
    n, speed = args.connections, args.speed
    workdir = h.work_dir(f"fleet_rate-{name}")
    access = NEVER if name == "probes" else ACCESS_LIFESPAN
    emulator = await h.Emulator.start(
        workdir,
        n,
        speed=speed,
        access_lifespan=access,
        refresh_lifespan=2 * NEVER if name == "probes" else None,
        # a socket per instance, as real instances are hosts of their own: a pool per
        # host:port shared by several instances would keep their connections alive
        own_sockets=args.keepalive < PROBE_INTERVAL / speed,
        tls=args.tls,
    )
    out: dict[str, Any] = {
        "variant": name,
        "connections": n,
        "speed": speed,
        "equivalent_connections_at_real_time": round(n * speed),
        "access_lifespan": access,
        "probe_interval": 86_400.0 if name == "refreshes" else PROBE_INTERVAL,
        "keepalive_seconds": args.keepalive,
        "tls": args.tls,
        "event_loop": h.loop_ran(args.loop),
    }
    try:
        port = h.free_port()
        options = h.DaemonOptions(
            web_port=port,
            max_in_flight=args.max_in_flight,
            probe_interval=86_400.0 if name == "refreshes" else None,
            keepalive=args.keepalive,
            event_loop=args.loop,
        )
        config = h.daemon_config(emulator.config, workdir / "daemon.toml", options)
        first = await emulator.totals(session)
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, **emulator.client_env()}
        daemon = await h.Daemon.start(config, workdir / "daemon.log", port, env=env)
        try:
            async with asyncio.timeout(max(120.0, n * 0.01)):  # 10 ms a connection
                out["all_probed_seconds"] = round(await daemon.wait_probed(n), 3)
            h.log(f"{name}: all probed; warming up for {args.warmup} s")
            await asyncio.sleep(args.warmup)
            try:
                async with asyncio.timeout(args.settle):
                    await h.settle(daemon.pid)
            except TimeoutError:
                h.log("CPU 1 stayed busy with other processes; measuring anyway")

            before, _ = await h.scrape(session, daemon.web_url)
            evidence0 = await emulator.totals(session)
            meter = h.Meter(daemon.pid).start()
            await asyncio.sleep(args.window)
            used = meter.read()
            after, _ = await h.scrape(session, daemon.web_url)
            evidence1 = await emulator.totals(session)

            c0, c1 = counts(before), counts(after)
            delta = {k: c1[k] - c0[k] for k in c1}
            wall = used["wall_seconds"]
            window: dict[str, Any] = {
                **used,
                **{k: int(v) for k, v in delta.items()},
                "probes_per_second": round(delta["probes"] / wall, 1),
                "refreshes_per_second": round(delta["refreshes"] / wall, 1),
                "lag": {k: h.lag_from(after, before, k)[0] for k in ("probe", "refresh")},
                "evidence": (evidence := h.evidence_delta(evidence0, evidence1)),
                "connections_per_request": h.connections_per_request(evidence),
                "event_loop_lag_seconds_last": h.total(after, "snowmon_event_loop_lag_seconds"),
            }
            cpu = used["cpu_seconds"]
            if delta["probes"]:
                window["cpu_seconds_per_1000_probes"] = round(cpu / delta["probes"] * 1e3, 4)
            if delta["refreshes"]:
                window["cpu_seconds_per_1000_refreshes"] = round(cpu / delta["refreshes"] * 1e3, 4)
            operations = delta["probes"] + delta["refreshes"]
            if operations:
                window["cpu_seconds_per_1000_operations"] = round(cpu / operations * 1e3, 4)
            out["window"] = window
            out["rss_bytes"] = h.rss_bytes(daemon.pid)
            out["open_sockets"] = h.open_sockets(daemon.pid)

            if name != "probes" and args.sample_seconds > 0:
                h.log(f"{name}: sampling token expiries for {args.sample_seconds} s")
                expiries = []
                loop = asyncio.get_running_loop()
                end = loop.time() + args.sample_seconds
                while loop.time() < end:
                    samples, _ = await h.scrape(session, daemon.web_url, (EXPIRY,))
                    expiries.append(h.per_connection(samples, EXPIRY))
                    await asyncio.sleep(args.sample_every)
                out["refresh_timing"] = in_time(expiries, access - 1)
        finally:
            out["shutdown_seconds"] = await daemon.close()
        whole = h.evidence_delta(first, await emulator.totals(session))
        out["evidence"] = {
            k: whole[k] for k in ("expired_token_uses", "refresh_overlaps", "grants", "refreshes")
        }
    finally:
        await emulator.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return out


def projection(result: dict[str, Any]) -> dict[str, Any] | None:
    """Cores at 100,000 connections from the per-probe and per-refresh costs."""
    by = {v["variant"]: v["window"] for v in result["variants"]}
    probe = by.get("probes", {}).get("cpu_seconds_per_1000_probes")
    refresh = by.get("refreshes", {}).get("cpu_seconds_per_1000_refreshes")
    if probe is None or refresh is None:
        return None
    probes_per_s = DESIGN_CONNECTIONS / PROBE_INTERVAL
    refreshes_per_s = DESIGN_CONNECTIONS / (ACCESS_LIFESPAN * 0.65)
    return {
        "probes_per_second": round(probes_per_s, 1),
        "refreshes_per_second": round(refreshes_per_s, 1),
        "cores": round((probes_per_s * probe + refreshes_per_s * refresh) / 1e3, 3),
        "note": "probe and refresh costs measured apart (each includes the fixed cost of"
        " 1,000 connections); the fixed cost of 100,000 idle connections is in fleet_scale",
    }


HEADERS = [
    "variant",
    "eq. conns",
    "probes/s",
    "refr/s",
    "cores",
    "s/1k probes",
    "s/1k refr",
    "s/1k ops",
    "probe lag p50",
    "p99",
    "refr lag p50",
    "p99",
    "in time",
    "left min s",
    "expired",
    "overlaps",
    "conn/req",
    "sockets",
    "RSS MB",
    "noise s",
]


def rows(result: dict[str, Any]) -> list[list[object]]:
    out = []
    for v in result["variants"]:
        w = v["window"]
        timing = v.get("refresh_timing", {})
        probe_lag, refresh_lag = w["lag"]["probe"], w["lag"]["refresh"]
        out.append(
            [
                v["variant"],
                v["equivalent_connections_at_real_time"],
                w["probes_per_second"],
                w["refreshes_per_second"],
                w["cores"],
                w.get("cpu_seconds_per_1000_probes") if v["variant"] == "probes" else None,
                w.get("cpu_seconds_per_1000_refreshes") if v["variant"] == "refreshes" else None,
                w.get("cpu_seconds_per_1000_operations"),
                probe_lag["p50_seconds"],
                probe_lag["p99_seconds"],
                refresh_lag["p50_seconds"],
                refresh_lag["p99_seconds"],
                timing.get("share_in_time"),
                timing.get("left_seconds_min"),
                v["evidence"]["expired_token_uses"],
                v["evidence"]["refresh_overlaps"],
                w["connections_per_request"],
                v["open_sockets"],
                round(v["rss_bytes"] / 2**20),
                w["other_on_cpu_seconds"],
            ]
        )
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    h.pin(h.CONTROL_CPU)
    result: dict[str, Any] = {
        "bench": "fleet_rate",
        "command": h.command_line(),
        "machine": h.machine(),
        "variants": [],
    }
    sink = await h.Sink.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            for name in args.variants:
                h.log(f"{name}: {args.connections} connections at speed {args.speed}")
                result["variants"].append(await variant(name, args, session, sink))
            result["sink"] = await sink.stats(session)
    finally:
        await sink.close()
    result["projection_100k"] = projection(result)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--speed", type=float, default=100.0)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before the window")
    parser.add_argument("--window", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--settle", type=float, default=20.0, help="max wait for a quiet CPU")
    parser.add_argument("--sample-seconds", type=float, default=20.0)
    parser.add_argument("--sample-every", type=float, default=1.0)
    parser.add_argument("--max-in-flight", type=int, default=None)
    h.add_connection_arguments(
        parser,
        keepalive=1.0,
        keepalive_help="[http] keepalive_timeout of the daemon, wall seconds (30: reuse every"
        " connection)",
    )
    h.add_loop_argument(parser)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--quick", action="store_true", help="mixed only, short windows")
    args = parser.parse_args()
    h.check_connection_arguments(parser, args)
    if args.quick:
        args.variants, args.warmup, args.window, args.sample_seconds = ["mixed"], 15.0, 15.0, 8.0
        args.settle = 2.0
    result = asyncio.run(main_async(args))
    path = h.save("fleet_rate", result)
    print(h.json_dumps(result))
    print()
    print(h.table(HEADERS, rows(result)))
    if result["projection_100k"]:
        p = result["projection_100k"]
        print(
            f"\nprojected at 100,000 connections: {p['probes_per_second']} probes/s +"
            f" {p['refreshes_per_second']} refreshes/s = {p['cores']} cores"
        )
    print(f"\nsaved {path.relative_to(h.ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
