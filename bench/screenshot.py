"""Screenshots of the status page, desktop and phone, with Debian's headless Chromium.

    .venv/bin/python -m bench.screenshot [--out DIR] [--connections N]
        serves a sample fleet of N connections on 127.0.0.1 and shoots it;
    .venv/bin/python -m bench.screenshot --url http://127.0.0.1:8080/ --token $SNOWMON_READ_TOKEN
        shoots a running daemon instead.

Writes DIR/status-desktop.png, DIR/status-phone.png and DIR/status.html (the DOM).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web

from monitor.clock import ManualClock
from monitor.secret import Secret
from monitor.web import WebSettings, build_app
from tests.web.chromium import dump_dom, screenshot
from tests.web.fakes import T0, FakeFleet, FakeReadiness, render_metrics, sample_fleet

TOKEN = "screenshot-read-token"
SHOTS = {"desktop": (1280, 1000), "phone": (390, 844)}


async def shoot(url: str, out: Path) -> None:
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    for name, (width, height) in SHOTS.items():
        path = await screenshot(url, out / f"status-{name}.png", width=width, height=height)
        print(f"wrote {path}")
    dom = await dump_dom(url)
    await asyncio.to_thread((out / "status.html").write_text, dom)
    print(f"wrote {out / 'status.html'}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    parser.add_argument("--connections", type=int, default=24)
    parser.add_argument("--url", help="a running daemon's page, e.g. http://127.0.0.1:8080/")
    parser.add_argument("--token", default="", help="a read token for --url")
    parser.add_argument("--label", default="", help="key:value filter")
    args = parser.parse_args()
    query = {k: v for k, v in (("token", args.token), ("label", args.label)) if v}
    if args.url:
        await shoot(f"{args.url}?{urlencode(query)}", args.out)
        return
    clock = ManualClock(T0)
    app = build_app(
        fleet=FakeFleet.of(clock, sample_fleet(args.connections)),
        readiness=FakeReadiness(),
        metrics_render=render_metrics,
        settings=WebSettings(read_tokens=[Secret(TOKEN)]),
        clock=clock,
        tracer_provider=None,
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        query["token"] = TOKEN
        await shoot(f"http://{host}:{port}/?{urlencode(query)}", args.out)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
