"""Fuzz the web app with schemathesis against its own OpenAPI document.

Every operation gets a few schema-valid and schema-invalid requests (positive and negative
modes), with an admin token; schemathesis checks the answers: no 5xx, documented status
codes, content types and bodies, 4xx for invalid input, 401 without the token.
Bounded: 15 examples per operation, about three seconds in all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from monitor.clock import ManualClock
from monitor.web.openapi import build_openapi
from tests.web.conftest import ADMIN, bearer, make_app
from tests.web.fakes import T0, FakeFleet, make_status, sample_fleet
from tests.web.threaded import serve_in_thread

schemathesis = pytest.importorskip("schemathesis", reason="pin schemathesis in the dev extras")
from hypothesis import HealthCheck, settings  # noqa: E402 (after the importorskip)

schema = schemathesis.openapi.from_dict(build_openapi(protect_metrics=False, anonymous_read=False))


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    clock = ManualClock(T0)
    fleet = FakeFleet.of(clock, [*sample_fleet(40), make_status("acme-prod")])  # the example id
    with serve_in_thread(lambda: make_app(fleet, clock)) as url:
        yield url


@schema.parametrize()  # type: ignore[untyped-decorator]
@settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_the_api_against_its_own_document(case: Any, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, headers=bearer(ADMIN))
