"""A ServiceNow fleet emulator: many instances in one process, faithful to live ones.

Used by tests, the demo and the benchmarks; independent of the daemon (imports nothing
else from `monitor`). See docs/emulator.md for the admin API and scenario files.
"""

from monitor.emulator.clock import EmulatorClock
from monitor.emulator.daemon_config import write_daemon_config
from monitor.emulator.emulator import Emulator, FleetInfo, InstanceInfo
from monitor.emulator.faults import ClientSettings, Faults
from monitor.emulator.fleet import FleetOptions, Instance, OAuthClient
from monitor.emulator.run import ServeOptions, add_arguments, serve, serve_options
from monitor.emulator.scenario import Scenario, load_scenario
from monitor.emulator.stats import ClientStats, FleetTotals, InstanceStats

__all__ = [
    "ClientSettings",
    "ClientStats",
    "Emulator",
    "EmulatorClock",
    "Faults",
    "FleetInfo",
    "FleetOptions",
    "FleetTotals",
    "Instance",
    "InstanceInfo",
    "InstanceStats",
    "OAuthClient",
    "Scenario",
    "ServeOptions",
    "add_arguments",
    "load_scenario",
    "serve",
    "serve_options",
    "write_daemon_config",
]
