"""Running a fleet as a process: what `snowmon emulate` and `python -m monitor.emulator` do.

`serve` starts the fleet, optionally writes the matching daemon config, announces itself
with one JSON line on stdout (`{"event": "emulator_ready", ...}`) and runs until `stop`
is set. `add_arguments`/`serve_options` let the daemon's CLI offer the same flags.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from monitor.emulator.daemon_config import SecretStyle, write_daemon_config
from monitor.emulator.emulator import Emulator
from monitor.emulator.fleet import FleetOptions
from monitor.emulator.scenario import load_scenario
from monitor.emulator.tls import write_certificates


def _print_line(event: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


@dataclass(frozen=True, slots=True)
class ServeOptions:
    fleet: FleetOptions
    scenario: Path | None = None
    config_out: Path | None = None
    secrets: SecretStyle = "auto"
    announce: Callable[[dict[str, object]], None] = _print_line
    tls_dir: Path | None = None  # HTTPS, with new certificates written here


async def serve(options: ServeOptions, stop: asyncio.Event) -> None:
    scenario = load_scenario(options.scenario) if options.scenario is not None else None
    tls = write_certificates(options.tls_dir) if options.tls_dir is not None else None
    async with Emulator(options.fleet, scenario, tls=tls) as emulator:
        if options.config_out is not None:
            write_daemon_config(emulator.fleet_info(), options.config_out, secrets=options.secrets)
        first = emulator.instances[0]
        options.announce(
            {
                "event": "emulator_ready",
                "instances": len(emulator.instances),
                "admin_url": emulator.admin_url,
                "first_base_url": first.base_url,
                "config": str(options.config_out) if options.config_out else None,
                "startup_seconds": round(emulator.startup_seconds, 3),
                "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "clock": emulator.clock.snapshot(),
                # what a client must trust: SSL_CERT_FILE, or an SSL context's cafile
                "ca_file": str(tls.ca) if tls is not None else None,
            }
        )
        await stop.wait()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--scenario", type=Path)
    parser.add_argument("--config-out", type=Path)
    parser.add_argument("--secrets", choices=("auto", "files", "inline"), default="auto")
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--anchor", type=float)
    parser.add_argument("--admin-port", type=int, default=0)
    parser.add_argument("--port", type=int, default=0, help="first instance port (0: ephemeral)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--access-lifespan", type=int, default=1800)
    parser.add_argument("--refresh-lifespan", type=int, default=8_640_000)
    parser.add_argument("--client-credentials", type=float, default=0.0, metavar="SHARE")
    parser.add_argument("--strict-rotation", action="store_true")
    parser.add_argument("--no-auto-approve", action="store_true")
    parser.add_argument("--addressing", choices=("auto", "hosts", "prefix"), default="auto")
    parser.add_argument("--max-sockets", type=int, default=250)
    parser.add_argument(
        "--tls",
        type=Path,
        metavar="DIR",
        help="serve HTTPS with new certificates written to DIR (ca_file: the root to trust)",
    )


def serve_options(args: argparse.Namespace) -> ServeOptions:
    fleet = FleetOptions(
        instances=args.instances,
        speed=args.speed,
        anchor=args.anchor,
        admin_port=args.admin_port,
        port=args.port,
        seed=args.seed,
        access_lifespan=args.access_lifespan,
        refresh_lifespan=args.refresh_lifespan,
        client_credentials=args.client_credentials,
        strict_rotation=args.strict_rotation,
        auto_approve=not args.no_auto_approve,
        addressing=args.addressing,
        max_sockets=args.max_sockets,
    )
    return ServeOptions(fleet, args.scenario, args.config_out, args.secrets, tls_dir=args.tls)


async def _main(options: ServeOptions) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await serve(options, stop)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitor.emulator", description=__doc__)
    add_arguments(parser)
    asyncio.run(_main(serve_options(parser.parse_args(argv))))
    return 0
