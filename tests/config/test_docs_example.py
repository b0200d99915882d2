"""docs/configuration.md is the format contract: its examples must load as written,
given the environment variables and secret files they refer to."""

from __future__ import annotations

import re
from pathlib import Path

from monitor.config import check_report, load_config
from monitor.model import Grant

from .conftest import KEY

DOC = Path(__file__).parents[2] / "docs" / "configuration.md"


def code_block(language: str, after: str) -> str:
    text = DOC.read_text()
    start = text.index(after)
    match = re.compile(rf"```{language}\n(.*?)```", re.DOTALL).search(text, start)
    assert match is not None, f"no {language} block after {after!r}"
    return match.group(1)


def test_full_example_and_json_connection_file_load(tmp_path: Path) -> None:
    # The example's secrets live in /run/secrets (a container's mount); here they
    # live in a private directory, which is the one change made to the text.
    secrets = tmp_path / "run-secrets"
    secrets.mkdir()
    (secrets / "snowmon.key").write_text(KEY + "\n")
    (secrets / "acme-password").write_text("acme-password\n")
    for secret in secrets.iterdir():
        secret.chmod(0o600)
    example = code_block("toml", "## Full example")
    assert example.count("/run/secrets/") == 2
    config_path = tmp_path / "snowmon.toml"
    config_path.write_text(example.replace("/run/secrets/", f"{secrets}/"))
    (tmp_path / "connections.d").mkdir()
    (tmp_path / "connections.d" / "eu.json").write_text(code_block("json", "## Connection files"))
    environ = {
        "ACME_CLIENT_SECRET": "acme-client-secret",
        "SNOWMON_READ_TOKEN": "read",
        "SNOWMON_ADMIN_TOKEN": "admin",
        "EU1_SECRET": "eu1-secret",
    }

    loaded = load_config(config_path, environ=environ)

    assert loaded.warnings == []
    config = loaded.config
    assert config.daemon.sqlite_path == Path("/var/lib/snowmon/snowmon.db")
    assert config.daemon.encryption_keys[0].reveal() == KEY
    acme, eu = config.connections
    assert (acme.id, acme.grant, acme.probe.interval, acme.probe.timeout) == (
        "acme-prod",
        Grant.PASSWORD,
        120.0,
        10.0,
    )
    assert acme.password is not None
    assert acme.password.reveal() == "acme-password"
    assert acme.alert_channel == "#acme-alerts"
    assert (eu.id, eu.grant, eu.probe.interval, eu.source) == (
        "eu-1",
        Grant.CLIENT_CREDENTIALS,
        600.0,
        "connections.d/eu.json",
    )
    assert config.slack.routes[0].matches(acme.info())
    assert config.alerts.maintenance[0].matches(acme.info())


def test_sample_problems_in_the_doc_are_what_the_loader_says(tmp_path: Path) -> None:
    # The scenario behind the doc's sample output, rebuilt: the doc quotes real messages.
    (tmp_path / "snowmon.toml").write_text(
        """
[daemon]
store = "sqlite:///snowmon.db"
encryption_keys = ["env:SNOWMON_KEY"]
connections_dir = "connections.d"

[defaults]
grant = "client_credentials"

[[connections]]
id = "acme-prod"
instance_url = "https://acme.service-now.com"
client_id = "acme"
client_secret = "env:ACME_SECRET"
"""
    )
    fleet = tmp_path / "connections.d"
    fleet.mkdir()
    entry = '[[connections]]\nid = "{}"\ninstance_url = "{}"\nclient_id = "c"\n'
    entry += 'client_secret = "env:EU_SECRET"\n\n'
    (fleet / "eu.toml").write_text(
        entry.format("eu-1", "https://eu1.service-now.com")
        + entry.format("eu-2", "https://eu2.service-now.com")
        + entry.format("EU 3", "http://eu3.service-now.com")
    )
    (fleet / "us.toml").write_text(
        entry.format("us-1", "https://us1.service-now.com")
        + entry.format("us-2", "https://us2.service-now.com")
        + '[[connections]]\nid "us-3"\n'
    )
    code, text = check_report(
        tmp_path / "snowmon.toml", environ={"SNOWMON_KEY": KEY, "EU_SECRET": "x"}
    )
    assert code == 2
    assert text.splitlines()[:-1] == code_block("", "`snowmon check FILE` validates").splitlines()
