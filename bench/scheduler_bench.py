"""Scheduler cost at fleet scale: snowmon's heap scheduler against APScheduler 3's
AsyncIOScheduler, side by side in one run (ratios; these machines are noisy).

N jobs (default 100,000, i.e. the probe jobs of a 100,000-connection fleet), each an
empty coroutine re-planned every N / RATE seconds, so RATE runs per second in total.
Reported per scheduler: time to plan all jobs, resident memory per job, CPU per run, and
the start lag (actual - planned) p50/p99/max. Each scheduler runs in its own process.

    .venv/bin/python bench/scheduler_bench.py [--jobs 100000] [--rate 2000] [--seconds 10]
    (APScheduler is not a dependency of snowmon: `pip install 'apscheduler<4'` first.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import resource
import statistics
import sys
import time
from datetime import UTC
from typing import Any


def _rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _summary(
    name: str, jobs: int, plan_s: float, rss_kb: int, runs: int, cpu: float, lags: list[float]
) -> dict[str, Any]:
    lags.sort()
    return {
        "scheduler": name,
        "jobs": jobs,
        "plan_seconds": round(plan_s, 3),
        "rss_bytes_per_job": round(rss_kb * 1024 / jobs, 1),
        "runs": runs,
        "cpu_us_per_run": round(cpu / max(1, runs) * 1e6, 1),
        "lag_p50_ms": round(statistics.median(lags) * 1e3, 2) if lags else None,
        "lag_p99_ms": round(lags[int(len(lags) * 0.99) - 1] * 1e3, 2) if lags else None,
        "lag_max_ms": round(lags[-1] * 1e3, 2) if lags else None,
    }


def run_snowmon(jobs: int, rate: float, seconds: float) -> dict[str, Any]:
    from monitor.clock import SystemClock  # noqa: PLC0415
    from monitor.schedule import Job, Scheduler  # noqa: PLC0415

    interval = jobs / rate
    lags: list[float] = []

    async def main() -> dict[str, Any]:
        clock = SystemClock()
        scheduler = Scheduler(clock, max_in_flight=512, on_lag=lambda kind, lag: lags.append(lag))
        rng = random.Random(1)
        base_rss = _rss_kb()
        started = time.perf_counter()
        now = clock.now() + 1.0  # planning 100,000 jobs takes time: start after it

        async def nothing() -> float:
            return clock.now() + interval

        for n in range(jobs):
            scheduler.schedule(Job(f"c{n}", "probe", nothing), now + rng.random() * interval)
        plan = time.perf_counter() - started
        rss = _rss_kb() - base_rss
        stop = asyncio.Event()
        await asyncio.sleep(max(0.0, now - clock.now()))
        cpu0 = _cpu()
        async with asyncio.TaskGroup() as group:
            group.create_task(scheduler.run(stop))
            await asyncio.sleep(seconds)
            stop.set()
        cpu = _cpu() - cpu0
        return _summary("snowmon", jobs, plan, rss, len(lags), cpu, lags)

    return asyncio.run(main())


def run_apscheduler(jobs: int, rate: float, seconds: float) -> dict[str, Any]:
    from datetime import datetime, timedelta  # noqa: PLC0415

    from apscheduler.events import EVENT_JOB_SUBMITTED  # noqa: PLC0415
    from apscheduler.schedulers.asyncio import AsyncIOScheduler  # noqa: PLC0415

    interval = jobs / rate
    lags: list[float] = []

    async def nothing() -> None:
        return None

    def submitted(event: Any) -> None:
        now = datetime.now(UTC)
        for planned in event.scheduled_run_times:
            lags.append((now - planned).total_seconds())

    async def main() -> dict[str, Any]:
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_listener(submitted, EVENT_JOB_SUBMITTED)
        rng = random.Random(1)
        base_rss = _rss_kb()
        started = time.perf_counter()
        scheduler.start()
        first = datetime.now(UTC) + timedelta(seconds=1.0)
        for n in range(jobs):
            scheduler.add_job(
                nothing,
                "interval",
                seconds=interval,
                start_date=first + timedelta(seconds=rng.random() * interval),
                id=f"c{n}",
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        plan = time.perf_counter() - started
        rss = _rss_kb() - base_rss
        await asyncio.sleep(max(0.0, (first - datetime.now(UTC)).total_seconds()))
        cpu0 = _cpu()
        lags.clear()
        await asyncio.sleep(seconds)
        cpu = _cpu() - cpu0
        scheduler.shutdown(wait=False)
        return _summary("apscheduler", jobs, plan, rss, len(lags), cpu, lags)

    return asyncio.run(main())


def _child(name: str, jobs: int, rate: float, seconds: float, out: Any) -> None:
    runner = run_snowmon if name == "snowmon" else run_apscheduler
    out.send(runner(jobs, rate, seconds))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="10,000 jobs for 3 s")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.seconds = 10_000, 3.0
    results = []
    for name in ("snowmon", "apscheduler"):
        reader, writer = multiprocessing.Pipe(duplex=False)
        proc = multiprocessing.Process(
            target=_child, args=(name, args.jobs, args.rate, args.seconds, writer)
        )
        proc.start()
        results.append(reader.recv())
        proc.join()
    print(json.dumps(results, indent=2))
    snow, aps = results
    print(f"\n{'':14}{'snowmon':>12}{'apscheduler':>14}{'ratio':>8}", file=sys.stderr)
    for key in ("plan_seconds", "rss_bytes_per_job", "cpu_us_per_run", "lag_p99_ms"):
        a, b = snow[key], aps[key]
        ratio = f"{b / a:.1f}x" if a and b else "-"
        print(f"{key:14}{a!s:>12}{b!s:>14}{ratio:>8}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
