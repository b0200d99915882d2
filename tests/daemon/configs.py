"""Daemon configs for an emulated fleet: the emulator's own config writer plus the
sections a test needs (web, telemetry, an authorization-code connection)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from monitor.emulator import FleetInfo, write_daemon_config

READ_TOKEN = "read-token-for-tests-0123456789"
ADMIN_TOKEN = "admin-token-for-tests-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def on_postgres(text: str, dsn: str, *, lease_seconds: float, request_timeout: float) -> str:
    """A config written by `write_config`, moved to a PostgreSQL store shared by replicas
    (leases short enough for a test, and requests that fit them)."""
    store_line = next(line for line in text.splitlines() if line.startswith("store ="))
    shared = text.replace(store_line, f'store = "{dsn}"\nlease_seconds = {lease_seconds}')
    return shared + f"\n[http]\nrequest_timeout = {request_timeout}\n"


def write_config(
    info: FleetInfo,
    directory: Path,
    *,
    port: int | None = None,
    connect_ids: int = 0,
    probe_interval: float = 60.0,
    extra: str = "",
    secrets: Literal["files", "inline"] = "files",
) -> tuple[Path, int]:
    """Write `directory/snowmon.toml` for `info`; the first `connect_ids` instances get a
    second, authorization_code connection named `<instance>-connect`. With `secrets =
    "inline"` the key and the instances' secrets are written into the file (warned about);
    the web tokens stay in files."""
    path = directory / "snowmon.toml"
    write_daemon_config(info, path, secrets=secrets, labels={"customer": "acme"})
    port = port or free_port()
    secrets_dir = path.with_name(path.stem + ".secrets")
    secrets_dir.mkdir(mode=0o700, exist_ok=True)
    (secrets_dir / "web.read").write_text(READ_TOKEN)
    (secrets_dir / "web.admin").write_text(ADMIN_TOKEN)
    for name in ("web.read", "web.admin"):
        (secrets_dir / name).chmod(0o600)
    lines = []
    for inst in info.instances[:connect_ids]:
        lines += [
            "[[connections]]",
            f'id = "{inst.name}-connect"',
            f'instance_url = "{inst.base_url}"',
            'grant = "authorization_code"',
            f'client_id = "{inst.client_id}"',
            f'client_secret = "file:{secrets_dir.name}/{inst.name}.client_secret"',
            "",
        ]
    lines += [
        "[defaults.probe]",
        f"interval = {probe_interval}",
        "",
        "[web]",
        f'listen = "127.0.0.1:{port}"',
        f'public_url = "http://127.0.0.1:{port}"',
        f'read_tokens = ["file:{secrets_dir.name}/web.read"]',
        f'admin_tokens = ["file:{secrets_dir.name}/web.admin"]',
        "",
        "[telemetry]",
        'traces = "none"',
        "",
        extra,
    ]
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    return path, port
