"""A real daemon watching an emulated fleet with faults, both as `snowmon` processes, so
the dashboards and rules are checked against what the daemon really exports.

`snowmon emulate` serves six instances (one healthy pair, one hibernating, one rate
limited, one whose ACL denies the probe table, one answering half its requests with
503) and writes a daemon config; `snowmon run` watches them, probing every 5 s. Traces go
to an OTLP endpoint that refuses connections: spans are still sampled, so histograms carry
trace-id exemplars, and the export failures are counted.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.assets import exposition

SNOWMON = [sys.executable, "-m", "monitor.cli"]
INSTANCES = 6
SCENARIO = """
[[rules]]
instances = ["dev100002"]
faults = { hibernate = true }

[[rules]]
instances = ["dev100003"]
faults = { rate_limit = 0 }

[[rules]]
instances = ["dev100004"]
faults = { acl_deny = ["sys_user"] }

[[rules]]
instances = ["dev100005"]
faults = { error_503 = 0.5, latency = 0.02 }
"""
STARTUP_SECONDS = 45.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class LiveScrape:
    base_url: str
    classic: str
    openmetrics: str
    exposition: exposition.Exposition
    log: Path


def _get(url: str, accept: str | None = None) -> str:
    request = urllib.request.Request(url)  # noqa: S310 (a loopback URL of our own)
    if accept:
        request.add_header("Accept", accept)
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        body: bytes = response.read()
    return body.decode()


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return ""


@contextmanager
def _process(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_for_emulator(proc: subprocess.Popen[bytes], log: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"snowmon emulate exited with {proc.returncode}:\n{_tail(log)}")
        for line in _tail(log, 100_000).splitlines():
            if line.startswith("{") and json.loads(line).get("event") == "emulator_ready":
                return
        time.sleep(0.1)
    raise TimeoutError(f"the emulator did not get ready:\n{_tail(log)}")


def _probed_all(text: str) -> bool:
    configured = probed = 0
    for family in text_string_to_metric_families(text):
        if family.name == "snowmon_connections_configured":
            configured = int(sum(s.value for s in family.samples))
        elif family.name == "snowmon_probe_success":
            probed = len(family.samples)
    return configured > 0 and probed == configured


def _append_config(config: Path, port: int) -> None:
    dead_collector = f"http://127.0.0.1:{free_port()}/v1/traces"
    extra = f"""
[defaults.probe]
interval = 5.0
timeout = 2.0

[web]
listen = "127.0.0.1:{port}"

[telemetry]
traces = "otlp"
otlp_endpoint = "{dead_collector}"
"""
    with config.open("a", encoding="utf-8") as handle:
        handle.write(extra)


@contextmanager
def running_daemon(directory: Path) -> Iterator[LiveScrape]:
    """Start the fleet and the daemon, wait until every connection was probed at least
    once, scrape /metrics in both formats, yield, and stop both processes."""
    scenario = directory / "faults.toml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    config = directory / "snowmon.toml"
    deadline = time.monotonic() + STARTUP_SECONDS
    env_log = directory / "emulator.log"
    daemon_log = directory / "daemon.log"
    emulate = [
        *SNOWMON,
        "emulate",
        f"--instances={INSTANCES}",
        f"--scenario={scenario}",
        f"--config-out={config}",
        "--secrets=files",
        "--access-lifespan=120",
        "--seed=7",
    ]
    with ExitStack() as stack:
        emulator = stack.enter_context(_process(emulate, env_log))
        _wait_for_emulator(emulator, env_log, deadline)
        port = free_port()
        _append_config(config, port)
        daemon = stack.enter_context(
            _process([*SNOWMON, "run", "--config", str(config)], daemon_log)
        )
        base = f"http://127.0.0.1:{port}"
        classic = ""
        while time.monotonic() < deadline:
            if daemon.poll() is not None:
                raise RuntimeError(
                    f"snowmon run exited with {daemon.returncode}:\n{_tail(daemon_log)}"
                )
            try:
                classic = _get(f"{base}/metrics")
            except OSError:
                classic = ""
            if classic and _probed_all(classic):
                break
            time.sleep(0.25)
        else:
            raise TimeoutError(
                f"not every connection was probed within {STARTUP_SECONDS} s:\n"
                f"{classic[-2000:]}\n{_tail(daemon_log)}"
            )
        openmetrics = _get(f"{base}/metrics", "application/openmetrics-text; version=1.0.0")
        yield LiveScrape(
            base,
            classic,
            openmetrics,
            exposition.parse(classic, openmetrics),
            daemon_log,
        )


def tool(*names: str) -> str | None:
    """A real tool (promtool, amtool, alertmanager) under any of `names`: where
    `make tools` puts it, then on PATH. Debian calls Alertmanager's binary
    prometheus-alertmanager."""
    tools = Path(__file__).resolve().parents[2] / ".tools"
    path = [Path(d) for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    for name in names:
        for directory in [tools / "bin", tools / "root" / "usr" / "bin", *path]:
            candidate = directory / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    return None
