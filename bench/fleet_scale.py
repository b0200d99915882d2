"""Fleet scale: cold start, memory, restart and bursts at 1,000, 10,000 and 100,000
connections, with everything on (scheduler, spans exported to a local OTLP sink, one
JSON log line per request to a file, metrics).

Per step: the emulator runs in its own process on CPU 0 and writes the daemon config
(probes every 5 minutes, access tokens of 30 minutes, real time); `snowmon run` runs
alone on CPU 1. Measured, daemon only, from /proc:

- cold start: process start -> config loaded (`daemon.started`) -> every connection
  probed once (a Table API answer in the log for each), with the CPU it took, the
  emulator's CPU meanwhile (which side was the bottleneck), the scheduler lag of planned
  work and the first-run wait (a start's first grants and probes run as slots allow:
  the wait from the moment each may start to its start);
- memory: RSS after cold start, per connection, and the peak;
- an idle window after cold start (at real time no probe is due again for ~4.5 minutes
  and no refresh for ~18): the fleet's fixed cost per second;
- one /metrics scrape: its wall time, size and daemon CPU (it runs on the event loop);
- restart with the full store: load (tokens decrypted from SQLite), then every
  connection probed again, without a single new grant (emulator evidence), and the CPU
  per 1,000 probes of that burst;
- emulator evidence over the step: expired access tokens used, overlapping refreshes;
- with `--floor`, the floor of a cold start: `bench.bare_loop --coldstart` (bare aiohttp,
  no telemetry, no scheduler, no store) makes the same password grant and first probe
  for every connection on the same CPU and emulator, after the daemon's runs; snowmon's
  cold start after its load is reported as a multiple of it, in seconds and in CPU. The
  daemon spreads a start's first probes over `initial_spread` (30 s) on purpose, so
  below ~25,000 connections its cold start takes that spread whatever its speed: there
  only the CPU ratio says something, and both sides are CPU-bound at 100,000.

At real time this run holds no refresh and no steady probe rate; `fleet_rate` measures
those on a compressed clock.

    .venv/bin/python -m bench.fleet_scale                  # 1k, 10k, 100k (~10 min)
    .venv/bin/python -m bench.fleet_scale --quick          # 2k at speed 10 (< 1 min)
    .venv/bin/python -m bench.fleet_scale --steps 100000 --window 30
    .venv/bin/python -m bench.fleet_scale --steps 20000 --floor
    .venv/bin/python -m bench.fleet_scale --steps 20000 --floor --loop asyncio

Prints one JSON object (also saved under bench/results/), then a table.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench import harness as h

SCALE_BARS = {"cold_start_seconds": 60.0, "bytes_per_connection": 15 * 1024}


async def wait_started(daemon: h.Daemon) -> tuple[float, float]:
    """Seconds from spawn to the `daemon.started` line, and the daemon's CPU then."""
    while daemon.log.started_at is None:
        daemon.log.poll()
        if daemon.process.returncode is not None:
            raise RuntimeError(f"daemon exited early; see {daemon.log.path}")
        await asyncio.sleep(0.05)
    cpu = h.cpu_seconds(daemon.pid)
    return daemon.log.started_at - daemon.spawned_wall, cpu


async def run_daemon_until_probed(daemon: h.Daemon, n: int, limit: float) -> dict[str, Any]:
    """Watch one daemon from spawn until all `n` connections were probed."""
    meter = h.Meter(daemon.pid).start()
    async with asyncio.timeout(limit):
        load_seconds, load_cpu = await wait_started(daemon)
        probed_seconds = await daemon.wait_probed(n, poll=0.25)
    used = meter.read()
    after_load = used["cpu_seconds"] - load_cpu
    return {
        "config_and_store_load_seconds": round(load_seconds, 3),
        "all_probed_seconds": round(probed_seconds, 3),
        "daemon": used,
        "cpu_seconds_load": round(load_cpu, 3),
        "cpu_seconds_after_load": round(after_load, 3),
        "probe_requests": daemon.log.probe_requests,
        "probe_statuses": {str(k): v for k, v in daemon.log.probe_statuses.items()},
    }


async def coldstart_floor(
    emulator: h.Emulator, session: aiohttp.ClientSession, n: int, workdir: Path, limit: float
) -> dict[str, Any]:
    """The bare aiohttp cold start of the same fleet, on the daemon's CPU."""
    fleet = await emulator.write_fleet(session, n, workdir / "fleet.json")
    process = await h.spawn(
        [h.PYTHON, "-m", "bench.bare_loop", "--coldstart", str(fleet)],
        cpu=h.SUT_CPU, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(limit):
            await h.read_json_line(process, "the bare cold start")
            meter = h.Meter(process.pid).start()  # for its cores and the noise
            emulator_meter = h.Meter(emulator.pid, cpu=h.CONTROL_CPU).start()
            done = await h.read_json_line(process, "the bare cold start")
            used, emulator_used = meter.read(), emulator_meter.read()
    finally:
        await h.stop(process, 10)
    if done["statuses"] != {"200": n}:  # a floor with failures would look faster than it is
        raise RuntimeError(f"the bare cold start did not probe all {n}: {done['statuses']}")
    return {
        "seconds": done["seconds"],
        "cpu_seconds": done["cpu_seconds"],  # its own, over exactly its timed part
        "bare": used,
        "emulator": emulator_used,
        "cpu_ms_per_connection": round(done["cpu_seconds"] / n * 1e3, 3),
        "statuses": done["statuses"],
    }


def telemetry_counts(samples: h.Samples) -> dict[str, float]:
    return {
        "spans_dropped": h.total(samples, "snowmon_telemetry_dropped_total"),
        "export_failures": h.total(samples, "snowmon_telemetry_export_failures_total"),
        "probes_total": h.total(samples, "snowmon_probes_total"),
        "probe_failures": h.total(samples, "snowmon_probes_total", result="failure"),
    }


async def step(
    n: int, args: argparse.Namespace, session: aiohttp.ClientSession, sink: h.Sink
) -> dict[str, Any]:
    workdir = h.work_dir(f"fleet_scale-{n}")
    limit = args.limit_seconds
    h.log(f"{n}: starting the emulator")
    emulator = await h.Emulator.start(workdir, n, speed=args.speed)
    out: dict[str, Any] = {
        "connections": n,
        "speed": args.speed,
        "emulator_spawn_to_ready_seconds": round(emulator.spawned_at, 3),
        "event_loop": h.loop_ran(args.loop),
    }
    try:
        port = h.free_port()
        config = h.daemon_config(
            emulator.config,
            workdir / "daemon.toml",
            h.DaemonOptions(web_port=port, event_loop=args.loop),
        )
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url}
        before = await emulator.totals(session)

        h.log(f"{n}: cold start")
        emulator_meter = h.Meter(emulator.pid, cpu=h.CONTROL_CPU).start()
        daemon = await h.Daemon.start(config, workdir / "daemon-1.log", port, env=env)
        try:
            cold = await run_daemon_until_probed(daemon, n, limit)
            cold["emulator"] = emulator_meter.read()
            cold["cpu_ms_per_connection"] = round(cold["daemon"]["cpu_seconds"] / n * 1e3, 3)
            cold["cpu_ms_per_connection_after_load"] = round(
                cold["cpu_seconds_after_load"] / n * 1e3, 3
            )
            rss = h.rss_bytes(daemon.pid)
            out["cold_start"] = cold
            out["memory"] = {"rss_bytes_after_cold_start": rss}

            h.log(f"{n}: idle window of {args.window} s")
            daemon.log.poll()
            probes_before = daemon.log.probe_requests
            meter = h.Meter(daemon.pid).start()
            await asyncio.sleep(args.window)
            daemon.log.poll()
            idle = meter.read()
            idle["probes_in_window"] = daemon.log.probe_requests - probes_before
            out["idle_window"] = idle
            rss_steady = h.rss_bytes(daemon.pid)

            meter = h.Meter(daemon.pid).start()
            samples, scrape = await h.scrape(session, daemon.web_url)
            scrape.update(meter.read())
            out["metrics_scrape"] = scrape
            out["memory"].update(
                {
                    "rss_bytes_steady": rss_steady,
                    "rss_bytes_after_scrape": h.rss_bytes(daemon.pid),
                    "rss_bytes_peak": h.rss_bytes(daemon.pid, "VmHWM"),
                    "bytes_per_connection": round(rss_steady / n),
                }
            )
            out["cold_start"]["lag"] = {
                kind: h.lag_from(samples, None, kind)[0] for kind in ("probe", "refresh")
            }
            out["cold_start"]["first_run_wait"] = {
                kind: h.lag_from(samples, None, kind, h.FIRST_WAIT)[0]
                for kind in ("probe", "refresh")
            }
            out["cold_start"]["telemetry"] = telemetry_counts(samples)
            after_cold = await emulator.totals(session)
            out["cold_start"]["evidence"] = h.evidence_delta(before, after_cold)
        finally:
            out["shutdown_seconds"] = await daemon.close()
        if not args.keep:
            daemon.log.path.unlink(missing_ok=True)

        h.log(f"{n}: restart with the full store")
        daemon = await h.Daemon.start(config, workdir / "daemon-2.log", port, env=env)
        try:
            restart = await run_daemon_until_probed(daemon, n, limit)
            restart["cpu_seconds_per_1000_probes"] = round(
                restart["cpu_seconds_after_load"] / restart["probe_requests"] * 1e3, 3
            )
            samples, _ = await h.scrape(session, daemon.web_url)
            restart["lag"] = {
                kind: h.lag_from(samples, None, kind)[0] for kind in ("probe", "refresh")
            }
            restart["first_run_wait"] = {
                kind: h.lag_from(samples, None, kind, h.FIRST_WAIT)[0]
                for kind in ("probe", "refresh")
            }
            restart["telemetry"] = telemetry_counts(samples)
            restart["rss_bytes"] = h.rss_bytes(daemon.pid)
            after_restart = await emulator.totals(session)
            restart["evidence"] = h.evidence_delta(after_cold, after_restart)
            restart["new_grants"] = sum(restart["evidence"]["grants"].values())
            out["restart"] = restart
        finally:
            await daemon.close()
        if not args.keep:
            daemon.log.path.unlink(missing_ok=True)
        whole = h.evidence_delta(before, await emulator.totals(session))
        if args.floor:
            h.log(f"{n}: the floor, a bare aiohttp cold start")
            floor = await coldstart_floor(emulator, session, n, workdir, limit)
            cold = out["cold_start"]
            after_load = cold["all_probed_seconds"] - cold["config_and_store_load_seconds"]
            floor["snowmon_seconds_after_load"] = round(after_load, 3)
            floor["snowmon_x_floor_seconds"] = round(after_load / floor["seconds"], 3)
            floor["snowmon_x_floor_cpu"] = round(
                cold["cpu_seconds_after_load"] / floor["cpu_seconds"], 3
            )
            out["floor"] = floor
        out["evidence"] = {
            "expired_token_uses": whole["expired_token_uses"],
            "refresh_overlaps": whole["refresh_overlaps"],
            "grants": whole["grants"],
            "table_requests": whole["table_requests"],
        }
    finally:
        await emulator.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return out


def marginal_memory(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Bytes per extra connection between the smallest and the largest step."""
    if len(steps) < 2:
        return None
    low, high = steps[0], steps[-1]
    extra = high["connections"] - low["connections"]
    grown = high["memory"]["rss_bytes_steady"] - low["memory"]["rss_bytes_steady"]
    return {
        "from": low["connections"],
        "to": high["connections"],
        "bytes_per_connection": round(grown / extra) if extra else None,
    }


def summary_rows(result: dict[str, Any]) -> list[list[object]]:
    rows: list[list[object]] = []
    for s in result["steps"]:
        cold, restart = s["cold_start"], s["restart"]
        rows.append(
            [
                s["connections"],
                cold["config_and_store_load_seconds"],
                cold["all_probed_seconds"],
                cold["daemon"]["cores"],
                cold["emulator"]["cores"],
                cold["cpu_ms_per_connection_after_load"],
                cold["lag"]["probe"]["p99_seconds"],
                cold["first_run_wait"]["probe"]["p99_seconds"],
                restart["lag"]["probe"]["p99_seconds"],
                round(s["memory"]["bytes_per_connection"] / 1024, 2),
                s["idle_window"]["cores"],
                s["metrics_scrape"]["seconds"],
                restart["config_and_store_load_seconds"],
                restart["all_probed_seconds"],
                restart["cpu_seconds_per_1000_probes"],
                restart["new_grants"],
                s["evidence"]["expired_token_uses"],
                round(
                    cold["daemon"]["other_on_cpu_seconds"]
                    + restart["daemon"]["other_on_cpu_seconds"],
                    1,
                ),
            ]
        )
    return rows


HEADERS = [
    "conns",
    "load s",
    "cold s",
    "cold cores",
    "emu cores",
    "ms/conn",
    "lag p99",
    "first wait p99",
    "restart lag p99",
    "KB/conn",
    "idle cores",
    "scrape s",
    "reload s",
    "restart s",
    "cpu s/1k probes",
    "new grants",
    "expired",
    "noise s",
]


FLOOR_HEADERS = [
    "conns",
    "snowmon s",
    "bare s",
    "x seconds",
    "snowmon ms/conn",
    "bare ms/conn",
    "x cpu",
    "bare emu cores",
]


def floor_row(s: dict[str, Any]) -> list[object]:
    floor, cold = s["floor"], s["cold_start"]
    return [
        s["connections"],
        floor["snowmon_seconds_after_load"],
        floor["seconds"],
        floor["snowmon_x_floor_seconds"],
        cold["cpu_ms_per_connection_after_load"],
        floor["cpu_ms_per_connection"],
        floor["snowmon_x_floor_cpu"],
        floor["emulator"]["cores"],
    ]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    h.pin(h.CONTROL_CPU)
    result: dict[str, Any] = {
        "bench": "fleet_scale",
        "command": h.command_line(),
        "machine": h.machine(),
        "bars": SCALE_BARS,
        "steps": [],
    }
    sink = await h.Sink.start()
    try:
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for n in args.steps:
                began = time.perf_counter()
                result["steps"].append(await step(n, args, session, sink))
                h.log(f"{n}: done in {time.perf_counter() - began:.0f} s")
            result["sink"] = await sink.stats(session)
    finally:
        await sink.close()
    result["marginal_memory"] = marginal_memory(result["steps"])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--speed", type=float, default=1.0, help="emulated seconds per second")
    parser.add_argument("--window", type=float, default=30.0, help="idle window, seconds")
    parser.add_argument("--limit-seconds", type=float, default=600.0, help="per phase")
    parser.add_argument("--keep", action="store_true", help="keep logs, store and config")
    parser.add_argument(
        "--floor", action="store_true", help="also a bare aiohttp cold start of each step"
    )
    h.add_loop_argument(parser)
    parser.add_argument("--quick", action="store_true", help="2,000 connections at speed 10")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.speed, args.window, args.limit_seconds = [2000], 10.0, 3.0, 40.0
    result = asyncio.run(main_async(args))
    path = h.save("fleet_scale", result)
    print(h.json_dumps(result))
    print()
    print(h.table(HEADERS, summary_rows(result)))
    floors = [s for s in result["steps"] if "floor" in s]
    if floors:
        print()
        print(h.table(FLOOR_HEADERS, [floor_row(s) for s in floors]))
    if result["marginal_memory"]:
        m = result["marginal_memory"]
        print(f"\nmarginal memory {m['from']} -> {m['to']}: {m['bytes_per_connection']} B/conn")
    print(f"\nsaved {path.relative_to(h.ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
