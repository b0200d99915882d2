"""Where the daemon's CPU goes: py-spy samples `snowmon run` in a benchmark scenario and
this names the top costs, by function (self and inclusive) and by area.

Scenarios (everything on, as in `fleet_rate` and `fleet_scale`):
- `rate` (default): the steady load of 100,000 connections (1,000 at speed 100: ~333
  probes/s + ~83 refreshes/s), profiled after a warm-up;
- `coldstart`: N connections at real time, from the end of the config load (a password
  grant and a first probe for each, as fast as the daemon goes): the hottest run there is.

py-spy runs on CPU 0 in non-blocking mode (it reads the daemon's memory without stopping
it) at 100 samples/s, over every thread (the OTLP export and SQLite threads included),
idle samples excluded. The folded stacks are saved under bench/results/ for flame graph
tools (`flamegraph.pl`, speedscope.app).

An area is the first known frame from the leaf up: a JSON encode called by the log
formatter counts as logging, a socket send called by the OTLP exporter as tracing.

Needs py-spy: `.venv/bin/pip install -e '.[bench]'`.

    .venv/bin/python -m bench.profile_daemon                       # rate, 30 s (~2 min)
    .venv/bin/python -m bench.profile_daemon --scenario coldstart --connections 100000
    .venv/bin/python -m bench.profile_daemon --quick               # rate, 10 s (< 1 min)
    .venv/bin/python -m bench.profile_daemon --load probes --telemetry off --code /tmp/p
    .venv/bin/python -m bench.profile_daemon --quick --tls        # every request a handshake
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from bench import harness as h

PY_SPY = str(Path(sys.executable).with_name("py-spy"))
COUNTED = ("snowmon_probes_total", "snowmon_token_requests_total")
_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")

# (area, path fragments), first match from the leaf up wins
AREAS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("logging (JSON lines)", ("monitor/telemetry/logs.py", "/logging/")),
    ("tracing (OTel SDK, OTLP export)", ("opentelemetry/", "google/protobuf", "/requests/",
                                         "/urllib3/", "http/client.py")),
    ("metrics (prometheus_client)", ("prometheus_client/", "monitor/telemetry/metrics.py",
                                     "monitor/telemetry/per_connection.py")),
    ("redaction", ("monitor/telemetry/redact.py",)),
    ("store (SQLite, crypto)", ("monitor/store/", "sqlite3", "cryptography/")),
    ("config load", ("monitor/config", "tomllib/", "pydantic")),
    ("web (/metrics, API)", ("monitor/web/",)),
    ("HTTP hooks (monitor/http.py)", ("monitor/http.py",)),
    ("aiohttp client", ("aiohttp/", "yarl/", "multidict/", "propcache/")),
    ("scheduler", ("monitor/schedule.py",)),
    ("keeper, probe, oauth, health", ("monitor/",)),
    ("asyncio event loop", ("asyncio/", "selectors.py", "socket.py")),
)  # fmt: skip


def parse_frame(frame: str) -> tuple[str, str]:
    """(function, file) of one py-spy frame `name (file:line)`."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), ""
    return match["name"], match["file"]


def area_of(stack: list[tuple[str, str]]) -> str:
    for _, path in reversed(stack):
        for area, fragments in AREAS:
            if any(f in path for f in fragments):
                return area
    return "other (interpreter, stdlib)"


def analyse(folded: str, top: int) -> dict[str, Any]:
    """Self and inclusive sample counts per function, and per area."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in folded.splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        parts = stack_text.split(";")
        # py-spy raw: "process ...;thread (0x..);frame;frame..." (process/thread optional)
        frames_raw = [p for p in parts if not p.startswith(("process ", "thread "))]
        thread = next((p for p in parts if p.startswith("thread ")), "thread ?")
        stack = [parse_frame(p) for p in frames_raw]
        if not stack:
            continue
        total += count
        threads[thread] += count
        name, path = stack[-1]
        own[f"{name} ({_short(path)})"] += count
        for fn in {f"{n} ({_short(p)})" for n, p in stack}:
            inclusive[fn] += count
        areas[area_of(stack)] += count

    def share(counter: Counter[str], k: int | None) -> list[dict[str, object]]:
        return [
            {"name": key, "samples": n, "share": round(n / total, 4)}
            for key, n in counter.most_common(k)
        ]

    return {
        "samples": total,
        "areas": share(areas, None),
        "self": share(own, top),
        "inclusive": share(inclusive, top),
        "threads": share(threads, None),
    }


def _short(path: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


async def record(pid: int, seconds: float, out: Path) -> None:
    """py-spy record on CPU 0, non-blocking; retries while the interpreter starts."""
    args = [PY_SPY, "record", "--pid", str(pid), "--duration", str(int(seconds)),
            "--rate", "100", "--format", "raw", "--nonblocking", "--gil", "--threads",
            "--full-filenames", "--output", str(out)]  # fmt: skip
    for _ in range(20):
        process = await h.spawn(args, cpu=h.CONTROL_CPU, stdout=asyncio.subprocess.DEVNULL,
                                stderr=asyncio.subprocess.PIPE)  # fmt: skip
        async with asyncio.timeout(seconds + 60):
            _, err = await process.communicate()
        if process.returncode == 0:
            return
        h.log(f"py-spy: {err.decode(errors='replace').strip()[-200:]}; retrying")
        await asyncio.sleep(0.5)
    raise RuntimeError("py-spy could not sample the daemon")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    h.pin(h.CONTROL_CPU)
    workdir = h.work_dir(f"profile-{args.scenario}")
    n, speed = args.connections, args.speed
    probes_only = args.load == "probes"
    emulator = await h.Emulator.start(
        workdir,
        n,
        speed=speed,
        access_lifespan=86_400_000 if probes_only else None,
        refresh_lifespan=172_800_000 if probes_only else None,
        # over HTTPS, as fleet_rate --tls: a socket per instance and a 1 s keep-alive, so
        # that every request is a handshake, as at the design point
        own_sockets=args.tls,
        tls=args.tls,
    )
    sink = await h.Sink.start()
    tls = "-tls" if args.tls else ""
    folded = h.RESULTS / f"profile-{args.scenario}-{args.load}-{args.telemetry}-{n}{tls}.folded"
    result: dict[str, Any] = {
        "bench": "profile_daemon",
        "command": h.command_line(),
        "machine": h.machine(),
        "scenario": args.scenario,
        "connections": n,
        "speed": speed,
        "seconds": args.seconds,
        "load": args.load,
        "telemetry": args.telemetry,
        "tls": args.tls,
        "daemon_code": h.tree_digest((args.code or h.ROOT) / "monitor"),
        "folded_stacks": str(folded.relative_to(h.ROOT)),
    }
    try:
        port = h.free_port()
        on = args.telemetry == "on"
        options = h.DaemonOptions(
            web_port=port,
            traces="otlp" if on else "none",
            log_level="info" if on else "warning",
            keepalive=1.0 if args.tls else None,
        )
        config = h.daemon_config(emulator.config, workdir / "daemon.toml", options)
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, **emulator.client_env()}
        if args.code is not None:
            env["PYTHONPATH"] = str(args.code)
        daemon = await h.Daemon.start(config, workdir / "daemon.log", port, env=env)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
                if args.scenario == "rate":
                    async with asyncio.timeout(120):
                        await daemon.wait_probes_total(session, n)
                    h.log(f"warming up for {args.warmup} s")
                    await asyncio.sleep(args.warmup)
                else:  # from the end of the config load: grants and first probes
                    async with asyncio.timeout(300):
                        await daemon.wait_web(session)
                before, _ = await h.scrape(session, daemon.web_url, COUNTED)
                meter = h.Meter(daemon.pid).start()
                h.log(f"profiling for {args.seconds} s")
                await record(daemon.pid, args.seconds, folded)
                result["daemon"] = meter.read()
                after, _ = await h.scrape(session, daemon.web_url, COUNTED)
                for name, metric, labels in (
                    ("probes", "snowmon_probes_total", {}),
                    ("refreshes", "snowmon_token_requests_total", {"grant": "refresh_token"}),
                    ("grants", "snowmon_token_requests_total", {"grant": "password"}),
                ):
                    done = h.total(after, metric, **labels) - h.total(before, metric, **labels)
                    result[f"{name}_while_profiled"] = int(done)
        finally:
            await daemon.close()
    finally:
        await sink.close()
        await emulator.close()
        shutil.rmtree(workdir, ignore_errors=True)
    result["profile"] = analyse(folded.read_text(), args.top)
    return result


def print_tables(result: dict[str, Any]) -> None:
    profile = result["profile"]
    print(
        f"\n{profile['samples']} samples; daemon used {result['daemon']['cores']} cores;"
        f" {result['probes_while_profiled']} probes, {result['refreshes_while_profiled']}"
        f" refreshes, {result['grants_while_profiled']} grants meanwhile"
    )
    print("\nby area (first known frame from the leaf up)")
    print(h.table(["area", "share"], [[a["name"], a["share"]] for a in profile["areas"]]))
    print("\ntop functions, self time")
    print(h.table(["function", "share"], [[a["name"], a["share"]] for a in profile["self"]]))
    print("\ntop functions, inclusive")
    print(h.table(["function", "share"], [[a["name"], a["share"]] for a in profile["inclusive"]]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=("rate", "coldstart"), default="rate")
    parser.add_argument("--connections", type=int, default=None)
    parser.add_argument("--speed", type=float, default=None)
    parser.add_argument("--warmup", type=float, default=45.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--load", choices=("mixed", "probes"), default="mixed", help="rate: probes only?"
    )
    parser.add_argument("--telemetry", choices=("on", "off"), default="on")
    parser.add_argument("--code", type=Path, help="run the daemon from DIR/monitor")
    parser.add_argument(
        "--tls",
        action="store_true",
        help="the emulator speaks HTTPS; a socket per instance and a 1 s keep-alive, so that"
        " every request is a TLS handshake (as fleet_rate --tls)",
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if not Path(PY_SPY).exists():
        parser.error(f"{PY_SPY} is missing: install it with .venv/bin/pip install -e '.[bench]'")
    if args.connections is None:
        args.connections = 1000 if args.scenario == "rate" else 100_000
    if args.speed is None:
        args.speed = 100.0 if args.scenario == "rate" else 1.0
    if args.quick:
        args.warmup, args.seconds = 10.0, 10.0
    result = asyncio.run(main_async(args))
    path = h.save(f"profile-{args.scenario}", result)
    print(h.json_dumps(result))
    print_tables(result)
    print(f"\nsaved {path.relative_to(h.ROOT)} and {result['folded_stacks']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
