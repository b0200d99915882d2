"""The floor: the same Table API probes as the daemon, made by a bare aiohttp loop.

One `ClientSession` with the daemon's pool settings (limit 1000, 4 per host, 30 s
keep-alive, no cookie jar, the same headers), no tracing hooks, no scheduler, no log
line, no metric, no store: a paced loop starts one task per request, reads the body and
counts the status. `bench.compare` runs it pinned to a CPU and reads its CPU from /proc.

    .venv/bin/python -m bench.bare_loop --targets targets.json --rate 333 --seconds 60

`targets.json`: `[[url, bearer_token], ...]`. Prints one JSON line when done.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import aiohttp

from bench.harness import paced


async def run(targets: list[list[str]], rate: float, seconds: float) -> dict[str, object]:
    statuses: dict[str, int] = {}
    connector = aiohttp.TCPConnector(limit=1000, limit_per_host=4, keepalive_timeout=30)
    timeout = aiohttp.ClientTimeout(total=15, connect=5)
    headers = [
        {"Accept": "application/json", "Authorization": f"Bearer {token}"} for _, token in targets
    ]
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers={"User-Agent": "snowmon/0.1.0"},
        cookie_jar=aiohttp.DummyCookieJar(),
    ) as session:

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=Path, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    targets = json.loads(args.targets.read_text())
    result = asyncio.run(run(targets, args.rate, args.seconds))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
