"""A generated fleet for the scale test, and a timer: `python -m tests.config.fleet N
[toml|json]` writes N connections in files of 1,000 and prints how long `load_config`
takes (timing stays out of the test suite: machines differ)."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from monitor.config import load_config

PER_FILE = 1000
KEY = "q0Zx8mJm3pVb7W0pW1y3ZkJ6q0Zx8mJm3pVb7W0pW1w="

MAIN = """
[daemon]
store = "sqlite:///snowmon.db"
encryption_keys = ["env:SNOWMON_KEY"]
connections_dir = "connections.d"

[defaults]
grant = "password"
[defaults.probe]
interval = 300.0
"""


def fleet_entry(index: int) -> dict[str, Any]:
    return {
        "id": f"cust{index}-prod",
        "instance_url": f"https://cust{index}.service-now.com",
        "client_id": "0123456789abcdef0123456789abcdef",
        "client_secret": f"env:SECRET_{index % 10}",
        "username": "snowmon.integration",
        "password": "env:PASSWORD",
        "labels": {"customer": f"cust{index}", "environment": "prod", "team": "itsm"},
        "probe": {"interval": 120.0},
    }


def _toml(entry: dict[str, Any]) -> str:
    labels = ", ".join(f'{key} = "{value}"' for key, value in entry["labels"].items())
    return f"""[[connections]]
id = "{entry["id"]}"
instance_url = "{entry["instance_url"]}"
client_id = "{entry["client_id"]}"
client_secret = "{entry["client_secret"]}"
username = "{entry["username"]}"
password = "{entry["password"]}"
labels = {{ {labels} }}
[connections.probe]
interval = {entry["probe"]["interval"]}
"""


def write_fleet(directory: Path, count: int, fmt: str = "toml") -> tuple[Path, dict[str, str]]:
    """A main file plus `count` connections in connections.d/; returns (path, environ)."""
    fleet_dir = directory / "connections.d"
    fleet_dir.mkdir()
    main = directory / "snowmon.toml"
    main.write_text(MAIN)
    for first in range(0, count, PER_FILE):
        entries = [fleet_entry(index) for index in range(first, min(first + PER_FILE, count))]
        name = fleet_dir / f"fleet-{first // PER_FILE:05d}.{fmt}"
        if fmt == "json":
            name.write_text(json.dumps({"connections": entries}, indent=1))
        else:
            name.write_text("\n".join(_toml(entry) for entry in entries))
    environ = {f"SECRET_{n}": f"secret-{n}" for n in range(10)}
    environ["PASSWORD"] = "password"
    environ["SNOWMON_KEY"] = KEY
    return main, environ


def main(argv: list[str]) -> None:
    count = int(argv[1]) if len(argv) > 1 else 10_000
    fmt = argv[2] if len(argv) > 2 else "toml"
    with tempfile.TemporaryDirectory() as tmp:
        path, environ = write_fleet(Path(tmp), count, fmt)
        started = time.perf_counter()
        loaded = load_config(path, environ=environ)
        elapsed = time.perf_counter() - started
    per = elapsed / count * 1e6
    print(
        f"{len(loaded.config.connections)} connections ({fmt}) in {elapsed:.2f} s "
        f"({per:.0f} µs each)"
    )


if __name__ == "__main__":
    main(sys.argv)
