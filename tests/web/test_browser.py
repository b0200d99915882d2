"""The status page in a real headless browser: what a person would see."""

from __future__ import annotations

import asyncio
import os
import re
from html import unescape
from pathlib import Path

import pytest

from monitor.clock import ManualClock
from tests.web.chromium import chromium_path, dump_dom, has_color, read_png, screenshot
from tests.web.conftest import READ, make_app, serve
from tests.web.fakes import FakeFleet

pytestmark = pytest.mark.tools

RED = (0xB4, 0x23, 0x18)  # --bad: only there when the stylesheet got past the CSP
GREEN = (0x06, 0x76, 0x47)  # --good


@pytest.fixture(autouse=True)
def _need_chromium() -> None:
    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run must apt-get install chromium")
        pytest.skip("chromium is not installed (apt-get install chromium)")


def visible_text(dom: str) -> str:
    body = dom.split("<body>", 1)[1]
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", body)).split())


async def test_a_person_sees_the_fleet_worst_first(
    fleet: FakeFleet, clock: ManualClock, tmp_path: Path
) -> None:
    client = await serve(make_app(fleet, clock))
    try:
        url = str(client.make_url(f"/?token={READ}"))
        async with asyncio.timeout(60):
            dom = await dump_dom(url)
        text = visible_text(dom)
        assert "snowmon" in text
        assert "5 connections" in text
        # Summary tiles, worst first, with counts.
        assert re.search(r"1 Credentials expired 1 Failing 0 Forbidden .* 2 Healthy", text)
        # Groups in order of severity, each saying what it means.
        order = [text.index(h) for h in ("Credentials expired 1", "Failing 1", "Healthy 2")]
        assert order == sorted(order)
        assert "ServiceNow rejects the stored credentials" in text
        assert "acme-prod credentials expired for 2 h 5 min" in text
        assert "Re-authorize" in text
        assert "Refresh tokens that die within 7 days 2" in text
        assert "acme-test dies in 2 d renews" not in text
        assert "acme-test dies in 2 d needs a person" in text
        assert READ not in text

        async with asyncio.timeout(60):
            shot = await screenshot(url, tmp_path / "phone.png", width=390, height=844)
        width, height, rows = read_png(shot)
        assert (width, height) == (390, 844)
        assert has_color(rows, RED)
        assert has_color(rows, GREEN)
    finally:
        await client.close()


async def test_the_label_filter_narrows_what_is_shown(fleet: FakeFleet, clock: ManualClock) -> None:
    client = await serve(make_app(fleet, clock))
    try:
        async with asyncio.timeout(60):
            dom = await dump_dom(str(client.make_url(f"/?token={READ}&label=customer:globex")))
        text = visible_text(dom)
        assert "1 connection with customer=globex" in text
        assert "globex-prod" in text
        assert "acme-prod" not in text
    finally:
        await client.close()
