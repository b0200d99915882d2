"""The web app: status API, health and readiness, `/metrics`, the connect flow (OAuth
authorization code + PKCE) and the status page. It holds no state of its own beyond the
connect flow's pending authorizations; everything else comes through `FleetView`.

The daemon calls `build_app(...)` and serves the result with `AppRunner`/`TCPSite`.
"""

from monitor.web.app import build_app
from monitor.web.ports import AuthorizeTarget, FleetView, Readiness
from monitor.web.settings import WebSettings

__all__ = ["AuthorizeTarget", "FleetView", "Readiness", "WebSettings", "build_app"]
