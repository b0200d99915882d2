"""App keys: the typed slots through which handlers reach what `build_app` was given."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from aiohttp import web

from monitor.clock import Clock
from monitor.web.auth import Gate
from monitor.web.pending import PendingAuthorizations
from monitor.web.ports import FleetView, Readiness
from monitor.web.settings import WebSettings

# accept header -> (the exposition's chunks, in order; its content type)
MetricsRender = Callable[[str], tuple[Sequence[bytes], str]]

FLEET: Final = web.AppKey[FleetView]("snowmon.fleet")
READINESS: Final = web.AppKey[Readiness]("snowmon.readiness")
METRICS_RENDER: Final = web.AppKey[MetricsRender]("snowmon.metrics_render")
SETTINGS: Final = web.AppKey("snowmon.web_settings", WebSettings)
CLOCK: Final = web.AppKey[Clock]("snowmon.clock")
GATE: Final = web.AppKey("snowmon.gate", Gate)
PENDING: Final = web.AppKey("snowmon.pending_authorizations", PendingAuthorizations)
