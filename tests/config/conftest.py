"""Shared inputs of the config tests: an environment that resolves every reference the
testdata files make, and a writer for configs built inside a test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from textwrap import dedent

import pytest

TESTDATA = Path(__file__).parent / "testdata"

KEY = "q0Zx8mJm3pVb7W0pW1y3ZkJ6q0Zx8mJm3pVb7W0pW1w="
OLD_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"  # unpadded: also accepted

ENV: dict[str, str] = {
    "SNOWMON_KEY": KEY,
    "SNOWMON_OLD_KEY": OLD_KEY,
    "SNOWMON_STORE": "postgresql://snowmon:pg-password@db.example:5432/snowmon",
    "SNOWMON_READ_TOKEN": "read-token-value",
    "SNOWMON_ADMIN_TOKEN": "admin-token-value",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/webhook-path-secret",
    "ACME_SECRET": "acme-secret",
    "ACME_PASSWORD": "acme-password",
    "GLOBEX_SECRET": "globex-secret",
    "EMULATOR_SECRET": "emulator-secret",
    # for invalid-*.toml
    "SHORT_KEY": "c2hvcnQ=",
    "SLACK_WEBHOOK_HTTP": "http://hooks.slack.com/services/T000/B000/XXXX",
}

DAEMON = """
[daemon]
store = "sqlite:///snowmon.db"
encryption_keys = ["env:SNOWMON_KEY"]
"""

PASSWORD_CONNECTION = """
[[connections]]
id = "{id}"
instance_url = "https://{id}.service-now.com"
grant = "password"
client_id = "0123456789abcdef0123456789abcdef"
client_secret = "env:ACME_SECRET"
username = "snowmon.integration"
password = "env:ACME_PASSWORD"
"""


def connection(conn_id: str) -> str:
    return PASSWORD_CONNECTION.format(id=conn_id)


Writer = Callable[..., Path]


@pytest.fixture
def write(tmp_path: Path) -> Writer:
    """write("name.toml", text) -> path under tmp_path; text is dedented."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dedent(text))
        return path

    return _write
