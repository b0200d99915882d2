"""The scheduler: due times, order, rescheduling, cancelling, single runs, the in-flight
bound, lag reports and the stop/drain protocol.

Clock time runs on a `ManualClock` (moved by the test; the scheduler then polls) or a
`ScaledClock(speed=1000)` (1 clock second = 1 ms of wall time). Every test is bounded by
`asyncio.timeout`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from monitor.clock import Clock, ManualClock, ScaledClock
from monitor.schedule import Job, Scheduler

LIMIT = 2.0  # wall seconds any one wait may take


async def until(predicate: Callable[[], bool], limit: float = LIMIT) -> None:
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 (state owned by the code under test)
            await asyncio.sleep(0.001)


def has_length(items: list[tuple[str, float]], n: int) -> Callable[[], bool]:
    return lambda: len(items) == n


async def settle() -> None:
    """Give the scheduler loop time to do whatever it would do."""
    await asyncio.sleep(0.02)


@asynccontextmanager
async def running(scheduler: Scheduler) -> AsyncIterator[asyncio.Task[int]]:
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop, grace=0.5))
    try:
        yield task
    finally:
        stop.set()
        async with asyncio.timeout(LIMIT):
            await task


class Log:
    """Jobs that record when (clock time) they start and finish."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.starts: list[tuple[str, float]] = []
        self.ends: list[tuple[str, float]] = []
        self.active = 0
        self.peak = 0

    def job(
        self,
        key: str,
        kind: str = "probe",
        *,
        following: Callable[[], float | None] = lambda: None,
        gate: asyncio.Event | None = None,
        wall: float = 0.0,
    ) -> Job:
        async def run() -> float | None:
            self.starts.append((key, self.clock.now()))
            self.active += 1
            self.peak = max(self.peak, self.active)
            try:
                if gate is not None:
                    await gate.wait()
                if wall:
                    await asyncio.sleep(wall)
            finally:
                self.active -= 1
            self.ends.append((key, self.clock.now()))
            return following()

        return Job(key, kind, run)

    def keys(self) -> list[str]:
        return [key for key, _ in self.starts]


# --- due times and order ------------------------------------------------------------------

ORDERS = [
    pytest.param({"a": 30, "b": 10, "c": 20}, ["b", "c", "a"], id="three-out-of-order"),
    pytest.param({"a": 10, "b": 10, "c": 10}, ["a", "b", "c"], id="ties-in-schedule-order"),
    pytest.param({"late": 80, "now": 0, "past": -50}, ["past", "now", "late"], id="past-now-late"),
    pytest.param({f"j{i}": 5 * (9 - i) for i in range(10)}, [f"j{i}" for i in range(9, -1, -1)],
                 id="ten-reversed"),
]  # fmt: skip


@pytest.mark.parametrize(("offsets", "expected"), ORDERS)
async def test_jobs_run_at_their_due_time_in_order_scaled(
    offsets: dict[str, float], expected: list[str]
) -> None:
    clock = ScaledClock(speed=1000.0)
    log = Log(clock)
    scheduler = Scheduler(clock, max_in_flight=1)
    start = clock.now()
    for key, offset in offsets.items():
        scheduler.schedule(log.job(key), start + offset)
    async with running(scheduler):
        await until(lambda: len(log.ends) == len(offsets))
    assert log.keys() == expected
    for key, at in log.starts:
        due = start + offsets[key]
        assert at >= due
        assert at <= max(due, start) + 250  # started promptly: 250 ms of wall time at most


@pytest.mark.parametrize(("offsets", "expected"), ORDERS)
async def test_jobs_run_at_their_due_time_in_order_manual(
    offsets: dict[str, float], expected: list[str]
) -> None:
    clock = ManualClock(start=1_000.0)
    log = Log(clock)
    scheduler = Scheduler(clock, max_in_flight=1)
    for key, offset in offsets.items():
        scheduler.schedule(log.job(key), 1_000.0 + offset)
    async with running(scheduler):
        for step in sorted({max(0.0, o) for o in offsets.values()}):
            clock.advance(1_000.0 + step - clock.now())
            due = sum(1 for o in offsets.values() if o <= step)
            await until(has_length(log.ends, due))
            await settle()
            assert len(log.starts) == due  # nothing ran early
    assert log.keys() == expected
    for key, at in log.starts:
        assert at == 1_000.0 + max(0.0, offsets[key])


async def test_nothing_runs_before_it_is_due() -> None:
    clock = ManualClock()
    log = Log(clock)
    scheduler = Scheduler(clock, max_in_flight=10)
    scheduler.schedule(log.job("a"), clock.now() + 10)
    async with running(scheduler):
        await settle()
        assert log.starts == []
        clock.advance(9.999)
        await settle()
        assert log.starts == []
        clock.advance(0.001)
        await until(lambda: len(log.starts) == 1)


async def test_an_earlier_job_wakes_a_sleeping_scheduler() -> None:
    clock = ScaledClock(speed=1000.0)
    log = Log(clock)
    scheduler = Scheduler(clock, max_in_flight=10)
    scheduler.schedule(log.job("far"), clock.now() + 100_000)  # 100 s of wall time away
    async with running(scheduler):
        await settle()
        start = time.monotonic()
        scheduler.schedule(log.job("near"), clock.now() + 20)
        await until(lambda: len(log.starts) == 1)
        assert time.monotonic() - start < 0.5
    assert log.keys() == ["near"]


async def test_a_job_schedules_its_next_run() -> None:
    clock = ManualClock(start=0.0)
    log = Log(clock)
    scheduler = Scheduler(clock, max_in_flight=10)
    job = log.job("every-10", following=lambda: clock.now() + 10)
    scheduler.schedule(job, 0.0)
    async with running(scheduler):
        for n in range(1, 6):
            await until(has_length(log.ends, n))
            await settle()
            assert len(log.starts) == n
            clock.advance(10)
        await until(lambda: len(log.ends) == 6)
    assert [at for _, at in log.starts] == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]


async def test_a_job_returning_none_stops() -> None:
    clock = ManualClock()
    log = Log(clock)
    scheduler = Scheduler(clock, max_in_flight=10)
    scheduler.schedule(log.job("once"), clock.now())
    async with running(scheduler):
        await until(lambda: len(log.ends) == 1)
        clock.advance(86_400)
        await settle()
    assert len(log.starts) == 1
    assert len(scheduler) == 0


# --- rescheduling and cancelling -----------------------------------------------------------


@pytest.mark.parametrize(
    ("plans", "runs_at"),
    [
        pytest.param([20, 60], 60, id="later"),
        pytest.param([60, 20], 20, id="earlier"),
        pytest.param([20, 40, 60, 30], 30, id="four-plans"),
        pytest.param([40, 40], 40, id="same-time-twice"),
    ],
)
async def test_a_rescheduled_job_runs_once_at_its_new_time(
    plans: list[float], runs_at: float
) -> None:
    clock = ManualClock(start=0.0)
    log = Log(clock)
    scheduler = Scheduler(clock, max_in_flight=10)
    job = log.job("moved")
    for at in plans:
        scheduler.schedule(job, at)
    async with running(scheduler):
        for step in sorted({*plans, 100.0, 200.0}):
            clock.advance(step - clock.now())
            await settle()
            assert len(log.starts) == (1 if step >= runs_at else 0), step
    assert log.starts == [("moved", runs_at)]


async def test_cancel_before_due() -> None:
    clock = ManualClock(start=0.0)
    log = Log(clock)
    scheduler = Scheduler(clock, max_in_flight=10)
    cancelled, kept = log.job("cancelled"), log.job("kept")
    scheduler.schedule(cancelled, 10)
    scheduler.schedule(kept, 20)
    scheduler.cancel(cancelled)
    assert cancelled.due is None
    async with running(scheduler):
        clock.advance(100)
        await until(lambda: len(log.ends) == 1)
        await settle()
        assert log.keys() == ["kept"]
        scheduler.schedule(cancelled, 150)  # a cancelled job can be planned again
        clock.advance(50)
        await until(lambda: len(log.ends) == 2)
    assert log.keys() == ["kept", "cancelled"]


async def test_cancel_a_job_that_was_never_scheduled() -> None:
    clock = ManualClock()
    scheduler = Scheduler(clock, max_in_flight=1)
    job = Log(clock).job("idle")
    scheduler.cancel(job)
    assert job.due is None
    assert len(scheduler) == 0


@pytest.mark.parametrize("planned_while_running", [False, True], ids=["returned", "planned"])
async def test_cancel_while_running_means_no_next_run(planned_while_running: bool) -> None:
    """`cancel` while the job runs must win over the time its run returns (the keeper
    cancels the jobs of a connection it stops; a run in flight must not revive them)."""
    clock = ManualClock(start=0.0)
    log = Log(clock)
    scheduler = Scheduler(clock, max_in_flight=10)
    gate = asyncio.Event()
    job = log.job("stopped", gate=gate, following=lambda: clock.now() + 10)
    scheduler.schedule(job, 0.0)
    async with running(scheduler):
        await until(lambda: job.running)
        if planned_while_running:
            scheduler.schedule(job, 5.0)
        scheduler.cancel(job)
        gate.set()
        await until(lambda: not job.running)
        for _ in range(5):
            clock.advance(10)
            await settle()
    assert len(log.starts) == 1
    assert job.due is None


# --- one run at a time, and the in-flight bound -------------------------------------------


async def test_a_job_never_runs_twice_at_once() -> None:
    clock = ManualClock(start=0.0)
    log = Log(clock)
    scheduler = Scheduler(clock, max_in_flight=10)
    gate = asyncio.Event()
    job = log.job("single", gate=gate)
    scheduler.schedule(job, 0.0)
    async with running(scheduler):
        await until(lambda: len(log.starts) == 1)
        for _ in range(3):
            scheduler.schedule(job, clock.now())  # while it runs: deferred
            await settle()
        assert log.peak == 1
        assert len(log.starts) == 1
        assert scheduler.in_flight == 1
        gate.set()
        await until(lambda: len(log.ends) == 2)
    assert log.peak == 1
    assert len(log.starts) == 2
    assert log.keys() == ["single", "single"]


@pytest.mark.parametrize(
    ("returned", "planned", "next_at"),
    [
        pytest.param(None, 10.0, 10.0, id="run-stops-plan-wins"),
        pytest.param(100.0, 10.0, 10.0, id="plan-earlier-than-run"),
        pytest.param(10.0, 100.0, 10.0, id="run-earlier-than-plan"),
        pytest.param(None, None, None, id="nothing-planned"),
    ],
)
async def test_schedule_while_running_defers_to_after_the_run(
    returned: float | None, planned: float | None, next_at: float | None
) -> None:
    clock = ManualClock(start=0.0)
    log = Log(clock)
    scheduler = Scheduler(clock, max_in_flight=10)
    gate = asyncio.Event()
    first = True

    def following() -> float | None:
        nonlocal first
        if first:
            first = False
            return returned
        return None

    job = log.job("deferred", gate=gate, following=following)
    scheduler.schedule(job, 0.0)
    async with running(scheduler):
        await until(lambda: job.running)
        if planned is not None:
            scheduler.schedule(job, planned)
        gate.set()
        await until(lambda: not job.running)
        assert job.due == next_at
        for step in (5.0, 10.0, 50.0, 100.0, 200.0):
            clock.advance(step - clock.now())
            await settle()
    expected = [("deferred", 0.0)] + ([("deferred", next_at)] if next_at is not None else [])
    assert log.starts == expected


@pytest.mark.parametrize("max_in_flight", [1, 3, 10, 50])
async def test_max_in_flight_bounds_concurrency(max_in_flight: int) -> None:
    clock = ManualClock()
    log = Log(clock)
    scheduler = Scheduler(clock, max_in_flight=max_in_flight)
    gate = asyncio.Event()
    jobs = [log.job(f"j{i}", gate=gate) for i in range(20)]
    for job in jobs:
        scheduler.schedule(job, clock.now())
    async with running(scheduler):
        await until(lambda: len(log.starts) == min(max_in_flight, 20))
        await settle()
        assert len(log.starts) == min(max_in_flight, 20)
        assert scheduler.in_flight == min(max_in_flight, 20)
        gate.set()
        await until(lambda: len(log.ends) == 20)
    assert log.peak == min(max_in_flight, 20)
    assert sorted(log.keys()) == sorted(job.key for job in jobs)


async def test_a_finished_job_frees_its_slot_at_once() -> None:
    """With every slot taken the scheduler waits for a slot, not for a timer."""
    clock = ScaledClock(speed=1000.0)
    log = Log(clock)
    scheduler = Scheduler(clock, max_in_flight=2)
    for i in range(6):
        scheduler.schedule(log.job(f"j{i}", wall=0.01), clock.now())
    started = time.monotonic()
    async with running(scheduler):
        await until(lambda: len(log.ends) == 6)
    assert log.peak == 2
    assert time.monotonic() - started < 1.0  # 3 rounds of 10 ms, not an idle wait


# --- first runs ---------------------------------------------------------------------------


@pytest.mark.parametrize(("max_in_flight", "first_slots"), [(1, 1), (2, 1), (8, 4), (9, 4)])
async def test_first_runs_take_at_most_half_the_slots(max_in_flight: int, first_slots: int) -> None:
    clock = ManualClock()
    log = Log(clock)
    scheduler = Scheduler(clock, max_in_flight=max_in_flight)
    gate = asyncio.Event()
    for i in range(12):
        scheduler.schedule_first(log.job(f"f{i}", gate=gate), clock.now())
    async with running(scheduler):
        await until(lambda: len(log.starts) == first_slots)
        await settle()
        assert scheduler.in_flight == first_slots
        gate.set()
        await until(lambda: len(log.ends) == 12)
    assert log.peak == first_slots
    assert log.keys() == [f"f{i}" for i in range(12)]  # in the order they were queued


async def test_planned_jobs_start_beside_and_before_waiting_first_runs() -> None:
    clock = ManualClock()
    log = Log(clock)
    lags: list[tuple[str, float]] = []
    waits: list[tuple[str, float]] = []
    scheduler = Scheduler(
        clock,
        max_in_flight=4,
        on_lag=lambda k, lag: lags.append((k, lag)),
        on_first_wait=lambda k, wait: waits.append((k, wait)),
    )
    gate = asyncio.Event()
    for i in range(10):
        scheduler.schedule_first(log.job(f"first{i}", gate=gate), clock.now())
    async with running(scheduler):
        await until(lambda: len(log.starts) == 2)
        for i in range(2):
            scheduler.schedule(log.job(f"planned{i}", "refresh", gate=gate), clock.now())
        await until(lambda: len(log.starts) == 4)
        await settle()
        assert sorted(log.keys()) == ["first0", "first1", "planned0", "planned1"]
        gate.set()
        await until(lambda: len(log.ends) == 12)
    assert lags == [("refresh", 0.0), ("refresh", 0.0)]  # first runs report no lag...
    assert waits == [("probe", 0.0)] * 10  # ...but their wait (a ManualClock's is 0)


async def test_first_run_wait_is_measured_from_the_moment_it_could_start() -> None:
    clock = ScaledClock(speed=1000.0)
    waits: list[tuple[str, float]] = []
    scheduler = Scheduler(
        clock, max_in_flight=2, on_first_wait=lambda k, wait: waits.append((k, wait))
    )
    log = Log(clock)
    scheduler.schedule_first(log.job("x", "refresh"), clock.now() - 300.0)  # 0.3 s ago
    async with running(scheduler):
        await until(lambda: len(log.ends) == 1)
    ((kind, wait),) = waits
    assert kind == "refresh"
    assert 0.3 <= wait < 0.8


async def test_a_first_run_waits_for_its_moment() -> None:
    clock = ManualClock(start=0.0)
    log = Log(clock)
    scheduler = Scheduler(clock, max_in_flight=10)
    scheduler.schedule_first(log.job("late"), 50.0)
    scheduler.schedule_first(log.job("early"), 10.0)
    async with running(scheduler):
        await settle()
        assert log.starts == []
        clock.advance(10)
        await until(lambda: len(log.starts) == 1)
        await settle()
        assert log.keys() == ["early"]
        clock.advance(40)
        await until(lambda: len(log.starts) == 2)
    assert log.starts == [("early", 10.0), ("late", 50.0)]


@pytest.mark.parametrize("then", ["schedule", "cancel"])
async def test_a_queued_first_run_yields_to_a_later_plan_or_cancel(then: str) -> None:
    clock = ManualClock(start=0.0)
    log = Log(clock)
    scheduler = Scheduler(clock, max_in_flight=10)
    job = log.job("x", following=lambda: None)
    scheduler.schedule_first(job, 5.0)
    if then == "schedule":
        scheduler.schedule(job, 20.0)
    else:
        scheduler.cancel(job)
    async with running(scheduler):
        for step in (5.0, 10.0, 20.0, 30.0):
            clock.advance(step - clock.now())
            await settle()
    assert log.starts == ([("x", 20.0)] if then == "schedule" else [])


async def test_a_first_run_of_a_running_job_is_planned_after_the_run() -> None:
    clock = ManualClock(start=0.0)
    log = Log(clock)
    scheduler = Scheduler(clock, max_in_flight=10)
    gate = asyncio.Event()
    job = log.job("x", gate=gate, following=lambda: None)
    scheduler.schedule(job, 0.0)
    async with running(scheduler):
        await until(lambda: len(log.starts) == 1)
        scheduler.schedule_first(job, 1.0)
        gate.set()
        clock.advance(1.0)
        await until(lambda: len(log.starts) == 2)
    assert log.starts == [("x", 0.0), ("x", 1.0)]


# --- lag ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "late_by", "min_lag"),
    [
        pytest.param("probe", 0.0, 0.0, id="on-time-probe"),
        pytest.param("refresh", 0.0, 0.0, id="on-time-refresh"),
        pytest.param("probe", 100.0, 0.1, id="100-clock-s-late"),
        pytest.param("refresh", 500.0, 0.5, id="500-clock-s-late"),
    ],
)
async def test_on_lag_reports_kind_and_real_seconds(
    kind: str, late_by: float, min_lag: float
) -> None:
    clock = ScaledClock(speed=1000.0)
    lags: list[tuple[str, float]] = []
    scheduler = Scheduler(clock, max_in_flight=10, on_lag=lambda k, lag: lags.append((k, lag)))
    log = Log(clock)
    scheduler.schedule(log.job("x", kind), clock.now() - late_by)
    async with running(scheduler):
        await until(lambda: len(log.ends) == 1)
    assert len(lags) == 1
    reported_kind, lag = lags[0]
    assert reported_kind == kind
    assert min_lag <= lag < min_lag + 0.5


async def test_on_lag_is_never_negative() -> None:
    clock = ManualClock(start=0.0)
    lags: list[float] = []
    scheduler = Scheduler(clock, max_in_flight=2, on_lag=lambda _, lag: lags.append(lag))
    log = Log(clock)
    for i in range(10):
        scheduler.schedule(log.job(f"j{i}", "refresh" if i % 2 else "probe"), float(i))
    async with running(scheduler):
        clock.advance(20)
        await until(lambda: len(log.ends) == 10)
    assert len(lags) == 10
    assert all(lag >= 0 for lag in lags)


# --- stop and drain -----------------------------------------------------------------------


async def test_stop_cancels_picked_jobs_at_once_and_waits_grace_for_others() -> None:
    clock = ScaledClock(speed=1000.0)
    events: dict[str, tuple[str, float]] = {}
    starts: list[str] = []
    grace = 0.3

    def job(key: str, kind: str, seconds: float) -> Job:
        async def run() -> float | None:
            starts.append(key)
            try:
                await asyncio.sleep(seconds)
            except asyncio.CancelledError:
                events[key] = ("cancelled", time.monotonic())
                raise
            events[key] = ("finished", time.monotonic())
            return clock.now() + 1  # a next run that must not start after stop

        return Job(key, kind, run)

    scheduler = Scheduler(clock, max_in_flight=10)
    for j in (
        job("probe", "probe", 60.0),
        job("fast-refresh", "refresh", 0.05),
        job("slow-refresh", "refresh", 60.0),
        job("slow-refresh-2", "refresh", 60.0),
    ):
        scheduler.schedule(j, clock.now())
    stop = asyncio.Event()
    async with asyncio.timeout(LIMIT):
        task = asyncio.create_task(
            scheduler.run(stop, grace=grace, cancel_at_stop=lambda j: j.kind == "probe")
        )
        await until(lambda: scheduler.in_flight == 4)
        stopped = time.monotonic()
        stop.set()
        cut_off = await task
    returned = time.monotonic()
    assert cut_off == 2
    assert sorted(starts) == sorted(events)  # each ran once: no next run after stop
    assert events["probe"][0] == "cancelled"
    assert events["probe"][1] - stopped < 0.1  # at once, not after the grace period
    assert events["fast-refresh"][0] == "finished"
    assert events["slow-refresh"][0] == events["slow-refresh-2"][0] == "cancelled"
    assert events["slow-refresh"][1] - stopped >= grace - 0.01
    assert grace - 0.01 <= returned - stopped < grace + 0.5
    assert scheduler.in_flight == 0
    assert not scheduler.running


async def test_stop_returns_as_soon_as_work_is_done() -> None:
    clock = ManualClock()
    log = Log(clock)
    scheduler = Scheduler(clock, max_in_flight=10)
    scheduler.schedule(log.job("short", wall=0.05), clock.now())
    stop = asyncio.Event()
    async with asyncio.timeout(LIMIT):
        task = asyncio.create_task(scheduler.run(stop, grace=30.0))
        await until(lambda: scheduler.in_flight == 1)
        started = time.monotonic()
        stop.set()
        assert await task == 0
    assert time.monotonic() - started < 1.0
    assert len(log.ends) == 1


async def test_stop_with_nothing_in_flight() -> None:
    clock = ManualClock()
    log = Log(clock)
    scheduler = Scheduler(clock, max_in_flight=10)
    scheduler.schedule(log.job("tomorrow"), clock.now() + 86_400)
    stop = asyncio.Event()
    async with asyncio.timeout(LIMIT):
        task = asyncio.create_task(scheduler.run(stop, grace=30.0))
        await settle()
        during = scheduler.running
        stop.set()
        assert await task == 0
    assert during
    assert not scheduler.running
    assert log.starts == []


async def test_already_stopped() -> None:
    clock = ManualClock()
    log = Log(clock)
    scheduler = Scheduler(clock, max_in_flight=10)
    scheduler.schedule(log.job("due"), clock.now())
    stop = asyncio.Event()
    stop.set()
    async with asyncio.timeout(LIMIT):
        assert await scheduler.run(stop) == 0
    assert log.starts == []


async def test_no_new_work_after_stop() -> None:
    clock = ManualClock(start=0.0)
    log = Log(clock)
    scheduler = Scheduler(clock, max_in_flight=10)
    gate = asyncio.Event()
    scheduler.schedule(log.job("running", gate=gate), 0.0)
    scheduler.schedule(log.job("later"), 10.0)
    stop = asyncio.Event()
    async with asyncio.timeout(LIMIT):
        task = asyncio.create_task(scheduler.run(stop, grace=1.0))
        await until(lambda: scheduler.in_flight == 1)
        stop.set()
        await asyncio.sleep(0)
        clock.advance(100)  # "later" is now due, but the scheduler is stopping
        await settle()
        gate.set()
        assert await task == 0
    assert log.keys() == ["running"]
