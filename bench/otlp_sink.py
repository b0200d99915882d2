"""A stand-in OpenTelemetry collector: answers every OTLP/HTTP export with 200.

Used by the fleet benchmarks so that "spans on" really serialises and sends every batch
over loopback, without a collector's own cost on the measured CPU. Prints one JSON line
when it listens; `GET /stats` answers how many exports and bytes it received.

    .venv/bin/python -m bench.otlp_sink --port 4318
"""

from __future__ import annotations

import argparse
import json
import sys

from aiohttp import web

COUNTS = web.AppKey("counts", dict)


async def export(request: web.Request) -> web.Response:
    body = await request.read()
    counts = request.app[COUNTS]
    counts["requests"] += 1
    counts["bytes"] += len(body)
    # an empty ExportTraceServiceResponse is an empty protobuf message
    return web.Response(body=b"", content_type="application/x-protobuf")


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[COUNTS])


async def announce(app: web.Application) -> None:
    sys.stdout.write(json.dumps({"event": "sink_ready"}) + "\n")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=4318)
    args = parser.parse_args()
    app = web.Application(client_max_size=64 * 2**20)
    app[COUNTS] = {"requests": 0, "bytes": 0}
    app.router.add_post("/v1/traces", export)
    app.router.add_get("/stats", stats)
    app.on_startup.append(announce)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
