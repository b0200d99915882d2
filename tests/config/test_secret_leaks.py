"""No secret value ever appears in a problem, a warning, an exception's text or a dump
of the loaded config: one known string, planted in every place a secret can go wrong."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.errors import ConfigError

from .conftest import KEY, Writer

CANARY = "Canary-S3cret-7f3a9"


def test_secret_values_never_appear_in_problems(write: Writer, tmp_path: Path) -> None:
    secret_file = tmp_path / "canary.txt"
    secret_file.write_text(CANARY)
    secret_file.chmod(0o600)
    path = write(
        "snowmon.toml",
        f"""
        [daemon]
        store = "mysql://snowmon:{CANARY}@db.example/snowmon"
        encryption_keys = ["{CANARY}", "env:CANARY_ENV", "file:canary.txt", ["{CANARY}"]]

        [web]
        read_tokens = ["{CANARY}", 42]
        admin_tokens = "{CANARY}"

        [slack]
        enabled = true
        mode = "webhook"
        webhook_url = "http://hooks.slack.com/services/{CANARY}"

        [[connections]]
        id = "wrong-types"
        instance_url = "https://{CANARY}:{CANARY}@acme.service-now.com"
        grant = "client_credentials"
        client_id = "x"
        client_secret = ["{CANARY}"]
        client_secrte = "{CANARY}"

        [[connections]]
        id = "wrong-grant"
        instance_url = "https://acme.service-now.com"
        grant = "client_credentials"
        client_id = "x"
        client_secret = "{CANARY}"
        password = "{CANARY}"
        [connections.probe]
        interval = 1.0

        [[connections]]
        id = "{CANARY.lower()}!"
        instance_url = "https://acme.service-now.com/?token={CANARY}"
        grant = "password"
        client_id = "x"
        password = {{ value = "{CANARY}" }}
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={"CANARY_ENV": CANARY})
    error = caught.value
    # Each planted value did produce a problem: the test would notice a silent pass.
    assert len(error.problems) == 18, error.problems
    shown = "\n".join(
        [
            *error.problems,
            str(error),
            repr(error),
            "".join(traceback.format_exception(error)),
        ]
    )
    assert CANARY not in shown
    assert CANARY.lower() not in shown.lower()


def test_secret_values_never_appear_in_warnings_or_dumps(write: Writer, tmp_path: Path) -> None:
    secret_file = tmp_path / "canary.txt"
    secret_file.write_text(CANARY)
    secret_file.chmod(0o644)  # group-readable: a warning that names the path, not the value
    path = write(
        "snowmon.toml",
        f"""
        [daemon]
        store = "postgresql://snowmon:{CANARY}@db.example/snowmon"
        encryption_keys = ["{KEY}"]

        [web]
        read_tokens = ["{CANARY}"]
        admin_tokens = ["file:canary.txt"]

        [slack]
        enabled = true
        bot_token = "env:CANARY_ENV"
        default_channel = "#alerts"

        [[connections]]
        id = "acme"
        instance_url = "https://acme.service-now.com"
        grant = "password"
        client_id = "x"
        client_secret = "{CANARY}"
        username = "u"
        password = "file:canary.txt"
        """,
    )
    loaded = load_config(path, environ={"CANARY_ENV": CANARY})
    assert len(loaded.warnings) == 6, loaded.warnings
    config = loaded.config
    assert config.connections[0].password is not None
    assert config.connections[0].password.reveal() == CANARY  # it did load the value
    shown = "\n".join(
        [
            *loaded.warnings,
            repr(config),
            str(config),
            config.model_dump_json(),
            repr(config.model_dump()),
        ]
    )
    assert CANARY not in shown
