"""The floor: the same Table API probes as the daemon, made by a bare aiohttp loop.

One `ClientSession` with the daemon's pool settings (limit 1000, 4 per host, 30 s
keep-alive, no cookie jar, the same headers), no tracing hooks, no scheduler, no log
line, no metric, no store: a paced loop starts one task per request, reads the body and
counts the status. `bench.compare` runs it pinned to a CPU and reads its CPU from /proc.

    .venv/bin/python -m bench.bare_loop --targets targets.json --rate 333 --seconds 60

`targets.json`: `[[url, bearer_token], ...]`. Prints one JSON line when done.

`--coldstart fleet.json` is the floor of a cold start instead: for every instance of the
emulator's `/admin/fleet` list, a password grant and then one probe with the token it
got, as fast as the loop goes, at most `--concurrency` instances at once (the daemon's
first runs take half of `max_in_flight`, 256 by default). `bench.fleet_scale --floor`
runs it beside the daemon's cold start, on the same CPU and emulator.

    .venv/bin/python -m bench.bare_loop --coldstart fleet.json --concurrency 256
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import aiohttp

from bench.harness import PROBE_QUERY, bare_session, cpu_times, paced, password_form


async def run(
    targets: list[list[str]], rate: float, seconds: float, keepalive: float
) -> dict[str, object]:
    statuses: dict[str, int] = {}
    headers = [
        {"Accept": "application/json", "Authorization": f"Bearer {token}"} for _, token in targets
    ]
    async with bare_session(keepalive) as session:

        async def fire(i: int) -> None:
            index = i % len(targets)
            try:
                async with session.get(targets[index][0], headers=headers[index]) as response:
                    await response.read()
                    key = str(response.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                key = type(exc).__name__
            statuses[key] = statuses.get(key, 0) + 1

        sys.stdout.write(json.dumps({"event": "bare_ready"}) + "\n")
        sys.stdout.flush()
        pacing = await paced(rate, seconds, fire)
    return {"event": "bare_done", **pacing, "statuses": statuses}


async def coldstart(
    instances: list[dict[str, str]], concurrency: int, keepalive: float
) -> dict[str, object]:
    statuses: dict[str, int] = {}
    queue = iter(instances)
    async with bare_session(keepalive) as session:

        def count(key: str) -> None:
            statuses[key] = statuses.get(key, 0) + 1

        async def connect(instance: dict[str, str]) -> None:
            base = instance["base_url"]
            headers = {"Accept": "application/json"}
            form = password_form(instance)
            async with session.post(f"{base}/oauth_token.do", data=form, headers=headers) as r:
                if r.status != 200:
                    count(f"grant {r.status}")
                    return
                body = await r.json()
            headers["Authorization"] = f"Bearer {body['access_token']}"
            async with session.get(base + PROBE_QUERY, headers=headers) as response:
                await response.read()
                count(str(response.status))

        async def worker() -> None:
            for instance in queue:  # shared iterator: each instance once
                try:
                    await connect(instance)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    count(type(exc).__name__)

        sys.stdout.write(json.dumps({"event": "bare_ready"}) + "\n")
        sys.stdout.flush()
        began, cpu = asyncio.get_running_loop().time(), cpu_times(os.getpid())
        async with asyncio.TaskGroup() as group:
            for _ in range(min(concurrency, len(instances))):
                group.create_task(worker())
        seconds = asyncio.get_running_loop().time() - began
        used = cpu_times(os.getpid())
    return {
        "event": "bare_done",
        "seconds": round(seconds, 3),
        # this process's CPU over exactly that time, all threads
        "cpu_seconds": round(sum(used) - sum(cpu), 3),
        "statuses": statuses,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=Path)
    parser.add_argument("--rate", type=float)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--coldstart", type=Path, help="the emulator's /admin/fleet list")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument(
        "--keepalive", type=float, default=3.0, help="seconds, as the daemon's keepalive_timeout"
    )
    args = parser.parse_args()
    if args.coldstart is not None:
        fleet = json.loads(args.coldstart.read_text())
        result = asyncio.run(coldstart(fleet["instances"], args.concurrency, args.keepalive))
    elif args.targets is None or args.rate is None or args.seconds is None:
        parser.error("--targets, --rate and --seconds, or --coldstart")
    else:
        targets = json.loads(args.targets.read_text())
        result = asyncio.run(run(targets, args.rate, args.seconds, args.keepalive))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
