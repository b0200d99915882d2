"""The daemon config that matches a running fleet (format: docs/configuration.md).

One `[[connections]]` table per instance, with the emulator's generated credentials. By
default the secrets go to a sibling directory `<config stem>.secrets/` (one file per
secret, mode 0600) referenced with `file:`; fleets above 1,000 instances get them inline
instead (the daemon warns about inline secrets, which is fine for emulator credentials).
`[clock]` carries the emulator's speed and anchor when it does not run on wall time, so the
daemon's ScaledClock reads the same time as the emulator. A `[daemon]` section with a
SQLite store beside the config and a fresh encryption key makes the file runnable as is.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

from monitor.emulator.emulator import FleetInfo, InstanceInfo

SecretStyle = Literal["auto", "files", "inline"]
GrantChoice = Literal["password", "client_credentials", "auto"]
FILES_UP_TO = 1000


def _string(value: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes
    return json.dumps(value, ensure_ascii=False)


def _write_secret(directory: Path, name: str, value: str) -> None:
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")


def _connection(
    instance: InstanceInfo, grant: str, secret_ref: dict[str, str], labels: dict[str, str]
) -> Iterable[str]:
    yield "[[connections]]"
    yield f"id = {_string(instance.name)}"
    yield f"instance_url = {_string(instance.base_url)}"
    yield f"grant = {_string(grant)}"
    yield f"client_id = {_string(instance.client_id)}"
    yield f"client_secret = {_string(secret_ref['client_secret'])}"
    if grant == "password":
        yield f"username = {_string(instance.username)}"
        yield f"password = {_string(secret_ref['password'])}"
    if labels:
        pairs = ", ".join(f"{key} = {_string(value)}" for key, value in labels.items())
        yield f"labels = {{ {pairs} }}"
    yield ""


def write_daemon_config(
    info: FleetInfo,
    path: Path,
    *,
    secrets: SecretStyle = "auto",
    grant: GrantChoice = "password",
    labels: dict[str, str] | None = None,
    daemon_section: bool = True,
    store: str | None = None,
    daemon_options: Mapping[str, float] | None = None,
) -> None:
    """Write a snowmon config monitoring every instance of `info` to `path`.

    `store` defaults to `sqlite:///<config stem>.db` beside the config; with
    `daemon_section=False` no `[daemon]` table is written (the caller adds its own);
    `daemon_options` are more numeric keys of that table (`initial_spread = 2.0`)."""
    style = secrets
    if style == "auto":
        style = "files" if len(info.instances) <= FILES_UP_TO else "inline"
    secret_dir = path.with_name(path.stem + ".secrets")
    if style == "files":
        secret_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    lines = [
        f"# Written by the snowmon emulator for {len(info.instances)} emulated instances.",
        f"# Emulator admin API: {info.admin_url}",
        "",
    ]
    if daemon_section:
        key = base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")
        if style == "files":
            _write_secret(secret_dir, "encryption.key", key)
            key = f"file:{secret_dir.name}/encryption.key"
        lines += [
            "[daemon]",
            f"store = {_string(store or f'sqlite:///{path.stem}.db')}",
            f"encryption_keys = [{_string(key)}]",
            *(f"{name} = {value!r}" for name, value in (daemon_options or {}).items()),
            "",
        ]
    if info.speed != 1.0:
        lines += ["[clock]", f"speed = {info.speed!r}", f"anchor = {info.anchor!r}", ""]
    lines += [
        "[defaults]",
        f"access_token_lifespan = {float(info.access_lifespan)!r}",
        f"refresh_token_lifespan = {float(info.refresh_lifespan)!r}",
        "",
    ]
    for instance in info.instances:
        chosen = grant
        if grant == "auto":
            chosen = "client_credentials" if instance.client_credentials else "password"
        refs = {"client_secret": instance.client_secret, "password": instance.password}
        if style == "files":
            for kind, value in list(refs.items()):
                filename = f"{instance.name}.{kind}"
                _write_secret(secret_dir, filename, value)
                refs[kind] = f"file:{secret_dir.name}/{filename}"
        lines.extend(_connection(instance, chosen, refs, labels or {}))
    path.write_text("\n".join(lines), encoding="utf-8")
