"""Routing and links: which Slack channel hears about a connection, and where a message
points people (status page, connect page, runbook).

Routing order: the connection's own channel, then the first route whose `match` labels
all equal, then the default channel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from monitor.model import ConnectionInfo
from monitor.notify.catalog import RUNBOOK_ANCHORS, AlertName
from monitor.notify.maintenance import matches


@dataclass(frozen=True, slots=True)
class Route:
    match: Mapping[str, str]
    channel: str


class Router:
    def __init__(self, default_channel: str = "", routes: Sequence[Route] = ()) -> None:
        self.default_channel = default_channel
        self.routes = tuple(routes)

    def channel_for(self, info: ConnectionInfo) -> str:
        if info.channel:
            return info.channel
        for route in self.routes:
            if matches(route.match, info):
                return route.channel
        return self.default_channel


@dataclass(frozen=True, slots=True)
class Links:
    """Base URLs without a trailing slash; an empty one leaves its links out."""

    public_url: str = ""
    runbook_url: str = ""

    def connection(self, connection_id: str) -> str:
        if not self.public_url:
            return ""
        return f"{self.public_url.rstrip('/')}/?connection={quote(connection_id, safe='')}"

    def reauthorize(self, connection_id: str) -> str:
        if not self.public_url:
            return ""
        return f"{self.public_url.rstrip('/')}/connect/{quote(connection_id, safe='')}"

    def status_page(self) -> str:
        return f"{self.public_url.rstrip('/')}/" if self.public_url else ""

    def runbook(self, alert: AlertName) -> str:
        if not self.runbook_url:
            return ""
        return f"{self.runbook_url}#{RUNBOOK_ANCHORS[alert]}"
