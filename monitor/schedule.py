"""The scheduler: one heap of due times, driven by the daemon's clock.

Every connection has two recurring jobs, `probe` and `refresh`; each run decides when it
runs next. The scheduler starts due jobs with a bound on how many run at once, never runs
two copies of one job, records the lag between planned and actual start, and on shutdown
stops starting work and hands back what is still running.

A job's first run after a start (`schedule_first`) is not planned for a time: it may start
from a given moment on, as soon as a slot is free, and takes at most half the slots, so a
cold start of 100,000 connections (a grant and a probe each, minutes of work) goes as
fast as the process can go while planned work (refreshes of restored tokens, probes that
keep their phase) starts on time beside it. First runs wait in order of that moment;
their wait is no lag (nothing was planned for a time) and goes to `on_first_wait`.

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
from dataclasses import dataclass
from typing import Final, NamedTuple

from monitor.clock import Clock

log = logging.getLogger("snowmon.schedule")

_IDLE_WAIT: Final = 3600.0
# The loop sleeps this much (wall time) past the first due job, so jobs due close together
# start on one wakeup: a fleet probed every few milliseconds wakes the loop once per batch,
# not once per job, at the price of a few milliseconds of lag. No job ever starts early.
_BATCH_WINDOW: Final = 0.004


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


class _Entry(NamedTuple):
    """A heap entry. Ordered as a tuple, by `due` then `seq`; `seq` is unique, so the job
    is never compared (and the comparison runs in C, not in a generated `__lt__`)."""

    due: float
    seq: int
    job: Job
    generation: int


class Scheduler:
    def __init__(
        self,
        clock: Clock,
        *,
        max_in_flight: int,
        on_lag: Callable[[str, float], None] | None = None,
        on_first_wait: Callable[[str, float], None] | None = None,
    ) -> None:
        self._clock = clock
        self._max_in_flight = max_in_flight
        self._on_lag = on_lag
        self._on_first_wait = on_first_wait
        self._heap: list[_Entry] = []
        self._first: list[_Entry] = []  # first runs, by the moment they may start
        self._first_limit = max(1, max_in_flight // 2)
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._in_flight: dict[Job, asyncio.Task[None]] = {}
        self.running = False

    def __len__(self) -> int:
        return len(self._heap) + len(self._first)

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
        self._push(self._heap, job, at)

    def schedule_first(self, job: Job, not_before: float) -> None:
        """Queue the first run of `job`: from `not_before` on, as soon as a slot is free
        (at most half the slots go to first runs; planned jobs come first). Replaces any
        earlier plan; a later `schedule` replaces this one."""
        if not math.isfinite(not_before):
            raise ValueError(f"job {job.key}/{job.kind} queued from {not_before}")
        if job.running:
            self.schedule(job, not_before)
            return
        self._push(self._first, job, not_before)

    def _push(self, heap: list[_Entry], job: Job, at: float) -> None:
        """Plan `job` at `at` in `heap`; its entries elsewhere are stale from now on."""
        job.generation += 1
        job.due = at
        entry = _Entry(at, next(self._seq), job, job.generation)
        heapq.heappush(heap, entry)
        if heap[0] is entry:
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
        self._start_from(self._heap, self._max_in_flight, self._on_lag, group, now)
        self._start_from(self._first, self._first_limit, self._on_first_wait, group, now)

    def _start_from(
        self,
        heap: list[_Entry],
        limit: int,
        report: Callable[[str, float], None] | None,
        group: asyncio.TaskGroup,
        now: float,
    ) -> None:
        """Start the due jobs of `heap` while fewer than `limit` run; `report` gets how
        long each waited past its moment (lag, or a first run's wait)."""
        while heap and heap[0].due <= now and len(self._in_flight) < limit:
            entry = heapq.heappop(heap)
            job = entry.job
            if entry.generation != job.generation:
                continue  # rescheduled or cancelled since
            job.due = None
            if report is not None:
                report(job.kind, self._clock.real_seconds(now - entry.due))
            job.running = True
            self._in_flight[job] = group.create_task(self._execute(job), name=job.key)

    def _next_due(self) -> float | None:
        """When the loop must look again: the first planned job, if a slot is free; the
        first queued first run, if one of their slots is free."""
        due = None
        if self._heap and len(self._in_flight) < self._max_in_flight:
            due = self._heap[0].due
        if self._first and len(self._in_flight) < self._first_limit:
            first = self._first[0].due
            due = first if due is None else min(due, first)
        return due

    async def _sleep_until_next(self) -> None:
        self._wake.clear()
        due = self._next_due()
        wait = _IDLE_WAIT if due is None else self._clock.real_seconds(due - self._clock.now())
        if wait <= 0:
            await asyncio.sleep(0)
            return
        wait += _BATCH_WINDOW
        # A bare timer, not asyncio.timeout(): this runs once per batch of due jobs.
        timer = asyncio.get_running_loop().call_later(wait, self._wake.set)
        try:
            await self._wake.wait()
        finally:
            timer.cancel()

    async def _execute(self, job: Job) -> None:
        following: float | None = None
        generation = job.generation
        try:
            following = await job.run()
        finally:
            job.running = False
            busy = len(self._in_flight)
            was_full = busy >= self._max_in_flight or (
                bool(self._first) and busy >= self._first_limit
            )
            self._in_flight.pop(job, None)
            planned = job.rerun_at
            job.rerun_at = None
            if job.generation != generation:
                following = None  # cancelled while it ran
            if planned is not None:
                following = planned if following is None else min(following, planned)
            if following is not None:
                self.schedule(job, following)  # wakes the loop if it is due first
            if was_full:
                self._wake.set()  # a slot is free for what waited

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
