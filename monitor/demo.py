"""`snowmon demo`: an emulated fleet with a few faults, the daemon watching it.

Demo wiring only (the one place besides `cli.py` that imports the emulator): it starts
an emulated fleet, writes a daemon config for it into a scratch directory, adds one
connection that waits for the connect flow, runs the daemon, and prints where to look.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import sys
from pathlib import Path

from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.emulator import Emulator, FleetOptions, write_daemon_config
from monitor.telemetry import configure_logging

MARKER = ".snowmon-demo"

# What each of the first instances suffers from, so the status page has stories to tell.
FAULTS: list[tuple[str, dict[str, object]]] = [
    ("hibernating developer instance", {"hibernate": True}),
    ("rate limited", {"rate_limit": 0}),
    ("ACL denies sys_user", {"acl_deny": ["sys_user"]}),
    ("flaky token endpoint, slow", {"flaky_token": 0.3, "latency": 0.05}),
    ("half its answers are 503", {"error_503": 0.5}),
]


class Demo:
    def __init__(self, directory: Path, *, instances: int, port: int, duration: float) -> None:
        self.directory = directory
        self.instances = max(instances, len(FAULTS) + 2)
        self.port = port
        self.duration = duration
        self.stop = asyncio.Event()

    async def run(self) -> None:
        self._scratch()
        options = FleetOptions(instances=self.instances, access_lifespan=300, seed=7)
        async with Emulator(options) as emu:
            names = [inst.name for inst in emu.instances]
            stories = {}
            for name, (story, faults) in zip(names[1:], FAULTS, strict=False):
                emu.set_faults(name, **faults)
                stories[name] = story
            config_path = self.directory / "snowmon.toml"
            admin_token = self._write_config(emu, config_path)
            loaded = load_config(config_path)
            configure_logging("info", "auto")
            daemon = Daemon(loaded.config, stop=self.stop)
            async with asyncio.TaskGroup() as group:
                group.create_task(daemon.run())
                group.create_task(self._announce(daemon, admin_token, stories, emu.admin_url))
                if self.duration > 0:
                    group.create_task(self._stop_after(self.duration))

    def _scratch(self) -> None:
        if self.directory.exists():
            if not (self.directory / MARKER).exists():
                raise SystemExit(f"{self.directory} exists and is not a demo directory")
            shutil.rmtree(self.directory)
        self.directory.mkdir(mode=0o700, parents=True)
        (self.directory / MARKER).touch()

    def _write_config(self, emu: Emulator, path: Path) -> str:
        info = emu.fleet_info()
        write_daemon_config(
            info,
            path,
            secrets="files",
            labels={"environment": "demo"},
            daemon_options={"initial_spread": 3.0},  # the page fills in seconds, not half a minute
        )
        secrets_dir = path.with_name(path.stem + ".secrets")
        tokens = {}
        for role in ("read", "admin"):
            tokens[role] = secrets.token_urlsafe(24)
            target = secrets_dir / f"web.{role}"
            target.write_text(tokens[role] + "\n", encoding="utf-8")
            target.chmod(0o600)
        first = info.instances[0]
        extra = f"""
[[connections]]
id = "acme-connect-demo"
instance_url = "{first.base_url}"
grant = "authorization_code"
client_id = "{first.client_id}"
client_secret = "file:{secrets_dir.name}/{first.name}.client_secret"
labels = {{ environment = "demo", customer = "acme" }}

[web]
listen = "127.0.0.1:{self.port}"
public_url = "http://127.0.0.1:{self.port}"
read_tokens = ["file:{secrets_dir.name}/web.read"]
admin_tokens = ["file:{secrets_dir.name}/web.admin"]

[telemetry]
traces = "none"
"""
        with path.open("a", encoding="utf-8") as handle:
            handle.write(extra)
        return tokens["admin"]

    async def _announce(
        self, daemon: Daemon, admin_token: str, stories: dict[str, str], admin_url: str
    ) -> None:
        await daemon.started.wait()
        running = daemon.running
        if running is None:
            return
        url = running.web_url
        lines = [
            "",
            "snowmon demo is running (Ctrl-C to stop)",
            f"  status page  {url}/?token={admin_token}",
            f"  API          curl -H 'Authorization: Bearer {admin_token}' \\\n"
            f"                 {url}/api/v1/connections",
            f"  metrics      {url}/metrics",
            f"  connect flow {url}/connect/acme-connect-demo?token={admin_token}",
            f"  emulator     {admin_url}/admin/fleet",
            f"  config       {self.directory / 'snowmon.toml'}",
            "  faults:",
            *(f"    {name}: {story}" for name, story in stories.items()),
            "",
        ]
        print("\n".join(lines), file=sys.stderr, flush=True)

    async def _stop_after(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self.stop.wait()
        except TimeoutError:
            self.stop.set()
