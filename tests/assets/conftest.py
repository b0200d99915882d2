"""Fixtures of the SRE asset tests: one live daemon for the whole session, the real
Prometheus tools, and the repository's asset files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.assets.exposition import Exposition
from tests.assets.live import LiveScrape, running_daemon, tool

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveScrape]:
    """The daemon's /metrics once every connection of a faulty emulated fleet was probed.
    Started once per session: the dashboards and the rules share it."""
    with running_daemon(tmp_path_factory.mktemp("live-daemon")) as scrape:
        yield scrape


@pytest.fixture(scope="session")
def exported(live: LiveScrape) -> Exposition:
    return live.exposition


@pytest.fixture(scope="session")
def promtool() -> str:
    return _require("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return _require("amtool")


# Debian's Alertmanager reads its default notification templates from this path instead
# of embedding them; without the installed package it cannot load any configuration.
DEBIAN_TEMPLATES = Path("/usr/share/prometheus/alertmanager/default.tmpl")


@pytest.fixture(scope="session")
def alertmanager() -> str:
    path = _require("alertmanager", "prometheus-alertmanager")
    if Path(path).name == "prometheus-alertmanager" and not DEBIAN_TEMPLATES.exists():
        pytest.skip(
            f"Debian's prometheus-alertmanager needs {DEBIAN_TEMPLATES}, which only"
            " installing the package provides (dpkg-deb -x does not put it there)"
        )
    return path


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return _require("prometheus")


def _require(*names: str) -> str:
    path = tool(*names)
    if path is None:
        pytest.skip(f"{names[0]} not found on PATH or in .tools (run `make tools`)")
    return path
