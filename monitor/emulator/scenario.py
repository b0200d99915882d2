"""Scenarios: faults and OAuth-application settings applied to the fleet at start-up.

A scenario file (TOML, or JSON for `.json`) is a list of rules applied in order; each
picks instances (by name, "all", or an evenly spread share) and patches their faults and
their OAuth applications:

    [[rules]]
    share = 0.1
    faults = { hibernate = true }

    [[rules]]
    instances = ["dev100001"]
    faults = { latency = 0.2, jitter = 0.1, flaky_token = 0.25 }
    client = { client_credentials = true, access_lifespan = 300 }

The same patch semantics serve the admin API, so a file and a live change read alike.
"""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from monitor.emulator.faults import ClientSettings, Faults
from monitor.emulator.fleet import Instance
from monitor.emulator.state import FleetState, UnknownInstanceError


class Selection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instances: Literal["all"] | list[str] = "all"
    share: float | None = Field(None, ge=0.0, le=1.0)

    def pick(self, state: FleetState) -> list[Instance]:
        if isinstance(self.instances, list):
            chosen = [state.instance(name) for name in self.instances]
        else:
            chosen = state.instances
        if self.share is None:
            return list(chosen)
        share = self.share
        return [
            instance
            for position, instance in enumerate(chosen)
            if math.floor((position + 1) * share) > math.floor(position * share)
        ]


class Rule(Selection):
    faults: dict[str, Any] = Field(default_factory=dict)
    client: ClientSettings | None = None

    @model_validator(mode="after")
    def _faults_are_known(self) -> Rule:
        Faults.model_validate(self.faults)  # names and ranges, before anything is applied
        return self


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(default_factory=list)


def load_scenario(path: Path) -> Scenario:
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    return Scenario.model_validate(data)


def patch_faults(instance: Instance, patch: dict[str, Any]) -> Faults | None:
    """Merge `patch` into the instance's faults; an all-clear result removes the object."""
    current = instance.faults.model_dump() if instance.faults is not None else {}
    merged = Faults.model_validate({**current, **patch})
    instance.faults = None if merged.is_clear() else merged
    return instance.faults


def apply_scenario(state: FleetState, scenario: Scenario) -> None:
    for rule in scenario.rules:
        for instance in rule.pick(state):
            if rule.faults:
                patch_faults(instance, rule.faults)
            if rule.client is not None:
                for client in instance.clients:
                    state.configure_client(instance.name, rule.client, client.client_id)


__all__ = [
    "Rule",
    "Scenario",
    "Selection",
    "UnknownInstanceError",
    "apply_scenario",
    "load_scenario",
    "patch_faults",
]
