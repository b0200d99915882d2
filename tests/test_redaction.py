"""No secret anywhere: a full scenario (password grants, refreshes, an authorization-code
connect flow, rejected credentials with error bodies, hibernation, API and page reads)
runs with every secret known, then every log line, span, metric, API response and page
is searched for each one."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.emulator import Emulator, FleetOptions
from monitor.telemetry import Telemetry, TelemetrySettings, configure_logging
from tests.daemon.configs import ADMIN_TOKEN, READ_TOKEN, write_config

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging("debug", "json", stream=stream)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)


def _issued(emu: Emulator, into: set[str]) -> None:
    tokens = emu.state.tokens
    into.update(tokens.access, tokens.refresh, tokens.codes)


async def test_no_secret_in_logs_spans_metrics_api_or_page(
    tmp_path: Path, log_stream: io.StringIO
) -> None:
    exporter = InMemorySpanExporter()
    telemetry = Telemetry.create(
        TelemetrySettings(traces="otlp", schedule_delay=0.1), exporter=exporter
    )
    seen_tokens: set[str] = set()
    emitted: list[str] = []
    async with Emulator(FleetOptions(instances=4, speed=30.0, access_lifespan=60, seed=51)) as emu:
        path, port = write_config(emu.fleet_info(), tmp_path, connect_ids=1, probe_interval=20)
        config = load_config(path).config
        base = f"http://127.0.0.1:{port}"
        daemon = Daemon(config, telemetry=telemetry, registry=telemetry.registry)
        async with asyncio.TaskGroup() as group:
            group.create_task(daemon.run())
            await asyncio.wait_for(daemon.started.wait(), 10)
            async with aiohttp.ClientSession() as client:
                # The connect flow: code, state and PKCE verifier travel through us.
                cid = f"{emu.instances[0].name}-connect"
                async with client.get(
                    f"{base}/connect/{cid}", headers=ADMIN, allow_redirects=False
                ) as r:
                    authorize = r.headers["Location"]
                async with client.get(authorize, allow_redirects=False) as r:
                    callback = r.headers["Location"]
                _issued(emu, seen_tokens)
                seen_tokens.add(callback.split("code=")[1].split("&")[0])
                async with client.get(callback) as r:
                    emitted.append(await r.text())
                # Failures with bodies: a rotated secret, a hibernating instance.
                emu.rotate_secret(emu.instances[1].name)
                emu.revoke(emu.instances[1].name)
                emu.set_faults(emu.instances[2].name, hibernate=True)
                for _ in range(40):  # ~20 emulated minutes of refreshes and probes
                    _issued(emu, seen_tokens)
                    await asyncio.sleep(0.1)
                for url in (
                    "/api/v1/connections",
                    "/api/v1/summary",
                    *(f"/api/v1/connections/{i.name}?history=200" for i in emu.instances),
                    f"/api/v1/connections/{cid}?history=200",
                    "/",
                ):
                    async with client.get(base + url, headers=ADMIN) as r:
                        assert r.status == 200, url
                        emitted.append(await r.text())
                for accept in ("text/plain", "application/openmetrics-text"):
                    async with client.get(f"{base}/metrics", headers={"Accept": accept}) as r:
                        emitted.append(await r.text())
                async with client.post(
                    f"{base}/api/v1/connections/{emu.instances[1].name}/refresh", headers=ADMIN
                ) as r:
                    emitted.append(await r.text())
            daemon.stop.set()
        _issued(emu, seen_tokens)
        fleet_secrets = {
            value for inst in emu.instances for value in (inst.client_secret, inst.password)
        }
        fleet_secrets.add(emu.rotate_secret(emu.instances[3].name))
    telemetry.shutdown()

    spans = exporter.get_finished_spans()
    assert any(s.name == "token.grant" for s in spans)
    assert any(s.name == "probe" for s in spans)
    for span in spans:
        emitted.append(span.name)
        emitted.append(json.dumps(dict(span.attributes or {}), default=str))
        emitted.extend(
            json.dumps(dict(event.attributes or {}), default=str) for event in span.events
        )
        if span.status.description:
            emitted.append(span.status.description)
    logs = log_stream.getvalue()
    assert '"event":"token.answered"' in logs
    assert '"outcome":"rejected"' in logs
    emitted.append(logs)
    everything = "\n".join(emitted)

    secrets = fleet_secrets | seen_tokens | {READ_TOKEN, ADMIN_TOKEN}
    key = (path.with_name("snowmon.secrets") / "encryption.key").read_text().strip()
    secrets.add(key)
    assert len(seen_tokens) >= 10  # the scenario really minted tokens
    leaked = sorted(s[:6] + "…" for s in secrets if s and s in everything)
    assert not leaked, f"secrets found in output: {leaked}"
