"""The `snowmon` command line: wiring arguments to the daemon, nothing more.

This is the one place where errors become exit codes: 0 ok, 1 runtime failure (store,
keys), 2 bad configuration or usage, 130 interrupted twice.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from monitor import __version__, emulator
from monitor.errors import ConfigError, SnowmonError

log = logging.getLogger("snowmon.cli")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    commands = {
        "check": lambda: _check(Path(args.config)),
        "run": lambda: _run(Path(args.config), args.replica),
        "keygen": lambda: _keygen(Path(args.out)),
        "emulate": lambda: _emulate(args),
        "demo": lambda: _demo(args),
    }
    try:
        return commands[args.command]()
    except ConfigError as exc:
        print("configuration problems:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except SnowmonError as exc:
        print(f"snowmon: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snowmon", description="Keeps ServiceNow OAuth connections alive and watched."
    )
    parser.add_argument("--version", action="version", version=f"snowmon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", "-c", required=True, help="the TOML config file")
    run.add_argument(
        "--replica", help="this process's name in a PostgreSQL fleet (default: host-pid)"
    )
    check = sub.add_parser("check", help="validate a config file and print a summary")
    check.add_argument("config")
    keygen = sub.add_parser("keygen", help="write a new token encryption key (mode 0600)")
    keygen.add_argument("out")
    emulate = sub.add_parser("emulate", help="serve an emulated ServiceNow fleet")
    emulator.add_arguments(emulate)
    demo = sub.add_parser("demo", help="an emulated fleet with a few faults, watched")
    demo.add_argument("--dir", default=".demo", help="where the demo keeps its files")
    demo.add_argument("--instances", type=int, default=12)
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument(
        "--duration", type=float, default=0.0, help="stop after this many seconds (0 = never)"
    )
    return parser


def _check(path: Path) -> int:
    from monitor.config import (  # noqa: PLC0415 (keep `--help` fast)
        load_config,
        summary,
        warning_lines,
    )

    loaded = load_config(path)
    for line in warning_lines(loaded.warnings):
        print(line, file=sys.stderr)
    print(summary(loaded.config))
    return EXIT_OK


def _keygen(path: Path) -> int:
    from monitor.store.crypto import write_key_file  # noqa: PLC0415

    try:
        write_key_file(path)
    except FileExistsError:
        print(f"snowmon: {path} exists; not overwriting a key", file=sys.stderr)
        return EXIT_FAILURE
    print(f"wrote a new key to {path} (mode 0600)")
    return EXIT_OK


def _run(path: Path, replica: str | None) -> int:
    from monitor.config import capped_warnings, load_config  # noqa: PLC0415
    from monitor.daemon import Daemon  # noqa: PLC0415
    from monitor.event_loop import loop_factory  # noqa: PLC0415
    from monitor.telemetry.logs import configure_logging  # noqa: PLC0415

    loaded = load_config(path)
    cfg = loaded.config
    configure_logging(cfg.daemon.log_level, cfg.daemon.log_format)
    shown, suppressed = capped_warnings(loaded.warnings)
    for warning in shown:
        log.warning("config.warning", extra={"detail": warning})
    if suppressed is not None:
        log.warning(
            "config.warnings_suppressed",
            extra={"detail": suppressed, "count": len(loaded.warnings) - len(shown)},
        )
    daemon = Daemon(cfg, replica=replica, owns_process=True)
    with asyncio.Runner(loop_factory=loop_factory(cfg.daemon.event_loop)) as runner:
        return runner.run(_serve(daemon.run(), daemon.stop))


async def _serve(main: Coroutine[Any, Any, None], stop: asyncio.Event) -> int:
    """Run `main` until it returns; the first SIGTERM/SIGINT sets `stop` (drain), the
    second exits at once."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("daemon.killed", extra={"signal": signal.Signals(signum).name})
            os._exit(EXIT_INTERRUPTED)
        log.info("daemon.stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await main
    return EXIT_OK


def _emulate(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    return asyncio.run(_serve(emulator.serve(emulator.serve_options(args), stop), stop))


def _demo(args: argparse.Namespace) -> int:
    from monitor.demo import Demo  # noqa: PLC0415

    demo = Demo(Path(args.dir), instances=args.instances, port=args.port, duration=args.duration)
    return asyncio.run(_serve(demo.run(), demo.stop))


if __name__ == "__main__":
    sys.exit(main())
