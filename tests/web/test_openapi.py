"""The OpenAPI document says what the server does: the same routes, for the settings."""

from __future__ import annotations

from monitor.web.openapi import build_openapi
from tests.web.conftest import Client


async def test_the_document_lists_exactly_the_apps_routes(client: Client) -> None:
    response = await client.get("/api/v1/openapi.json")
    assert response.status == 200
    doc = await response.json()
    assert doc["openapi"] == "3.1.0"
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    served = {
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    assert documented == served


def test_the_document_follows_the_settings() -> None:
    closed = build_openapi(protect_metrics=True, anonymous_read=False)
    assert closed["paths"]["/metrics"]["get"]["security"] == [{"bearer": []}, {"session": []}]
    open_ = build_openapi(protect_metrics=False, anonymous_read=True)
    assert open_["paths"]["/metrics"]["get"]["security"] == []
    assert {} in open_["paths"]["/api/v1/connections"]["get"]["security"]
    assert {} not in open_["paths"]["/api/v1/connections/{id}/probe"]["post"]["security"]
