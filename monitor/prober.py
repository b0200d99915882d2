"""Probing: each connection's probe job, one Table API read with a usable token.

The job probes on a jittered interval (and no sooner than a 429's Retry-After). A probe
without a usable token asks for one first, unless the refresh side is backing off. A 401
earns one refresh and one re-probe before it counts against the credential. Every
result is traced, counted, put in the history and applied to the connection's health.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Protocol

import aiohttp
from opentelemetry import trace

from monitor import health as health_machine
from monitor.clock import Clock
from monitor.connection import Connection
from monitor.credentials import Credentials
from monitor.health_log import HealthLog
from monitor.model import Grant, HistoryEntry, HistoryKind, ProbeReason, ProbeResult, TokenSet
from monitor.probe import ProbeRequest, ProbeTarget, probe
from monitor.telemetry.context import CONNECTION
from monitor.timing import probe_gap, usable

# The keeper's logger: these lines were always the keeper's, and dashboards know them so.
log = logging.getLogger("snowmon.keeper")


class ProbeMetrics(Protocol):
    def probe_done(self, connection_id: str, result: ProbeResult) -> None: ...


class Prober:
    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        credentials: Credentials,
        clock: Clock,
        tracer: trace.Tracer,
        metrics: ProbeMetrics,
        health: HealthLog,
        rng: random.Random,
    ) -> None:
        self._session = session
        self._credentials = credentials
        self._clock = clock
        self._tracer = tracer
        self._metrics = metrics
        self._health = health
        self._rng = rng

    async def run(self, conn: Connection) -> float | None:
        """The probe job: returns when it should run next."""
        token = CONNECTION.set(conn.id)
        try:
            result = await self.probe(conn)
            interval = conn.settings.probe.interval
            following = self._clock.now() + probe_gap(interval, self._rng.random())
            if result.retry_after is not None:
                following = max(following, self._clock.now() + result.retry_after)
        except Exception:
            log.exception("probe.crashed", extra={"connection": conn.id})
            return self._clock.now() + conn.settings.probe.interval
        else:
            return following
        finally:
            CONNECTION.reset(token)

    async def probe(self, conn: Connection) -> ProbeResult:
        attributes = {"snowmon.connection": conn.id, "server.address": self._request(conn).host}
        with self._tracer.start_as_current_span("probe", attributes=attributes) as span:
            result = await self._once(conn, allow_grant=True)
            if result.reason is ProbeReason.AUTH_REJECTED:
                fresh = await self._credentials.obtain(conn)
                if fresh is not None:
                    result = await self._with(conn, fresh, resend=1)
                    if result.reason is ProbeReason.AUTH_REJECTED:
                        self._health.apply(conn, result)
                        self._health.apply(conn, health_machine.CredentialRefused(result.detail))
                        self._done(conn, result, span)
                        return result
            self._health.apply(conn, result)
            self._done(conn, result, span)
            return result

    def _done(self, conn: Connection, result: ProbeResult, span: trace.Span) -> None:
        span.set_attribute("snowmon.outcome", result.reason.value)
        if not result.ok:
            span.set_status(trace.StatusCode.ERROR, result.reason.value)
        conn.last_probe = result
        if conn.owned:  # a released connection's series belong to its new owner
            self._metrics.probe_done(conn.id, result)
        self._health.record(
            HistoryEntry(
                conn.id,
                result.started_at,
                HistoryKind.PROBE,
                result.reason.value,
                result.detail,
                result.duration,
                result.status,
            )
        )

    async def _once(self, conn: Connection, *, allow_grant: bool) -> ProbeResult:
        now = self._clock.now()
        tokens = conn.tokens
        if tokens is None or not usable(tokens, now):
            waiting = conn.retry_at is not None and conn.retry_at > now
            if conn.flight is not None or (allow_grant and not waiting):
                tokens = await self._credentials.obtain(conn)
            else:
                tokens = None
        if tokens is None or not usable(tokens, self._clock.now()):
            last = conn.last_token_result
            detail = f"no usable token: {last.detail}" if last and last.detail else "no token"
            if conn.settings.grant is Grant.AUTHORIZATION_CODE and conn.tokens is None:
                self._health.apply(
                    conn, health_machine.NotAuthorized("not authorized yet: run the connect flow")
                )
            return ProbeResult(ProbeReason.NO_TOKEN, now, 0.0, None, detail)
        return await self._with(conn, tokens)

    @staticmethod
    def _request(conn: Connection) -> ProbeRequest:
        request = conn.probe_request
        if request is None:
            p = conn.settings.probe
            target = ProbeTarget(conn.settings.instance_url, p.table, p.query, p.fields)
            request = conn.probe_request = ProbeRequest.build(target)
        return request

    async def _with(self, conn: Connection, tokens: TokenSet, *, resend: int = 0) -> ProbeResult:
        deadline = asyncio.get_running_loop().time() + conn.settings.probe.timeout
        return await probe(
            self._session,
            self._request(conn),
            tokens.access_token,
            self._clock,
            deadline=deadline,
            resend=resend,
        )
