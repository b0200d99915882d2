"""Side by side: CPU per probe of snowmon and what users would run instead, in one run,
on the same emulated Table API endpoints at the same rate.

One emulator (CPU 0) serves N instances at real time with access tokens that outlive
the run (no refreshes anywhere: probes only). Each contender runs in turn alone on
CPU 1 and makes the same probe, `GET <instance>/api/now/table/sys_user?sysparm_limit=1
&sysparm_fields=sys_id&...` with a bearer token, at the same rate (N / interval):

- `bare`: `bench.bare_loop`, one aiohttp session with keep-alive and the daemon's pool
  settings, no telemetry, no scheduler: the floor for Python;
- `blackbox`: Prometheus blackbox_exporter (`.tools/bin/prometheus-blackbox-exporter`),
  one `http` module per instance with its bearer token, driven by a loop on CPU 0 that
  requests `/probe?module=..&target=..` at the rate (as Prometheus would scrape it);
- `snowmon-on`: `snowmon run`, everything on: scheduler, a probe span and an HTTP span
  per probe exported over OTLP/HTTP to a local sink (`bench.otlp_sink`), one JSON log
  line per request (and per state change) to a file, metrics, health and history saved
  to SQLite every second;
- `snowmon-off`: the nearest existing switch: `traces = "none"` (sampler ALWAYS_OFF: spans
  are non-recording and nothing is exported) and `log_level = "warning"` (no per-request
  line). Still on: the aiohttp trace hooks, metrics (histograms, per-connection gauges),
  the scheduler, the store;
- `snowmon-spans` (spans on, log lines off) and `snowmon-logs` (the reverse) split the
  difference between the two; `snowmon-sampled` is everything on with the existing
  `sample_ratio = 0.1` (on request);
- variants (on request, `--variant NAME=DIR:MODE[:LOOP]`, MODE one of on off spans logs
  sampled, LOOP one of auto uvloop asyncio): snowmon in that mode with its code taken
  from DIR (PYTHONPATH=DIR, so DIR/monitor shadows the tree) and, when LOOP is given, on
  that `[daemon] event_loop`: a proposed change measured beside the current code without
  touching the tree, or the same code on two event loops. `--code DIR` does the same
  for the snowmon-* contenders (a frozen snapshot while others edit the tree).

Connections: with the defaults (2,000 instances, one probe each every 6 s, keep-alive
30 s) every probe after an instance's first reuses a kept-alive connection. At the
design point (100,000 connections, a probe each every 5 minutes) none does: an idle
connection is closed after 3 s (the daemon's `keepalive_timeout`), so every probe opens a
new TCP connection (and, against a real instance, a TLS session). `--keepalive 1` (bare
loop and daemon alike) brings that regime to the benchmark's rate: the interval stays
longer than the keep-alive, and every instance gets a socket of its own (else, past 250
instances, instances share the emulator's sockets, and a pool per host:port would keep a
connection alive for all that share one). blackbox_exporter opens a new connection for
every probe in both. The emulator counts the TCP connections it accepts: "conn/req" in
the table. `--tls` has the emulator speak HTTPS (certificates under a root every
contender trusts: SSL_CERT_FILE, blackbox's `tls_config.ca_file`), as real instances
do: with `--keepalive 1`, every probe is a TLS handshake.

Per contender, a window after a warm-up: its CPU from /proc (all threads), the probes
the emulator answered in the window (its own count), the emulator's CPU. Rounds
alternate the order; the table gives each round's CPU per probe and the ratio to `bare`
of the same round, then the medians. Bar: snowmon-on <= 2 x bare.

    .venv/bin/python -m bench.compare            # 2,000 instances, 333/s, 2 rounds (~11 min)
    .venv/bin/python -m bench.compare --quick    # 500 instances, 100/s (< 1 min)
    .venv/bin/python -m bench.compare --keepalive 1   # a new connection per probe
    .venv/bin/python -m bench.compare --keepalive 1 --tls   # ... and a TLS handshake
    .venv/bin/python -m bench.compare --contenders bare snowmon-on --variant fix=/tmp/fix:on
    .venv/bin/python -m bench.compare --keepalive 1 --tls --contenders bare snowmon-on \
        --variant asyncio-on=.:on:asyncio   # the daemon on uvloop (default) and on asyncio
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import aiohttp

from bench import harness as h
from monitor.event_loop import EVENT_LOOPS

BLACKBOX = h.ROOT / ".tools" / "bin" / "prometheus-blackbox-exporter"
# snowmon contenders: (traces, log_level, sample_ratio)
SNOWMON: dict[str, tuple[str, str, float | None]] = {
    "snowmon-on": ("otlp", "info", None),
    "snowmon-off": ("none", "warning", None),
    "snowmon-spans": ("otlp", "warning", None),  # spans exported, no per-request log line
    "snowmon-logs": ("none", "info", None),  # log lines, no spans
    "snowmon-sampled": ("otlp", "info", 0.1),  # everything on, one trace in ten kept
}
CONTENDERS = ("bare", "blackbox", *SNOWMON)
DEFAULT = ("bare", "blackbox", "snowmon-on", "snowmon-off", "snowmon-spans", "snowmon-logs")
NEVER = 86_400_000  # access tokens of 1,000 days: nobody refreshes during the run


async def fetch_targets(
    emulator: h.Emulator, session: aiohttp.ClientSession, n: int
) -> list[list[str]]:
    """[probe URL, access token] per instance, tokens from a password grant each."""
    fleet = await emulator.get(session, f"/admin/fleet?limit={n}")
    semaphore = asyncio.Semaphore(32)

    async def grant(instance: dict[str, Any]) -> list[str]:
        form = h.password_form(instance)
        async with (
            semaphore,
            session.post(instance["base_url"] + "/oauth_token.do", data=form) as response,
        ):
            token = (await response.json())["access_token"]
        return [instance["base_url"] + h.PROBE_QUERY, token]

    return list(await asyncio.gather(*(grant(i) for i in fleet["instances"])))


def blackbox_config(targets: list[list[str]], path: Path, ca_file: str | None = None) -> None:
    """One module per instance (its bearer token); JSON is valid YAML."""
    tls = {"tls_config": {"ca_file": ca_file}} if ca_file is not None else {}
    modules = {
        f"m{i}": {
            "prober": "http",
            "timeout": "5s",
            "http": {
                "method": "GET",
                "headers": {"Accept": "application/json"},
                "authorization": {"type": "Bearer", "credentials": token},
                "valid_status_codes": [200],
                "preferred_ip_protocol": "ip4",
                **tls,
            },
        }
        for i, (_, token) in enumerate(targets)
    }
    path.write_text(json.dumps({"modules": modules}), encoding="utf-8")


class Variant(NamedTuple):
    """`--variant NAME=DIR:MODE[:LOOP]`: snowmon from DIR/monitor in MODE on LOOP."""

    code: Path
    mode: str
    loop: str | None  # None: the daemon's default


class Round:
    """One contender's measured window, with the emulator's view of it."""

    def __init__(
        self,
        args: argparse.Namespace,
        emulator: h.Emulator,
        session: aiohttp.ClientSession,
    ) -> None:
        self.args = args
        self.emulator = emulator
        self.session = session

    async def window(self, pid: int) -> dict[str, Any]:
        """Warm up, wait for a quiet CPU (bounded), then measure one window."""
        await asyncio.sleep(self.args.warmup)
        try:
            async with asyncio.timeout(self.args.settle):
                await h.settle(pid)
        except TimeoutError:
            h.log("CPU 1 stayed busy with other processes; measuring anyway")
        before = await self.emulator.totals(self.session)
        meter = h.Meter(pid).start()
        emulator_meter = h.Meter(self.emulator.pid, cpu=h.CONTROL_CPU).start()
        await asyncio.sleep(self.args.window)
        used = meter.read()
        emulator_used = emulator_meter.read()
        evidence = h.evidence_delta(before, await self.emulator.totals(self.session))
        answered = evidence["table_requests"].get("200", 0)
        other = sum(v for k, v in evidence["table_requests"].items() if k != "200")
        return {
            **used,
            "probes": answered,
            "non_200": other,
            "probes_per_second": round(answered / used["wall_seconds"], 1),
            "cpu_us_per_probe": round(used["cpu_seconds"] / answered * 1e6, 1)
            if answered
            else None,
            "emulator_cpu_us_per_probe": round(emulator_used["cpu_seconds"] / answered * 1e6, 1)
            if answered
            else None,
            "token_requests": evidence["token_requests"],
            "connections_per_request": h.connections_per_request(evidence),
        }


async def run_bare(r: Round, targets_file: Path, rate: float) -> dict[str, Any]:
    seconds = r.args.warmup + r.args.settle + r.args.window + 5
    process = await h.spawn(
        [h.PYTHON, "-m", "bench.bare_loop", "--targets", str(targets_file),
         "--rate", repr(rate), "--seconds", repr(seconds), "--keepalive", repr(r.args.keepalive)],
        cpu=h.SUT_CPU, stdout=asyncio.subprocess.PIPE, env=r.emulator.client_env(),
    )  # fmt: skip
    try:
        async with asyncio.timeout(30):
            await h.read_json_line(process, "the bare loop")
        out = await r.window(process.pid)
        out["rss_bytes"] = h.rss_bytes(process.pid)
    finally:
        await h.stop(process, 10)
    return out


async def run_blackbox(
    r: Round, targets: list[list[str]], workdir: Path, rate: float
) -> dict[str, Any]:
    config = workdir / "blackbox.yml"
    blackbox_config(targets, config, r.emulator.ca_file)
    port = h.free_port()
    process = await h.spawn(
        [str(BLACKBOX), f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
         "--log.level=warn"],
        cpu=h.SUT_CPU, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/probe"
    urls = [
        f"{base}?module=m{i}&target={quote(url, safe='')}" for i, (url, _) in enumerate(targets)
    ]
    outcomes: dict[str, int] = {}
    connector = aiohttp.TCPConnector(limit=256)
    try:
        async with aiohttp.ClientSession(connector=connector) as driver:
            async with asyncio.timeout(30):
                while True:
                    try:
                        async with driver.get(f"http://127.0.0.1:{port}/-/healthy") as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.2)

            async def fire(i: int) -> None:
                try:
                    async with driver.get(urls[i % len(urls)]) as response:
                        body = await response.read()
                        key = "success" if b"\nprobe_success 1" in body else "failure"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    key = type(exc).__name__
                outcomes[key] = outcomes.get(key, 0) + 1

            seconds = r.args.warmup + r.args.settle + r.args.window + 5
            load = asyncio.create_task(h.paced(rate, seconds, fire))
            try:
                out = await r.window(process.pid)
            finally:
                load.cancel()
            out["rss_bytes"] = h.rss_bytes(process.pid)
            out["probe_outcomes"] = outcomes
    finally:
        await h.stop(process, 10)
    return out


async def run_snowmon(
    r: Round, name: str, emulator: h.Emulator, workdir: Path, sink: h.Sink
) -> dict[str, Any]:
    args = r.args
    code = args.code
    event_loop = None
    if name in args.variants:
        code, mode, event_loop = args.variants[name]  # a Variant
        name = f"snowmon-{mode}"
    traces, log_level, ratio = SNOWMON[name]
    port = h.free_port()
    options = h.DaemonOptions(
        web_port=port,
        traces=traces,
        log_level=log_level,
        probe_interval=args.interval,
        sample_ratio=ratio,
        keepalive=args.keepalive,
        event_loop=event_loop,
    )
    config = h.daemon_config(emulator.config, workdir / f"{name}.toml", options)
    (workdir / "fleet.db").unlink(missing_ok=True)  # every contender starts from nothing
    log_path = workdir / f"{name}.log"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, **emulator.client_env()}
    if code is not None:
        env["PYTHONPATH"] = str(code)  # a patched copy of the package: DIR/monitor
    daemon = await h.Daemon.start(config, log_path, port, env=env)
    try:
        async with asyncio.timeout(120):
            await daemon.wait_probes_total(r.session, args.instances)
        sink_before = await sink.stats(r.session)
        out = await run_window_with_metrics(r, daemon)
        sink_after = await sink.stats(r.session)
        out["otlp_exports"] = sink_after["requests"] - sink_before["requests"]
        out["otlp_bytes"] = sink_after["bytes"] - sink_before["bytes"]
        out["rss_bytes"] = h.rss_bytes(daemon.pid)
    finally:
        await daemon.close()
        if not args.keep:
            log_path.unlink(missing_ok=True)
    return out


async def run_window_with_metrics(r: Round, daemon: h.Daemon) -> dict[str, Any]:
    before, _ = await h.scrape(r.session, daemon.web_url)
    daemon.log.poll()
    log_lines_before = daemon.log.lines
    out = await r.window(daemon.pid)
    after, _ = await h.scrape(r.session, daemon.web_url)
    out["lag_probe"] = h.lag_from(after, before, "probe")[0]
    out["spans_dropped"] = h.total(after, "snowmon_telemetry_dropped_total") - h.total(
        before, "snowmon_telemetry_dropped_total"
    )
    daemon.log.poll()
    out["log_lines"] = daemon.log.lines - log_lines_before
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    h.pin(h.CONTROL_CPU)
    rate = args.instances / args.interval
    workdir = h.work_dir("compare")
    result: dict[str, Any] = {
        "bench": "compare",
        "command": h.command_line(),
        "machine": h.machine(),
        "instances": args.instances,
        "interval_seconds": args.interval,
        "rate_per_second": round(rate, 1),
        "keepalive_seconds": args.keepalive,
        "tls": args.tls,
        "daemon_code": {
            "snowmon": h.tree_digest((args.code or h.ROOT) / "monitor"),
            **{v: h.tree_digest(variant.code / "monitor") for v, variant in args.variants.items()},
        },
        "rounds": [],
    }
    own_sockets = args.keepalive < args.interval  # a new connection per probe
    result["own_sockets"] = own_sockets
    emulator = await h.Emulator.start(
        workdir,
        args.instances,
        access_lifespan=NEVER,
        refresh_lifespan=2 * NEVER,
        own_sockets=own_sockets,
        tls=args.tls,
    )
    sink = await h.Sink.start()
    try:
        connector = aiohttp.TCPConnector(ssl=emulator.ssl_context())
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=60)
        ) as session:
            targets = await fetch_targets(emulator, session, args.instances)
            targets_file = workdir / "targets.json"
            targets_file.write_text(json.dumps(targets), encoding="utf-8")
            r = Round(args, emulator, session)
            for number in range(args.rounds):
                order = list(args.contenders)
                if number % 2:
                    order.reverse()
                measured: dict[str, Any] = {}
                for name in order:
                    h.log(f"round {number + 1}: {name} at {rate:.0f}/s")
                    if name == "bare":
                        measured[name] = await run_bare(r, targets_file, rate)
                    elif name == "blackbox":
                        measured[name] = await run_blackbox(r, targets, workdir, rate)
                    else:
                        measured[name] = await run_snowmon(r, name, emulator, workdir, sink)
                floor = measured.get("bare", {}).get("cpu_us_per_probe")
                for m in measured.values():
                    if floor and m.get("cpu_us_per_probe"):
                        m["ratio_to_bare"] = round(m["cpu_us_per_probe"] / floor, 3)
                result["rounds"].append(measured)
    finally:
        await sink.close()
        await emulator.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    result["median"] = medians(result["rounds"], args.contenders)
    return result


def medians(rounds: list[dict[str, Any]], contenders: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in contenders:
        per = [
            r[name]["cpu_us_per_probe"] for r in rounds if r.get(name, {}).get("cpu_us_per_probe")
        ]
        ratios = [r[name]["ratio_to_bare"] for r in rounds if "ratio_to_bare" in r.get(name, {})]
        out[name] = {
            "cpu_us_per_probe": round(statistics.median(per), 1) if per else None,
            "ratio_to_bare": round(statistics.median(ratios), 3) if ratios else None,
        }
    return out


HEADERS = [
    "round",
    "contender",
    "probes/s",
    "cpu s",
    "µs/probe",
    "x bare",
    "emu µs/probe",
    "RSS MB",
    "lag p99",
    "spans dropped",
    "conn/req",
    "noise s",
]


def rows(result: dict[str, Any]) -> list[list[object]]:
    out: list[list[object]] = []
    for number, measured in enumerate(result["rounds"], 1):
        for name, m in measured.items():
            out.append(
                [
                    number,
                    name,
                    m["probes_per_second"],
                    m["cpu_seconds"],
                    m["cpu_us_per_probe"],
                    m.get("ratio_to_bare"),
                    m["emulator_cpu_us_per_probe"],
                    round(m["rss_bytes"] / 2**20, 1),
                    m.get("lag_probe", {}).get("p99_seconds"),
                    m.get("spans_dropped"),
                    m.get("connections_per_request"),
                    m["other_on_cpu_seconds"],
                ]
            )
    for name, m in result["median"].items():
        out.append(
            ["median", name, None, None, m["cpu_us_per_probe"], m["ratio_to_bare"]]
            + [None] * (len(HEADERS) - 6)
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=6.0, help="probe interval, seconds")
    h.add_connection_arguments(
        parser,
        keepalive=30.0,
        keepalive_help="seconds an idle connection is kept, bare loop and daemon alike (30:"
        " every probe reuses its connection at the default interval); below the probe"
        " interval, every probe opens a new connection",
    )
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=10.0, help="max wait for a quiet CPU")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(DEFAULT))
    parser.add_argument(
        "--code", type=Path, help="run the snowmon contenders from DIR/monitor (PYTHONPATH)"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=DIR:MODE[:LOOP]",
        help="snowmon from DIR/monitor in MODE (on off spans logs sampled) on event loop LOOP"
        " (auto uvloop asyncio; default: the daemon's default), as contender NAME",
    )
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--quick", action="store_true", help="500 instances, 100/s, 1 round")
    args = parser.parse_args()
    h.check_connection_arguments(parser, args)
    if args.quick:
        args.instances, args.interval, args.rounds = 500, 5.0, 1
        args.warmup, args.window, args.settle = 2.0, 5.0, 1.0
        args.contenders = [c for c in args.contenders if c not in ("snowmon-spans", "snowmon-logs")]
    args.variants = {}
    for spec in args.variant:
        name, _, rest = spec.partition("=")
        directory, _, mode = rest.rpartition(":")
        loop = None
        if mode in EVENT_LOOPS:
            loop = mode
            directory, _, mode = directory.rpartition(":")
        if not name or not directory or f"snowmon-{mode}" not in SNOWMON:
            parser.error(
                f"--variant {spec}: NAME=DIR:MODE[:LOOP], MODE one of on off spans logs"
                f" sampled, LOOP one of {' '.join(EVENT_LOOPS)}"
            )
        args.variants[name] = Variant(Path(directory), mode, loop)
        args.contenders.append(name)
    result = asyncio.run(main_async(args))
    path = h.save("compare", result)
    print(h.json_dumps(result))
    print()
    print(h.table(HEADERS, rows(result)))
    print(f"\nsaved {path.relative_to(h.ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
