"""docs/metrics.md names every metric snowmon exports, and nothing it does not."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from monitor.telemetry.metrics import Metrics

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def _exposed_name(name: str, kind: str) -> str:
    return {"counter": f"{name}_total", "info": f"{name}_info"}.get(kind, name)


def test_every_snowmon_metric_is_documented_and_no_other() -> None:
    registry = CollectorRegistry()
    Metrics(registry, per_connection=True)
    exported = {
        _exposed_name(family.name, family.type)
        for family in registry.collect()
        if family.name.startswith("snowmon_")
    }
    documented = set(re.findall(r"^\| `(snowmon_\w+)` \|", DOC.read_text(), flags=re.MULTILINE))
    assert documented == exported
