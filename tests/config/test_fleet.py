"""A generated fleet in many files loads completely and in order. How fast is measured
by `python -m tests.config.fleet N [toml|json]`, outside the suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.model import Grant

from .fleet import PER_FILE, write_fleet


@pytest.mark.parametrize("fmt", ["toml", "json"])
def test_fleet_in_many_files_loads(tmp_path: Path, fmt: str) -> None:
    count = 2 * PER_FILE + 500
    path, environ = write_fleet(tmp_path, count, fmt)

    loaded = load_config(path, environ=environ)

    connections = loaded.config.connections
    assert loaded.warnings == []
    assert [c.id for c in connections] == [f"cust{n}-prod" for n in range(count)]
    assert {c.source for c in connections} == {
        f"connections.d/fleet-{n:05d}.{fmt}" for n in range(3)
    }
    last = connections[-1]
    assert last.grant is Grant.PASSWORD  # from the main file's [defaults]
    assert last.probe.interval == 120.0
    assert last.client_secret is not None
    assert last.client_secret.reveal() == f"secret-{(count - 1) % 10}"
