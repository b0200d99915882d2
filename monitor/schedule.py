"""The scheduler: one heap of due times, driven by the daemon's clock.

Every connection has two recurring jobs, `probe` and `refresh`; each run decides when it
runs next. The scheduler starts due jobs with a bound on how many run at once, never runs
two copies of one job, records the lag between planned and actual start, and on shutdown
stops starting work and hands back what is still running.

Why not APScheduler: its scheduling loop reads wall time itself (`datetime.now()`), so it
cannot run on an injected or scaled clock, and each run allocates trigger, job and
executor objects; here a run is one heap pop and one task (see bench/scheduler_bench.py).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from monitor.clock import Clock

log = logging.getLogger("snowmon.schedule")

_IDLE_WAIT: Final = 3600.0


@dataclass(slots=True, eq=False)
class Job:
    """One recurring piece of work. `run` returns when it should run next (clock time),
    or None to stop."""

    key: str
    kind: str
    run: Callable[[], Awaitable[float | None]]
    due: float | None = None
    generation: int = 0
    running: bool = False
    rerun_at: float | None = None


@dataclass(order=True, slots=True)
class _Entry:
    due: float
    seq: int
    job: Job = field(compare=False)
    generation: int = field(compare=False)


class Scheduler:
    def __init__(
        self,
        clock: Clock,
        *,
        max_in_flight: int,
        on_lag: Callable[[str, float], None] | None = None,
    ) -> None:
        self._clock = clock
        self._max_in_flight = max_in_flight
        self._on_lag = on_lag
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._in_flight: dict[Job, asyncio.Task[None]] = {}
        self._slot_free = asyncio.Event()
        self.running = False

    def __len__(self) -> int:
        return len(self._heap)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def schedule(self, job: Job, at: float) -> None:
        """Plan `job` at clock time `at`, replacing any earlier plan for it. A job that is
        running now is planned for after it finishes."""
        if not math.isfinite(at):
            raise ValueError(f"job {job.key}/{job.kind} planned at {at}")
        if job.running:
            job.rerun_at = at if job.rerun_at is None else min(job.rerun_at, at)
            return
        job.generation += 1
        job.due = at
        entry = _Entry(at, next(self._seq), job, job.generation)
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:
            self._wake.set()

    def cancel(self, job: Job) -> None:
        job.generation += 1
        job.due = None
        job.rerun_at = None

    async def run(
        self,
        stop: asyncio.Event,
        *,
        grace: float = 20.0,
        cancel_at_stop: Callable[[Job], bool] = lambda job: False,
    ) -> int:
        """Start due jobs until `stop` is set; then cancel the running jobs that
        `cancel_at_stop` picks, give the others `grace` seconds (of wall time) to finish
        and cancel what is left. Returns how many were cut off by the grace period."""
        self.running = True
        try:
            async with asyncio.TaskGroup() as group:
                stopper = group.create_task(self._wait_stop(stop))
                while not stop.is_set():
                    self._start_due(group)
                    await self._sleep_until_next()
                stopper.cancel()
                return await self._drain(grace, cancel_at_stop)
        finally:
            self.running = False

    async def _wait_stop(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    def _start_due(self, group: asyncio.TaskGroup) -> None:
        now = self._clock.now()
        heap = self._heap
        while heap and heap[0].due <= now and len(self._in_flight) < self._max_in_flight:
            entry = heapq.heappop(heap)
            job = entry.job
            if entry.generation != job.generation:
                continue  # rescheduled or cancelled since
            job.due = None
            if self._on_lag is not None:
                self._on_lag(job.kind, self._clock.real_seconds(now - entry.due))
            job.running = True
            self._in_flight[job] = group.create_task(self._execute(job), name=job.key)

    async def _sleep_until_next(self) -> None:
        self._wake.clear()
        if self._heap and len(self._in_flight) < self._max_in_flight:
            wait = self._clock.real_seconds(self._heap[0].due - self._clock.now())
        else:
            wait = _IDLE_WAIT
        if wait <= 0:
            await asyncio.sleep(0)
            return
        try:
            async with asyncio.timeout(wait):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _execute(self, job: Job) -> None:
        following: float | None = None
        generation = job.generation
        try:
            following = await job.run()
        finally:
            job.running = False
            self._in_flight.pop(job, None)
            planned = job.rerun_at
            job.rerun_at = None
            if job.generation != generation:
                following = None  # cancelled while it ran
            if planned is not None:
                following = planned if following is None else min(following, planned)
            if following is not None:
                self.schedule(job, following)
            self._wake.set()

    async def _drain(self, grace: float, cancel_first: Callable[[Job], bool]) -> int:
        tasks = list(self._in_flight.items())
        for job, task in tasks:
            if cancel_first(job):
                task.cancel()
        pending = [task for _, task in tasks if not task.done()]
        if not pending:
            return 0
        _, still = await asyncio.wait(pending, timeout=grace)
        for task in still:
            task.cancel()
        return len(still)
