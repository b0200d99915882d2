"""Shared machinery of the fleet benchmarks: processes, CPU and memory from /proc, the
emulator and the daemon as separate processes, their logs and their /metrics.

Layout on a 2-core machine: the system under test (the daemon, the bare aiohttp loop or
blackbox_exporter) runs alone on CPU 1; the emulator, this controller, the OTLP sink and
load drivers share CPU 0. CPU is read from /proc/<pid>/stat (utime + stime of every
thread of the process), memory from /proc/<pid>/status. Everything talks over loopback.

Not a benchmark itself: `fleet_scale`, `fleet_rate`, `compare` and `profile_daemon` use it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, cast

import aiohttp

from monitor.event_loop import EVENT_LOOPS, EventLoopChoice, resolve

ROOT: Final = Path(__file__).resolve().parent.parent
RESULTS: Final = ROOT / "bench" / "results"
PYTHON: Final = sys.executable
SNOWMON: Final = str(Path(sys.executable).with_name("snowmon"))
CLK_TCK: Final = os.sysconf("SC_CLK_TCK")
CONTROL_CPU: Final = 0  # emulator, controller, sink, drivers
SUT_CPU: Final = 1  # the process being measured
PROBE_QUERY: Final = (
    "/api/now/table/sys_user?sysparm_limit=1&sysparm_fields=sys_id"
    "&sysparm_no_count=true&sysparm_suppress_pagination_header=true"
)  # the daemon's default probe URL (monitor/probe.py ProbeTarget.url)


# --- /proc --------------------------------------------------------------------------


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) seconds of the whole process (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    return sum(cpu_times(pid))


def work_dir(name: str) -> Path:
    """`bench/results/work/NAME`, emptied: a run's scratch files (configs, stores, logs)."""
    path = RESULTS / "work" / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def reset_peak_rss() -> None:
    """This process's VmHWM back to its current RSS (Linux >= 4.0: clear_refs "5")."""
    Path("/proc/self/clear_refs").write_text("5")


def rss_bytes(pid: int, key: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def open_sockets(pid: int) -> int:
    """How many sockets a process holds open (its /proc fd table): for a client, the
    listening sockets aside, its pooled connections, busy or idle."""
    fds = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in fds.iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed while we looked
            count += os.readlink(fd).startswith("socket:")
    return count


def cpu_busy_seconds(cpu: int) -> float:
    """Busy time of one CPU (everything but idle and iowait), from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + values[4]
            return (sum(values[:8]) - idle) / CLK_TCK
    raise ValueError(f"no cpu{cpu} in /proc/stat")


def machine() -> dict[str, object]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    versions: dict[str, str] = {}
    for name in ("aiohttp", "opentelemetry-sdk", "prometheus-client", "uvloop"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version  # noqa: PLC0415

            versions[name] = version(name)
    return {
        "code": code_version(),
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }


def code_version() -> dict[str, object]:
    """Which daemon code ran: the commit, and a digest of monitor/ as it is on disk (other
    engineers edit the tree while benchmarks run). PYTHONPATH can point the daemon at a
    patched copy (`--code`); its digest is given separately by the benchmark."""
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    return {"commit": commit, "monitor_sha256": tree_digest(ROOT / "monitor")}


def tree_digest(package: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class Meter:
    """CPU of one process over a window, plus what else ran on its CPU meanwhile."""

    pid: int
    cpu: int = SUT_CPU
    wall0: float = 0.0
    user0: float = 0.0
    system0: float = 0.0
    busy0: float = 0.0

    def start(self) -> Meter:
        self.wall0 = time.perf_counter()
        self.user0, self.system0 = cpu_times(self.pid)
        self.busy0 = cpu_busy_seconds(self.cpu)
        return self

    def read(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall0
        user, system = cpu_times(self.pid)
        user, system = user - self.user0, system - self.system0
        used = user + system
        busy = cpu_busy_seconds(self.cpu) - self.busy0
        return {
            "wall_seconds": round(wall, 3),
            "cpu_seconds": round(used, 3),
            "user_seconds": round(user, 3),
            "system_seconds": round(system, 3),
            "cores": round(used / wall, 4) if wall > 0 else 0.0,
            # time other processes spent on the measured CPU: noise from the rest of the box
            "other_on_cpu_seconds": round(max(0.0, busy - used), 3),
        }


# --- processes ------------------------------------------------------------------------


def pin(cpu: int) -> None:
    """Pin the calling process (and what it spawns from now on) to one CPU."""
    if len(os.sched_getaffinity(0)) > 1 and (os.cpu_count() or 1) > cpu:
        os.sched_setaffinity(0, {cpu})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def spawn(
    args: Sequence[str],
    *,
    cpu: int,
    stdout: Any = asyncio.subprocess.DEVNULL,
    stderr: Any = None,
    env: Mapping[str, str] | None = None,
) -> asyncio.subprocess.Process:
    """Start `args` pinned to `cpu` from its first instruction (threads inherit it)."""
    cpus = {cpu} if (os.cpu_count() or 1) > cpu else None

    def pin_child() -> None:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)

    return await asyncio.create_subprocess_exec(
        *args,
        stdout=stdout,
        stderr=stderr,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        preexec_fn=pin_child,
    )


async def stop(process: asyncio.subprocess.Process, grace: float = 30.0) -> float:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL. Returns seconds until it exited."""
    began = time.perf_counter()
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    return round(time.perf_counter() - began, 3)


async def read_json_line(process: asyncio.subprocess.Process, what: str) -> dict[str, Any]:
    """The first JSON line a child prints on stdout (its "ready" announcement)."""
    assert process.stdout is not None
    while True:
        line = await process.stdout.readline()
        if not line:
            raise RuntimeError(f"{what} exited before announcing itself")
        with contextlib.suppress(ValueError):
            parsed: dict[str, Any] = json.loads(line)
            return parsed


# --- the emulator ---------------------------------------------------------------------


@dataclass
class Emulator:
    process: asyncio.subprocess.Process
    ready: dict[str, Any]
    config: Path
    spawned_at: float

    @property
    def admin_url(self) -> str:
        return str(self.ready["admin_url"])

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def ca_file(self) -> str | None:
        """The certificate to trust when the fleet speaks HTTPS (`tls=True`)."""
        ca = self.ready.get("ca_file")
        return None if ca is None else str(ca)

    def client_env(self) -> dict[str, str]:
        """Environment of a client process (daemon, bare loop): trust the fleet's TLS."""
        ca = self.ca_file
        return {} if ca is None else {"SSL_CERT_FILE": ca}

    def ssl_context(self) -> ssl.SSLContext | bool:
        """For this process's own sessions: True (the system's trust) or one trusting it."""
        ca = self.ca_file
        return True if ca is None else ssl.create_default_context(cafile=ca)

    @classmethod
    async def start(
        cls,
        workdir: Path,
        instances: int,
        *,
        speed: float = 1.0,
        access_lifespan: int | None = None,
        refresh_lifespan: int | None = None,
        cpu: int = CONTROL_CPU,
        own_sockets: bool = False,
        tls: bool = False,
    ) -> Emulator:
        """`own_sockets`: every instance on a socket of its own, as real instances are
        hosts of their own (else, past 250 instances, they share 250 sockets and a
        client's per-host pool keeps a connection alive for several instances). `tls`:
        HTTPS with certificates written to `workdir` (`ca_file`: the root to trust)."""
        config = workdir / "fleet.toml"
        addressing = "hosts" if own_sockets else "prefix" if instances > 250 else "auto"
        args = [
            PYTHON, "-m", "monitor.emulator", "--instances", str(instances),
            "--config-out", str(config), "--speed", repr(speed), "--addressing", addressing,
        ]  # fmt: skip
        if tls:
            args += ["--tls", str(workdir)]
        if access_lifespan is not None:
            args += ["--access-lifespan", str(access_lifespan)]
        if refresh_lifespan is not None:
            args += ["--refresh-lifespan", str(refresh_lifespan)]
        began = time.perf_counter()
        process = await spawn(args, cpu=cpu, stdout=asyncio.subprocess.PIPE)
        try:
            async with asyncio.timeout(180):
                ready = await read_json_line(process, "the emulator")
        except BaseException:
            await stop(process)
            raise
        return cls(process, ready, config, time.perf_counter() - began)

    async def write_fleet(self, session: aiohttp.ClientSession, n: int, path: Path) -> Path:
        """The first `n` instances of `/admin/fleet` (URLs, credentials) as a JSON file,
        for a client process to read."""
        fleet = await self.get(session, f"/admin/fleet?limit={n}")
        await asyncio.to_thread(path.write_text, json_dumps(fleet))
        return path

    async def get(self, session: aiohttp.ClientSession, path: str) -> Any:
        async with session.get(self.admin_url + path) as response:
            response.raise_for_status()
            return await response.json(content_type=None)

    async def totals(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        """Fleet-wide evidence counts (`/admin/stats` totals)."""
        stats = await self.get(session, "/admin/stats")
        totals: dict[str, Any] = stats["totals"]
        return totals

    async def close(self) -> None:
        await stop(self.process, 20)


def loop_ran(choice: str | None) -> str:
    """The loop a daemon given `--loop choice` runs on (None: its default, `auto`)."""
    return resolve(cast("EventLoopChoice", choice or "auto"))  # argparse checked the name


def add_loop_argument(parser: argparse.ArgumentParser) -> None:
    """`--loop`: the daemon's `[daemon] event_loop` (None: its own default, `auto`)."""
    parser.add_argument(
        "--loop",
        choices=EVENT_LOOPS,
        default=None,
        help="[daemon] event_loop of the daemon (default: the daemon's own default, auto)",
    )


def add_connection_arguments(
    parser: argparse.ArgumentParser, *, keepalive: float, keepalive_help: str
) -> None:
    """`--keepalive S` (the daemon's and the bare clients' idle keep-alive) and `--tls`."""
    parser.add_argument("--keepalive", type=float, default=keepalive, help=keepalive_help)
    parser.add_argument(
        "--tls",
        action="store_true",
        help="the emulator speaks HTTPS, as real instances do (its root trusted by every"
        " client): with a keep-alive below the interval, a TLS handshake per connection",
    )


def check_connection_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.keepalive < 1.0:
        parser.error("--keepalive: the daemon takes 1 s at least ([http] keepalive_timeout)")


def bare_session(
    keepalive: float, *, limit: int = 1000, ssl: ssl.SSLContext | bool = True
) -> aiohttp.ClientSession:
    """A session with the daemon's pool settings (`monitor.http.HttpSettings`) and none of
    its trace hooks: the bare clients' (`bare_loop`, `conn_memory`). The numbers are
    written out, not imported: `monitor.http` would load OpenTelemetry into the bare
    process (+8 MB RSS)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=limit, limit_per_host=4, keepalive_timeout=keepalive, ssl=ssl
        ),
        timeout=aiohttp.ClientTimeout(total=15, connect=5),
        headers={"User-Agent": "snowmon/0.1.0"},
        cookie_jar=aiohttp.DummyCookieJar(),
    )


def password_form(instance: Mapping[str, Any]) -> dict[str, str]:
    """The password grant of one instance of the emulator's `/admin/fleet` list."""
    return {
        "grant_type": "password",
        "client_id": instance["client_id"],
        "client_secret": instance["client_secret"],
        "username": instance["username"],
        "password": instance["password"],
    }


def evidence_delta(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """What the emulator saw between two `totals` snapshots."""

    def diff(key: str) -> dict[str, int]:
        old, new = before.get(key, {}), after.get(key, {})
        return {k: int(v) - int(old.get(k, 0)) for k, v in new.items() if v != old.get(k, 0)}

    scalars = (
        "refreshes",
        "refresh_overlaps",
        "reused_refresh_tokens",
        "rejected_refresh_tokens",
        "expired_token_uses",
        "rejected_access_tokens",
    )
    out: dict[str, Any] = {k: int(after.get(k, 0)) - int(before.get(k, 0)) for k in scalars}
    out["grants"] = diff("grants")
    out["table_requests"] = diff("table_requests")
    out["token_requests"] = diff("token_requests")
    out["connections_accepted"] = int(after.get("connections_accepted", 0)) - int(
        before.get("connections_accepted", 0)
    )
    return out


def connections_per_request(evidence: Mapping[str, Any]) -> float | None:
    """TCP connections the emulator accepted per request it answered (1.0: none reused)."""
    requests = sum(evidence["table_requests"].values()) + sum(evidence["token_requests"].values())
    return round(evidence["connections_accepted"] / requests, 3) if requests else None


# --- the daemon -------------------------------------------------------------------------


@dataclass(frozen=True)
class DaemonOptions:
    web_port: int
    traces: str = "otlp"  # otlp | none
    log_level: str = "info"
    max_in_flight: int | None = None
    per_connection_metrics: bool = True
    probe_interval: float | None = None
    sample_ratio: float | None = None
    keepalive: float | None = None  # [http] keepalive_timeout; None: the daemon's default
    event_loop: str | None = None  # [daemon] event_loop; None: the daemon's default


def daemon_config(fleet_config: Path, out: Path, options: DaemonOptions) -> Path:
    """The emulator's config plus the sections a benchmark needs. Keys of tables the
    emulator already wrote (`[daemon]`) go into those tables; new tables are appended."""
    text = fleet_config.read_text(encoding="utf-8")
    daemon_keys = [f'log_level = "{options.log_level}"', 'log_format = "json"']
    if options.max_in_flight is not None:
        daemon_keys.append(f"max_in_flight = {options.max_in_flight}")
    if options.event_loop is not None:
        daemon_keys.append(f'event_loop = "{options.event_loop}"')
    if "\n[daemon]\n" not in text:
        raise ValueError(f"{fleet_config} has no [daemon] table")
    text = text.replace("\n[daemon]\n", "\n[daemon]\n" + "\n".join(daemon_keys) + "\n", 1)
    db = fleet_config.with_suffix(".db")
    # the store path is relative to the config's directory: keep the emulator's file
    text = text.replace(f'sqlite:///{fleet_config.stem}.db"', f'sqlite:///{db.name}"', 1)
    extra = [
        "",
        "[web]",
        f'listen = "127.0.0.1:{options.web_port}"',
        "",
        "[telemetry]",
        f'traces = "{options.traces}"',
        f"per_connection_metrics = {str(options.per_connection_metrics).lower()}",
        *([f"sample_ratio = {options.sample_ratio!r}"] if options.sample_ratio is not None else []),
        "",
    ]
    if options.keepalive is not None:
        extra += ["[http]", f"keepalive_timeout = {float(options.keepalive)!r}", ""]
    if options.probe_interval is not None:
        timeout = min(10.0, options.probe_interval / 2)  # must stay below the interval
        extra += [
            "[defaults.probe]",
            f"interval = {float(options.probe_interval)!r}",
            f"timeout = {timeout!r}",
            "",
        ]
    out.write_text(text + "\n".join(extra), encoding="utf-8")
    return out


_TIME = re.compile(rb'^\{"time":"([^"]+)"')
_STARTED = b'"event":"daemon.started"'
# By URL, not `target`: monitor.http.classify_target labels a path-prefixed (emulator)
# instance URL "other".
_PROBE_LINE = re.compile(
    rb'"url":"[^"]*/api/now/table/[^"]*","target":"[a-z]+","status":(\d+)'
    rb'[^\n]*?"connection":"([^"]+)"'
)


def _log_time(line: bytes) -> float | None:
    match = _TIME.match(line)
    if match is None:
        return None
    stamp = match.group(1).decode().replace("Z", "+00:00")
    return datetime.fromisoformat(stamp).timestamp()


@dataclass
class LogTail:
    """Follows the daemon's JSON log file: when it said `daemon.started`, which
    connections had a Table API request answered, how many lines of each level."""

    path: Path
    offset: int = 0
    started_at: float | None = None  # wall time (UNIX) from the log line
    probed: set[str] = field(default_factory=set)
    probe_requests: int = 0
    probe_statuses: dict[int, int] = field(default_factory=dict)
    lines: int = 0
    warnings: int = 0

    def reset_counts(self) -> None:
        self.probed = set()
        self.probe_requests = 0
        self.probe_statuses = {}

    def poll(self) -> None:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n")
        if end < 0:
            return
        chunk = chunk[: end + 1]
        self.offset += len(chunk)
        self.lines += chunk.count(b"\n")
        self.warnings += chunk.count(b'"level":"warning"')
        if self.started_at is None:
            at = chunk.find(_STARTED)
            if at >= 0:
                line_start = chunk.rfind(b"\n", 0, at) + 1
                self.started_at = _log_time(chunk[line_start:at])
        for match in _PROBE_LINE.finditer(chunk):
            status = int(match.group(1))
            self.probe_requests += 1
            self.probe_statuses[status] = self.probe_statuses.get(status, 0) + 1
            self.probed.add(match.group(2).decode())


@dataclass
class Daemon:
    process: asyncio.subprocess.Process
    config: Path
    log: LogTail
    web_url: str
    spawned_wall: float  # UNIX time at spawn
    spawned_at: float  # perf_counter at spawn

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    async def start(
        cls,
        config: Path,
        log_path: Path,
        web_port: int,
        *,
        env: Mapping[str, str] | None = None,
        cpu: int = SUT_CPU,
    ) -> Daemon:
        handle = log_path.open("wb")
        try:
            wall, began = time.time(), time.perf_counter()
            process = await spawn(
                [SNOWMON, "run", "--config", str(config)],
                cpu=cpu,
                stdout=handle,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
            )
        finally:
            handle.close()
        url = f"http://127.0.0.1:{web_port}"
        return cls(process, config, LogTail(log_path), url, wall, began)

    def _check_alive(self) -> None:
        if self.process.returncode is not None:
            raise RuntimeError(f"daemon exited with {self.process.returncode}; see {self.log.path}")

    async def wait_web(self, session: aiohttp.ClientSession) -> float:
        """Seconds from spawn until /healthz answers. Callers bound it with a timeout."""
        while True:
            self._check_alive()
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(self.web_url + "/healthz") as response:
                    if response.status == 200:
                        return time.perf_counter() - self.spawned_at
            await asyncio.sleep(0.2)

    async def wait_probed(self, n: int, poll: float = 0.5) -> float:
        """Seconds from spawn until the log shows a Table API answer for `n` distinct
        connections (needs log_level info). Callers bound it with a timeout."""
        while True:
            self.log.poll()
            if len(self.log.probed) >= n:
                return time.perf_counter() - self.spawned_at
            self._check_alive()
            await asyncio.sleep(poll)

    async def wait_probes_total(self, session: aiohttp.ClientSession, n: int) -> float:
        """Seconds from spawn until `snowmon_probes_total` reaches `n` (any log level)."""
        while True:
            self._check_alive()
            with contextlib.suppress(aiohttp.ClientError):
                samples = (await scrape(session, self.web_url, ("snowmon_probes",)))[0]
                if total(samples, "snowmon_probes_total") >= n:
                    return time.perf_counter() - self.spawned_at
            await asyncio.sleep(0.5)

    async def close(self, grace: float = 40.0) -> float:
        return await stop(self.process, grace)


# --- OTLP sink ----------------------------------------------------------------------------


@dataclass
class Sink:
    """`bench/otlp_sink.py` in its own process: answers every OTLP/HTTP export with 200."""

    process: asyncio.subprocess.Process
    url: str

    @classmethod
    async def start(cls) -> Sink:
        port = free_port()
        process = await spawn(
            [PYTHON, "-m", "bench.otlp_sink", "--port", str(port)],
            cpu=CONTROL_CPU,
            stdout=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            await read_json_line(process, "the OTLP sink")
        return cls(process, f"http://127.0.0.1:{port}")

    async def stats(self, session: aiohttp.ClientSession) -> dict[str, int]:
        async with session.get(self.url + "/stats") as response:
            counts: dict[str, int] = await response.json()
            return counts

    async def close(self) -> None:
        await stop(self.process, 10)


# --- Prometheus text format ---------------------------------------------------------------

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str, prefixes: Iterable[str] | None = None) -> Samples:
    """Samples of the families starting with one of `prefixes` (all when None)."""
    wanted = tuple(prefixes) if prefixes is not None else None
    samples: Samples = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        if wanted is not None and not line.startswith(wanted):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, raw_labels, value = match.groups()
        labels = tuple(_LABEL.findall(raw_labels)) if raw_labels else ()
        samples[(name, labels)] = float(value)
    return samples


async def scrape(
    session: aiohttp.ClientSession, web_url: str, prefixes: Iterable[str] | None = None
) -> tuple[Samples, dict[str, float]]:
    """Parsed /metrics and what the scrape took: wall seconds and bytes."""
    began = time.perf_counter()
    async with session.get(web_url + "/metrics") as response:
        body = await response.read()
    took = time.perf_counter() - began
    samples = parse_metrics(body.decode(), prefixes)
    return samples, {"seconds": round(took, 4), "bytes": len(body)}


def total(samples: Samples, name: str, **match: str) -> float:
    """Sum of the samples of `name` whose labels include `match`."""
    wanted = set(match.items())
    return sum(v for (n, labels), v in samples.items() if n == name and wanted <= set(labels))


def buckets(samples: Samples, name: str, **match: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) pairs of one histogram, sorted by bound."""
    wanted = set(match.items())
    out = []
    for (n, labels), value in samples.items():
        if n != name + "_bucket" or not wanted <= set(labels):
            continue
        le = dict(labels)["le"]
        out.append((math.inf if le == "+Inf" else float(le), value))
    return sorted(out)


def bucket_delta(
    after: list[tuple[float, float]], before: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    old = dict(before)
    return [(le, count - old.get(le, 0.0)) for le, count in after]


def quantile(q: float, cumulative: list[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile: linear inside the bucket, the highest finite bound
    when the rank lands in +Inf."""
    if not cumulative or cumulative[-1][1] <= 0:
        return None
    rank = q * cumulative[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for le, count in cumulative:
        if count >= rank:
            if math.isinf(le):
                return lower_bound
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return lower_bound


def max_bound(cumulative: list[tuple[float, float]]) -> str | None:
    """The bucket the largest observation fell in, as `<= x` (or `> x` for +Inf)."""
    previous_count, previous_le = 0.0, 0.0
    for le, count in cumulative:
        if count == cumulative[-1][1] and count > previous_count:
            return f"> {previous_le:g}" if math.isinf(le) else f"<= {le:g}"
        previous_count, previous_le = count, le
    return None


def lag_summary(cumulative: list[tuple[float, float]]) -> dict[str, object]:
    count = cumulative[-1][1] if cumulative else 0.0
    p50, p99 = quantile(0.5, cumulative), quantile(0.99, cumulative)
    under_1s = next((c for le, c in cumulative if le == 1.0), 0.0)
    return {
        "count": int(count),
        "p50_seconds": round(p50, 4) if p50 is not None else None,
        "p99_seconds": round(p99, 4) if p99 is not None else None,
        "max_bucket": max_bound(cumulative),
        "share_under_1s": round(under_1s / count, 5) if count else None,
    }


LAG: Final = "snowmon_scheduler_lag_seconds"  # planned work: due time to start
FIRST_WAIT: Final = "snowmon_scheduler_first_run_wait_seconds"  # first runs after a start


def lag_from(
    samples: Samples, before: Samples | None, kind: str, metric: str = LAG
) -> tuple[dict[str, object], list[tuple[float, float]]]:
    after = buckets(samples, metric, kind=kind)
    if before is not None:
        after = bucket_delta(after, buckets(before, metric, kind=kind))
    return lag_summary(after), after


def per_connection(samples: Samples, name: str) -> dict[str, float]:
    return {dict(labels)["connection"]: v for (n, labels), v in samples.items() if n == name}


# --- output --------------------------------------------------------------------------------


def save(name: str, result: Mapping[str, object]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path


def command_line() -> str:
    module = "bench." + Path(sys.argv[0]).with_suffix("").name
    return " ".join([".venv/bin/python -m", module, *sys.argv[1:]])


def fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e6 else f"{value:.0f}"
    return str(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for index, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                               enumerate(zip(row, widths, strict=True))))  # fmt: skip
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def log(message: str) -> None:
    """Progress on stderr: stdout carries the JSON and the table."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def json_dumps(result: Mapping[str, object]) -> str:
    return json.dumps(result, indent=2)


# --- load at a fixed rate ------------------------------------------------------------------


async def paced(
    rate: float,
    seconds: float,
    fire: Callable[[int], Awaitable[None]],
    *,
    max_in_flight: int = 512,
    tick: float = 0.005,
) -> dict[str, int]:
    """Call `fire(0)`, `fire(1)`, ... at `rate` per second for `seconds`, each in its own
    task, at most `max_in_flight` at once (what would exceed it is skipped and counted).
    Waits for the calls in flight at the end (the callers' requests have timeouts)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    end = start + seconds
    started = skipped = 0
    tasks: set[asyncio.Task[None]] = set()
    while (now := loop.time()) < end:
        due = int((now - start) * rate)
        while started < due:
            if len(tasks) >= max_in_flight:
                skipped += due - started
                started = due
                break
            task = asyncio.create_task(fire(started))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            started += 1
        await asyncio.sleep(tick)
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"started": started, "skipped": skipped}


async def settle(
    pid: int, cpu: int = SUT_CPU, *, busy_below: float = 0.1, span: float = 2.0
) -> float:
    """Wait until processes other than `pid` use less than `busy_below` of `cpu` over
    `span` seconds (other engineers' test runs share this machine). Returns their share
    of the last span; callers bound the wait with a timeout."""
    while True:
        before = cpu_busy_seconds(cpu) - cpu_seconds(pid)
        await asyncio.sleep(span)
        share = (cpu_busy_seconds(cpu) - cpu_seconds(pid) - before) / span
        if share < busy_below:
            return share
