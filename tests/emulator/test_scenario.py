"""Scenario files: faults and OAuth-application settings applied at start-up."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from pydantic import ValidationError

from monitor.emulator import Emulator, FleetOptions, load_scenario
from tests.emulator.calls import PROBE

TOML = """
[[rules]]
share = 0.5
faults = { hibernate = true }

[[rules]]
instances = ["dev100001"]
faults = { latency = 0.01, flaky_token = 0.25 }
client = { client_credentials = true, access_lifespan = 300 }
"""


async def test_toml_scenario_is_applied_at_start(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    path = tmp_path / "scenario.toml"
    path.write_text(TOML)
    async with Emulator(FleetOptions(instances=4), load_scenario(path)) as emulator:
        hibernating = [i.name for i in emulator.instances if i.faults and i.faults.hibernate]
        assert hibernating == ["dev100002", "dev100004"]
        first = emulator.instance("dev100001")
        assert first.faults is not None
        assert first.faults.flaky_token == 0.25
        assert first.clients[0].client_credentials
        assert first.clients[0].access_lifespan == 300
        async with session.get(emulator.instance("dev100002").base_url + PROBE) as response:
            assert "Your instance is hibernating" in await response.text()


async def test_json_scenario(tmp_path: Path) -> None:
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps({"rules": [{"instances": "all", "faults": {"error_503": 0.1}}]}))
    async with Emulator(FleetOptions(instances=2), load_scenario(path)) as emulator:
        assert all(i.faults is not None and i.faults.error_503 == 0.1 for i in emulator.instances)


def test_unknown_fault_in_a_scenario_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[[rules]]\nfaults = { hibernated = true }\n")
    with pytest.raises(ValidationError, match="hibernated"):
        load_scenario(path)
