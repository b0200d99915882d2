"""Emulator benchmark: start-up of a large fleet, memory, and Table API throughput on one core.

Runs the emulator in its own process (`python -m monitor.emulator`) pinned to one CPU and
drives it from this process (pinned to the other CPUs when there are any) with a minimal
keep-alive HTTP/1.1 client, so the client costs as little as possible. Throughput is
reported two ways: requests per wall second, and requests per CPU second the emulator
process actually spent (its capacity on one core, even when the client is the
bottleneck). Every phase is bounded by a timeout.

    .venv/bin/python bench/emulator_bench.py [--instances 10000] [--seconds 5] [--connections 16]

Prints one JSON object, then a short table. Bars: start-up < 5 s and RSS < 200 MB for
10,000 instances; >= 3,000 Table API requests/s on one core.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
PROBE = (
    "/api/now/table/sys_user?sysparm_limit=1&sysparm_fields=sys_id"
    "&sysparm_no_count=true&sysparm_suppress_pagination_header=true"
)
CLK_TCK = os.sysconf("SC_CLK_TCK")

Target = tuple[str, int, str, str]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def _rss_bytes(pid: int, key: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


async def _start_emulator(
    instances: int, cpu: int
) -> tuple[asyncio.subprocess.Process, dict[str, object], float]:
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor.emulator", "--instances", str(instances),
        stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    os.sched_setaffinity(process.pid, {cpu})
    assert process.stdout is not None
    async with asyncio.timeout(60):
        line = await process.stdout.readline()
    ready: dict[str, object] = json.loads(line)
    return process, ready, time.perf_counter() - started


async def _targets(admin_url: str, count: int) -> list[Target]:
    """(host, port, path prefix, bearer token) of the first `count` instances."""
    targets = []
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{admin_url}/admin/fleet?limit={count}") as response:
            fleet = await response.json()
        for instance in fleet["instances"]:
            form = {
                "grant_type": "password",
                "client_id": instance["client_id"],
                "client_secret": instance["client_secret"],
                "username": instance["username"],
                "password": instance["password"],
            }
            async with session.post(instance["base_url"] + "/oauth_token.do", data=form) as r:
                token = (await r.json())["access_token"]
            url = urlsplit(instance["base_url"])
            targets.append((url.hostname or "", url.port or 80, url.path, token))
    return targets


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                return status
    marker = lower.find(b"content-length:")
    if marker >= 0:
        end = lower.index(b"\r\n", marker)
        await reader.readexactly(int(lower[marker + 15 : end]))
    return status


async def _client(target: Target, deadline: float, counts: dict[int, int]) -> None:
    host, port, prefix, token = target
    reader, writer = await asyncio.open_connection(host, port)
    request = (
        f"GET {prefix}{PROBE} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n"
        f"Accept-Encoding: gzip, deflate\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()
    try:
        while time.perf_counter() < deadline:
            writer.write(request)
            status = await _read_response(reader)
            counts[status] = counts.get(status, 0) + 1
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def run(instances: int, seconds: float, connections: int) -> dict[str, object]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 1:
        os.sched_setaffinity(0, set(cpus[1:]))
    process, ready, spawn_to_ready = await _start_emulator(instances, cpus[0])
    try:
        rss_after_start = _rss_bytes(process.pid)
        targets = await _targets(str(ready["admin_url"]), connections)
        counts: dict[int, int] = {}
        cpu_before = _cpu_seconds(process.pid)
        began = time.perf_counter()
        async with asyncio.timeout(seconds + 30):
            await asyncio.gather(*(_client(t, began + seconds, counts) for t in targets))
        elapsed = time.perf_counter() - began
        cpu_used = _cpu_seconds(process.pid) - cpu_before
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{ready['admin_url']}/admin/stats") as response,
        ):
            evidence = (await response.json())["totals"]
        done = sum(counts.values())
        return {
            "instances": instances,
            "startup_seconds_in_process": ready["startup_seconds"],
            "spawn_to_ready_seconds": round(spawn_to_ready, 3),
            "rss_bytes_after_start": rss_after_start,
            "rss_bytes_peak": _rss_bytes(process.pid, "VmHWM"),
            "connections": connections,
            "seconds": round(elapsed, 3),
            "requests": done,
            "statuses": {str(k): v for k, v in counts.items()},
            "requests_per_second": round(done / elapsed),
            "emulator_cpu_seconds": round(cpu_used, 3),
            "emulator_cpu_share": round(cpu_used / elapsed, 3),
            "requests_per_cpu_second": round(done / cpu_used) if cpu_used else None,
            "emulator_counted_table_requests": evidence["table_requests"],
        }
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            await process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    result = asyncio.run(run(args.instances, args.seconds, args.connections))
    print(json.dumps(result, indent=2))
    rows = [
        ("start-up, in process (s)", result["startup_seconds_in_process"], "< 5"),
        ("spawn to ready (s)", result["spawn_to_ready_seconds"], "< 5"),
        (
            "RSS after start (MB)",
            round(int(str(result["rss_bytes_after_start"])) / 2**20, 1),
            "< 200",
        ),
        ("RSS peak (MB)", round(int(str(result["rss_bytes_peak"])) / 2**20, 1), "< 200"),
        ("Table API req/s (wall)", result["requests_per_second"], ">= 3000"),
        ("emulator CPU share", result["emulator_cpu_share"], "<= 1 core"),
        ("req per emulator CPU-second", result["requests_per_cpu_second"], ">= 3000"),
    ]
    print(f"\n{'measure':32} {'value':>12}  bar")
    for name, value, bar in rows:
        print(f"{name:32} {value!s:>12}  {bar}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
