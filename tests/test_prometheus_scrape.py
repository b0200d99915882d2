"""A real Prometheus (Debian's package) scrapes a running daemon and answers PromQL about
our metrics: the exposition is what Prometheus expects, exemplars and all."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import aiohttp
import pytest

from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.emulator import Emulator, FleetOptions
from tests.daemon.configs import free_port, write_config

pytestmark = pytest.mark.tools


def _prometheus() -> str:
    for candidate in (shutil.which("prometheus"), "/work/main/.tools/bin/prometheus"):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail("prometheus is not installed: run `make tools` (.ci/tools.sh)")


async def _query(client: aiohttp.ClientSession, base: str, promql: str) -> list[object]:
    async with client.get(f"{base}/api/v1/query", params={"query": promql}) as resp:
        body = await resp.json()
    assert body["status"] == "success", body
    result: list[object] = body["data"]["result"]
    return result


async def test_prometheus_scrapes_the_daemon_and_answers_promql(tmp_path: Path) -> None:
    binary = _prometheus()
    async with Emulator(FleetOptions(instances=6, speed=10.0, seed=61)) as emu:
        path, port = write_config(emu.fleet_info(), tmp_path, probe_interval=30)
        daemon = Daemon(load_config(path).config)
        prom_port = free_port()
        (tmp_path / "prometheus.yml").write_text(
            f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: snowmon
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""
        )
        async with asyncio.TaskGroup() as group:
            group.create_task(daemon.run())
            await asyncio.wait_for(daemon.started.wait(), 10)
            with (tmp_path / "prometheus.log").open("wb") as log:
                prom = await asyncio.create_subprocess_exec(
                    binary,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                    "--enable-feature=exemplar-storage",
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=log,
                )
            base = f"http://127.0.0.1:{prom_port}"
            try:
                async with aiohttp.ClientSession() as client, asyncio.timeout(60):
                    # Wait for a scrape that succeeded with the whole fleet healthy. A scrape
                    # may time out while the machine is busy (the timeout is the 1 s
                    # interval); an exposition Prometheus cannot parse never gets `up` to 1.
                    while True:
                        try:
                            up = await _query(client, base, 'up{job="snowmon"}')
                            healthy = await _query(
                                client, base, 'sum(snowmon_connections{state="healthy"})'
                            )
                            async with client.get(f"{base}/api/v1/targets") as resp:
                                targets = (await resp.json())["data"]["activeTargets"]
                        except aiohttp.ClientError:
                            up, healthy, targets = [], [], []
                        if (
                            up
                            and up[0]["value"][1] == "1"  # type: ignore[index]
                            and healthy
                            and healthy[0]["value"][1] == "6"  # type: ignore[index]
                            and targets
                            and targets[0]["health"] == "up"
                        ):
                            break
                        await asyncio.sleep(0.5)
                    assert targets[0]["lastError"] == ""
                    probes = await _query(client, base, "sum(snowmon_probes_total)")
                    assert float(probes[0]["value"][1]) >= 6  # type: ignore[index]
            finally:
                prom.terminate()
                await prom.wait()
                daemon.stop.set()
