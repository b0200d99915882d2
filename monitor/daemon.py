"""The composition root: builds every part from the config, runs them, stops them.

One `async with` tree: resources enter an `AsyncExitStack` and leave in reverse, only if
they started; long-running loops live in one `TaskGroup`. Shutdown waits on an
`asyncio.Event` (set by the signal handler in `cli.py`): the scheduler stops starting
work, cancels probes in flight, lets refreshes finish within the grace period (their
token writes are shielded), the last health and history are flushed, then the web
server, HTTP session, store and telemetry close.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import platform
import socket
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from prometheus_client import CollectorRegistry

from monitor import __version__
from monitor.clock import Clock, ScaledClock, SystemClock
from monitor.config import Config
from monitor.errors import ConfigError, StoreError
from monitor.event_loop import running_loop_name
from monitor.health import Thresholds
from monitor.http import HttpSettings, build_session
from monitor.keeper import Keeper
from monitor.notify.wiring import build_alerting
from monitor.ownership import Ownership
from monitor.schedule import Job, Scheduler
from monitor.store import Store
from monitor.store.crypto import Keyring
from monitor.store.factory import open_store
from monitor.store.postgres import PostgresStore
from monitor.telemetry import Metrics, Telemetry, TelemetrySettings, render_chunks
from monitor.telemetry.loopwatch import watch_event_loop
from monitor.web.app import build_app
from monitor.web.settings import WebSettings

log = logging.getLogger("snowmon.daemon")


def clock_for(config: Config) -> Clock:
    if config.clock.speed == 1.0 and not config.clock.anchor:
        return SystemClock()
    return ScaledClock(config.clock.speed, anchor=config.clock.anchor or None)


@dataclass
class Running:
    """What a started daemon exposes to tests and the demo."""

    keeper: Keeper
    scheduler: Scheduler
    store: Store
    registry: CollectorRegistry
    web_url: str | None
    telemetry: Telemetry


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        telemetry: Telemetry | None = None,
        replica: str | None = None,
        stop: asyncio.Event | None = None,
        owns_process: bool = False,
    ) -> None:
        """`owns_process`: this daemon is what the process is for (`snowmon run`), so it
        may tune the process's garbage collector (see `GC_THRESHOLDS`)."""
        self.config = config
        self._owns_process = owns_process
        self.clock = clock or clock_for(config)
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._telemetry = telemetry
        self.replica = replica or f"{socket.gethostname()}-{os.getpid()}"
        self.stop = stop or asyncio.Event()
        self.started = asyncio.Event()
        self.running: Running | None = None

    async def run(self) -> None:
        cfg = self.config
        if self._owns_process:
            gc.set_threshold(*GC_THRESHOLDS)
        async with AsyncExitStack() as stack:
            telemetry = self._telemetry or Telemetry.create(
                TelemetrySettings(**cfg.telemetry.model_dump()),
                registry=self.registry,
                resource_attributes={"service.instance.id": self.replica},
            )
            if self._telemetry is None:
                stack.push_async_callback(telemetry.aclose)
            metrics = telemetry.metrics
            metrics.configured(len(cfg.connections))
            store = await self._open_store(stack)
            session = build_session(HttpSettings(**cfg.http.model_dump()), telemetry)
            stack.push_async_callback(session.close)
            scheduler = Scheduler(
                self.clock,
                max_in_flight=cfg.daemon.max_in_flight,
                on_lag=metrics.scheduler_lag,
                on_first_wait=metrics.first_run_wait,
            )
            keeper = Keeper(
                connections=cfg.connections,
                store=store,
                session=session,
                clock=self.clock,
                scheduler=scheduler,
                metrics=metrics,
                tracer=telemetry.tracer,
                thresholds=Thresholds(
                    failure_threshold=cfg.alerts.failure_threshold,
                    success_threshold=cfg.alerts.success_threshold,
                ),
                request_timeout=cfg.http.request_timeout,
                initial_spread=cfg.daemon.initial_spread,
                owner=self.replica,
                shared=isinstance(store, PostgresStore) and self._shared,
            )
            ownership = self._ownership(store, keeper, metrics)
            alerting = build_alerting(
                slack=cfg.slack,
                alerts=cfg.alerts,
                public_url=cfg.web.base_url,
                store=store,
                clock=self.clock,
                session=session,
                on_result=metrics.notification,
                tracer=telemetry.tracer,
            )
            keeper.add_listener(alerting)
            await keeper.load()
            # Alert state and the outbox come back before the first health change, so a
            # restart neither repeats nor forgets an alert.
            await alerting.start(configured=[c.id for c in cfg.connections])
            if self._owns_process:
                # What was loaded lives as long as the process: keep it out of the cyclic
                # collector's passes, which would otherwise walk the whole fleet (millions
                # of objects at 100,000 connections) again and again.
                gc.collect()
                gc.freeze()
            web_url = await self._serve_web(stack, keeper, scheduler, store, telemetry)
            self.running = Running(keeper, scheduler, store, self.registry, web_url, telemetry)
            log.info(
                "daemon.started",
                extra={
                    "version": __version__,
                    "python": platform.python_version(),
                    "event_loop": running_loop_name(),
                    "connections": len(cfg.connections),
                    "web": web_url,
                    "replica": self.replica,
                },
            )
            self.started.set()
            async with asyncio.TaskGroup() as group:
                cut = group.create_task(
                    scheduler.run(
                        self.stop, grace=cfg.daemon.shutdown_grace, cancel_at_stop=_is_probe
                    )
                )
                group.create_task(keeper.run_flusher(self.stop))
                group.create_task(alerting.run(self.stop))
                group.create_task(watch_event_loop(metrics, self.stop))
                if ownership is not None:
                    group.create_task(ownership.run(self.stop))
            await keeper.flush()
            if ownership is not None:
                # Only after refreshes in flight drained: hand the fleet to the others now
                # instead of a lease period from now.
                await ownership.release_all()
            log.info("daemon.stopped", extra={"refreshes_cut_off": cut.result()})

    @property
    def _shared(self) -> bool:
        return self.config.daemon.store_kind == "postgresql"

    async def _open_store(self, stack: AsyncExitStack) -> Store:
        cfg = self.config
        if self._shared and cfg.daemon.lease_seconds < 2 * cfg.http.request_timeout:
            raise ConfigError(
                [
                    f"daemon.lease_seconds ({cfg.daemon.lease_seconds:g}) must be at least "
                    f"twice http.request_timeout ({cfg.http.request_timeout:g}): a token "
                    "request must finish while its lease certainly holds"
                ]
            )
        store = open_store(
            cfg.daemon.store.reveal(),
            Keyring.from_secrets(cfg.daemon.encryption_keys),
            history_per_connection=cfg.daemon.history_per_connection,
            replica=self.replica if self._shared else None,
        )
        await store.open()
        stack.push_async_callback(store.close)
        return store

    def _ownership(self, store: Store, keeper: Keeper, metrics: Metrics) -> Ownership | None:
        """Leases, when replicas share the fleet through PostgreSQL."""
        if not isinstance(store, PostgresStore) or not self._shared:
            return None
        ownership = Ownership(
            store,
            keeper,
            lease_seconds=self.config.daemon.lease_seconds,
            request_timeout=self.config.http.request_timeout,
            on_round=metrics.leases,
        )
        keeper.credentials.may_request = ownership.may_request
        return ownership

    async def _serve_web(
        self,
        stack: AsyncExitStack,
        keeper: Keeper,
        scheduler: Scheduler,
        store: Store,
        telemetry: Telemetry,
    ) -> str | None:
        web_cfg = self.config.web
        if not web_cfg.enabled:
            return None
        app = build_app(
            fleet=keeper,
            readiness=_Readiness(store, scheduler, keeper),
            metrics_render=lambda accept: render_chunks(telemetry.registry, accept),
            settings=WebSettings(
                read_tokens=web_cfg.read_tokens,
                admin_tokens=web_cfg.admin_tokens,
                protect_metrics=web_cfg.protect_metrics,
                public_url=web_cfg.base_url,
            ),
            clock=self.clock,
            tracer_provider=telemetry.provider if telemetry.tracing else None,
        )
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, web_cfg.listen.host, web_cfg.listen.port)
        await site.start()
        return _site_url(runner, web_cfg.listen.host)


class _Readiness:
    """Ready when the store answers, the scheduler runs and the config was loaded."""

    def __init__(self, store: Store, scheduler: Scheduler, keeper: Keeper) -> None:
        self._store = store
        self._scheduler = scheduler
        self._keeper = keeper

    async def check(self) -> dict[str, bool]:
        try:
            async with asyncio.timeout(2.0):
                await self._store.ping()
        except (StoreError, TimeoutError):
            store_ok = False
        else:
            store_ok = self._keeper.store_ok
        return {"store": store_ok, "scheduler": self._scheduler.running, "config": True}


def _is_probe(job: Job) -> bool:
    return job.kind == "probe"


def _site_url(runner: web.AppRunner, host: str) -> str:
    addresses: Sequence[object] = runner.addresses
    for address in addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return f"http://{host}:{address[1]}"
    raise RuntimeError("the web server has no address")


# Collect the youngest generation every 50,000 new container objects instead of 700 (and
# the older ones more rarely): each request makes a few hundred short-lived objects that
# reference counting frees anyway, and every collection also walks what survived. A cold
# start of 20,000 connections measured 0.83 ms of CPU per request with the defaults and
# 0.64 ms with these (`bench.profile_daemon --scenario coldstart --connections 20000`, with
# `--code` of commit d9999ee for the defaults; docs/benchmarks.md); the
# price is cyclic garbage living a little longer (a few MB at most).
GC_THRESHOLDS: Final = (50_000, 20, 100)
