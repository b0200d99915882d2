"""Running `Alerting` in tests: its loop in a task group, a manual clock, counters."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from monitor.clock import ManualClock
from monitor.notify.routing import Links, Route, Router
from monitor.notify.rules import AlertPolicy
from monitor.notify.service import Alerting
from monitor.notify.slack import Sender
from monitor.store import Store
from tests.fakes.slack_api import FakeSlack

LINKS = Links("https://snowmon.example.net", "https://snowmon.example/runbooks")
ROUTER = Router("#snowmon-alerts", [Route({"customer": "acme"}, "#acme-integrations")])
SETTLE_TIMEOUT = 10.0


@dataclass
class Run:
    alerting: Alerting
    clock: ManualClock
    results: Counter[str] = field(default_factory=Counter)

    async def settle(self) -> None:
        async with asyncio.timeout(SETTLE_TIMEOUT):
            await self.alerting.settled()

    async def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.settle()


def make(
    store: Store,
    sender: Sender | None,
    clock: ManualClock,
    *,
    policy: AlertPolicy | None = None,
    queue_size: int = 1000,
    call_timeout: float = 5.0,
    stop_grace: float = 0.2,
) -> Run:
    results: Counter[str] = Counter()
    alerting = Alerting(
        policy=policy or AlertPolicy(),
        router=ROUTER,
        store=store,
        sender=sender,
        clock=clock,
        links=LINKS,
        on_result=_Count(results),
        queue_size=queue_size,
        call_timeout=call_timeout,
        stop_grace=stop_grace,
        seed=7,
    )
    return Run(alerting, clock, results)


class _Count:
    def __init__(self, counter: Counter[str]) -> None:
        self._counter = counter

    def __call__(self, result: str) -> None:
        self._counter[result] += 1


@asynccontextmanager
async def running(run: Run, *, start: bool = True) -> AsyncIterator[Run]:
    """Start (load the store) and run the loop; stop it on the way out."""
    if start:
        await run.alerting.start()
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        group.create_task(run.alerting.run(stop))
        try:
            yield run
        finally:
            stop.set()


async def assert_fired_then_resolved_by_edit(slack: FakeSlack, store: Store, ts: str) -> None:
    """One message, then its edit to resolved and a thread reply; no record left."""
    assert [c.method for c in slack.calls] == [
        "chat.postMessage",
        "chat.update",
        "chat.postMessage",
    ]
    assert slack.calls[1].body["ts"] == ts
    assert slack.calls[2].body["thread_ts"] == ts
    assert await store.load_alerts() == []
