"""Loading whole configurations: what a valid file turns into, and how problems from
many places come back together."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

from monitor import config_settings
from monitor.config import Config, check_report, load_config, summary
from monitor.config_alerts import Weekday
from monitor.config_connection import ConnectionConfig
from monitor.errors import ConfigError
from monitor.model import ConnectionInfo, Grant

from .conftest import DAEMON, ENV, KEY, TESTDATA, Writer, connection


def test_valid_full_file_loads_every_section() -> None:
    loaded = load_config(TESTDATA / "valid-full.toml", environ=ENV)
    assert loaded.warnings == []
    config = loaded.config
    assert isinstance(config, Config)

    daemon = config.daemon
    assert daemon.store.reveal() == ENV["SNOWMON_STORE"]
    assert daemon.store_kind == "postgresql"
    assert daemon.sqlite_path is None
    assert [key.reveal() for key in daemon.encryption_keys] == [KEY, ENV["SNOWMON_OLD_KEY"]]
    assert (daemon.max_in_flight, daemon.shutdown_grace, daemon.history_per_connection) == (
        256,
        15.0,
        20,
    )
    assert (daemon.log_level, daemon.log_format) == ("debug", "json")
    assert daemon.event_loop == "asyncio"
    assert config.http.dns_cache_ttl == 60

    web = config.web
    assert (web.listen.host, web.listen.port, str(web.listen)) == ("::1", 9090, "[::1]:9090")
    assert web.public_url == "https://snowmon.example.com"
    assert web.redirect_uri == "https://snowmon.example.com/oauth/callback"
    assert [t.reveal() for t in web.read_tokens] == ["read-token-value"]
    assert [t.reveal() for t in web.admin_tokens] == ["admin-token-value"]

    assert (config.telemetry.traces, config.telemetry.sample_ratio) == ("none", 0.25)

    slack = config.slack
    assert slack.bot_token is None  # mode webhook: the bot token is not resolved
    assert slack.webhook_url is not None
    assert slack.webhook_url.reveal() == ENV["SLACK_WEBHOOK_URL"]
    assert slack.base_url == "http://127.0.0.1:9999/api/"
    assert [route.channel for route in slack.routes] == ["#acme-prod", "C0123456789"]

    window = config.alerts.maintenance[0]
    assert (window.start.hour, window.start.minute) == (23, 30)
    assert window.weekdays == frozenset({Weekday.FRI})
    assert window.timezone.key == "America/New_York"
    assert config.alerts.refresh_expiry_warning == 1_209_600.0

    by_id = {c.id: c for c in config.connections}
    assert list(by_id) == ["acme-prod", "globex-gov", "initech.custom", "dev00042"]
    acme = by_id["acme-prod"]
    assert acme.instance_url == "https://acme.service-now.com"
    assert acme.grant is Grant.PASSWORD
    assert acme.username == "snowmon.integration"
    assert acme.client_secret is not None
    assert acme.client_secret.reveal() == "acme-secret"
    assert acme.password is not None
    assert acme.password.reveal() == "acme-password"
    assert acme.scopes == ("useraccount",)
    assert (acme.access_token_lifespan, acme.refresh_token_lifespan) == (3600.0, 28800.0)
    # probe merges key by key: own interval, the rest from [defaults.probe]
    assert (acme.probe.table, acme.probe.query, acme.probe.fields) == (
        "incident",
        "active=true",
        "sys_id,number",
    )
    assert (acme.probe.interval, acme.probe.timeout) == (120.0, 20.0)
    assert acme.labels == {"team": "itsm", "customer": "acme", "environment": "prod"}
    assert acme.alert_channel == "#itsm"
    assert acme.source == "valid-full.toml"

    globex = by_id["globex-gov"]
    assert globex.grant is Grant.CLIENT_CREDENTIALS  # from [defaults]
    assert globex.instance_url == "https://globex.servicenowservices.com"
    assert globex.scopes == ()  # an empty list overrides the default
    assert globex.labels == {"team": "gov", "customer": "globex"}
    assert globex.alert_channel == ""
    assert globex.probe.interval == 600.0

    initech = by_id["initech.custom"]
    assert initech.allow_custom_domain
    assert initech.grant is Grant.AUTHORIZATION_CODE
    assert initech.client_secret is None  # a PKCE public client

    assert by_id["dev00042"].instance_url == "http://127.0.0.5:8443/dev00042"


def test_info_is_what_alerting_and_the_web_app_need() -> None:
    config = load_config(TESTDATA / "valid-full.toml", environ=ENV).config
    acme = config.connections[0]
    assert acme.info() == ConnectionInfo(
        id="acme-prod",
        instance_url="https://acme.service-now.com",
        grant=Grant.PASSWORD,
        labels={"team": "itsm", "customer": "acme", "environment": "prod"},
        channel="#itsm",
    )
    assert config.slack.routes[0].matches(acme.info())
    assert not config.slack.routes[1].matches(acme.info())
    assert config.slack.routes[1].matches(config.connections[1].info())


def test_minimal_config_takes_the_documented_defaults(write: Writer, tmp_path: Path) -> None:
    path = write("snowmon.toml", DAEMON + connection("acme"))
    loaded = load_config(path, environ=ENV)
    config = loaded.config
    assert config.daemon.store.reveal() == f"sqlite:///{tmp_path}/snowmon.db"
    assert config.daemon.store_kind == "sqlite"
    assert config.daemon.sqlite_path == tmp_path / "snowmon.db"
    assert (config.daemon.max_in_flight, config.daemon.shutdown_grace) == (512, 10.0)
    assert config.daemon.event_loop == "auto"
    assert (config.web.enabled, str(config.web.listen)) == (True, "127.0.0.1:8080")
    assert config.web.base_url == "http://127.0.0.1:8080"
    assert config.clock.speed == 1.0
    assert not config.slack.enabled
    assert config.alerts.failure_threshold == 3
    acme = config.connections[0]
    assert (acme.access_token_lifespan, acme.refresh_token_lifespan) == (1800.0, 8_640_000.0)
    assert (acme.probe.table, acme.probe.fields, acme.probe.interval) == (
        "sys_user",
        "sys_id",
        300.0,
    )
    assert loaded.warnings == []


def test_uvloop_asked_for_where_it_is_missing_is_a_problem(
    write: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write("snowmon.toml", DAEMON + 'event_loop = "uvloop"\n' + connection("acme"))
    monkeypatch.setattr(config_settings, "uvloop_installed", lambda: True)
    assert load_config(path, environ=ENV).config.daemon.event_loop == "uvloop"
    monkeypatch.setattr(config_settings, "uvloop_installed", lambda: False)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=ENV)
    assert caught.value.problems == [
        f"{path.name}: daemon.event_loop: uvloop is not installed: install it, or set"
        " 'auto' or 'asyncio'"
    ]
    # `auto` falls back to asyncio's loop there instead
    auto = write("auto.toml", DAEMON + 'event_loop = "auto"\n' + connection("acme"))
    assert load_config(auto, environ=ENV).config.daemon.event_loop == "auto"


def test_absolute_sqlite_path_is_kept(write: Writer) -> None:
    path = write(
        "snowmon.toml",
        """
        [daemon]
        store = "sqlite:////var/lib/snowmon/snowmon.db"
        encryption_keys = ["env:SNOWMON_KEY"]
        """,
    )
    daemon = load_config(path, environ=ENV).config.daemon
    assert daemon.sqlite_path == Path("/var/lib/snowmon/snowmon.db")


def test_fast_clock_is_fine_when_every_instance_is_loopback(write: Writer) -> None:
    path = write(
        "snowmon.toml",
        DAEMON
        + """
        [clock]
        speed = 3600.0
        anchor = 1700000000.0

        [[connections]]
        id = "emulated"
        instance_url = "http://localhost:8443/dev1"
        grant = "client_credentials"
        client_id = "x"
        client_secret = "env:ACME_SECRET"

        [[connections]]
        id = "emulated-v6"
        instance_url = "https://[::1]:8443/dev2"
        grant = "client_credentials"
        client_id = "x"
        client_secret = "env:ACME_SECRET"
        """,
    )
    config = load_config(path, environ=ENV).config
    assert config.clock.speed == 3600.0
    assert [c.instance_url for c in config.connections] == [
        "http://localhost:8443/dev1",
        "https://[::1]:8443/dev2",
    ]


def test_missing_config_file_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing, environ=ENV)
    assert caught.value.problems == [f"{missing}: cannot read: No such file or directory"]


def test_config_that_is_not_utf8_is_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "snowmon.toml"
    path.write_bytes(b'[daemon]\nstore = "\xff"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=ENV)
    assert caught.value.problems == ["snowmon.toml: not UTF-8 text (byte 18)"]


def test_warnings_are_collected_not_raised(write: Writer, tmp_path: Path) -> None:
    path = write(
        "snowmon.toml",
        f"""
        [daemon]
        store = "postgresql://snowmon:inline-pw@db/snowmon"
        encryption_keys = ["{KEY}"]

        [web]
        read_tokens = ["env:SNOWMON_READ_TOKEN", "inline-token"]

        [[connections]]
        id = "acme"
        instance_url = "https://acme.service-now.com"
        grant = "client_credentials"
        client_id = "x"
        client_secret = "inline-client-secret"
        """,
    )
    loaded = load_config(path, environ=ENV)
    assert loaded.warnings == [
        "snowmon.toml: daemon.store: inline secret; use env: or file:",
        "snowmon.toml: daemon.encryption_keys[0]: inline secret; use env: or file:",
        "snowmon.toml: web.read_tokens[1]: inline secret; use env: or file:",
        "snowmon.toml: connections[acme].client_secret: inline secret; use env: or file:",
    ]
    assert loaded.config.connections[0].client_secret is not None
    assert loaded.config.connections[0].client_secret.reveal() == "inline-client-secret"


def test_no_connections_is_a_warning(write: Writer) -> None:
    loaded = load_config(write("snowmon.toml", DAEMON), environ=ENV)
    assert loaded.warnings == ["snowmon.toml: no connections configured"]


def test_secrets_of_switched_off_features_are_not_resolved(write: Writer) -> None:
    path = write(
        "snowmon.toml",
        DAEMON
        + """
        [web]
        enabled = false
        read_tokens = ["env:UNSET_READ"]
        admin_tokens = ["env:UNSET_ADMIN"]

        [slack]
        enabled = false
        bot_token = "env:UNSET_BOT"
        webhook_url = "env:UNSET_WEBHOOK"
        """,
    )
    config = load_config(path, environ=ENV).config
    assert (config.web.read_tokens, config.web.admin_tokens) == ([], [])
    assert (config.slack.bot_token, config.slack.webhook_url) == (None, None)


def test_file_references_resolve_relative_to_their_file(write: Writer, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "key").write_text(KEY + "\n")
    (secrets / "eu-secret").write_text("eu-secret\r\n")
    (secrets / "key").chmod(0o600)
    (secrets / "eu-secret").chmod(0o600)
    path = write(
        "snowmon.toml",
        """
        [daemon]
        store = "sqlite:///snowmon.db"
        encryption_keys = ["file:secrets/key"]
        connections_dir = "fleet"
        """,
    )
    write(
        "fleet/eu.toml",
        f"""
        [[connections]]
        id = "eu"
        instance_url = "https://eu.service-now.com"
        grant = "client_credentials"
        client_id = "x"
        client_secret = "file:../secrets/eu-secret"

        [[connections]]
        id = "eu-abs"
        instance_url = "https://eu.service-now.com"
        grant = "client_credentials"
        client_id = "x"
        client_secret = "file:{secrets / "eu-secret"}"
        """,
    )
    loaded = load_config(path, environ={})
    assert loaded.warnings == []
    assert loaded.config.daemon.encryption_keys[0].reveal() == KEY
    for conn in loaded.config.connections:
        assert conn.client_secret is not None
        assert conn.client_secret.reveal() == "eu-secret"


def test_group_readable_secret_file_is_a_warning(write: Writer, tmp_path: Path) -> None:
    key_file = tmp_path / "snowmon.key"
    key_file.write_text(KEY)
    key_file.chmod(0o644)
    path = write(
        "snowmon.toml",
        """
        [daemon]
        store = "sqlite:///snowmon.db"
        encryption_keys = ["file:snowmon.key"]
        """,
    )
    loaded = load_config(path, environ={})
    assert loaded.warnings[0] == (
        "snowmon.toml: daemon.encryption_keys[0]: file:snowmon.key is readable by group or "
        "others (mode 0644); chmod 600 it"
    )


def test_connections_dir_merges_files_in_name_order(write: Writer, tmp_path: Path) -> None:
    path = write(
        "snowmon.toml",
        DAEMON.replace("[daemon]", '[daemon]\nconnections_dir = "connections.d"')
        + """
        [defaults]
        grant = "password"
        labels = { team = "itsm" }
        [defaults.probe]
        interval = 600.0
        timeout = 20.0
        """
        + connection("main-one"),
    )
    write(
        "connections.d/b-eu.toml",
        """
        [defaults]
        labels = { region = "eu" }
        [defaults.probe]
        interval = 60.0

        [[connections]]
        id = "eu-one"
        instance_url = "https://eu1.service-now.com"
        client_id = "x"
        client_secret = "env:ACME_SECRET"
        username = "u"
        password = "env:ACME_PASSWORD"
        """,
    )
    write(
        "connections.d/a-us.json",
        """
        {"connections": [{"id": "us-one", "instance_url": "https://us1.service-now.com",
                          "grant": "client_credentials", "client_id": "x",
                          "client_secret": "env:ACME_SECRET", "username": null,
                          "labels": {"region": "us"}}]}
        """,
    )
    write("connections.d/.hidden.toml", "this is not = = toml")
    write("connections.d/README.md", "not a connections file")
    (tmp_path / "connections.d" / "sub.toml").mkdir()

    config = load_config(path, environ=ENV).config
    by_id = {c.id: c for c in config.connections}
    assert list(by_id) == ["main-one", "us-one", "eu-one"]
    assert [c.source for c in config.connections] == [
        "snowmon.toml",
        "connections.d/a-us.json",
        "connections.d/b-eu.toml",
    ]
    # main defaults apply everywhere; a file's own [defaults] only to its connections
    assert by_id["main-one"].probe.interval == 600.0
    assert by_id["us-one"].probe.interval == 600.0
    assert by_id["eu-one"].probe.interval == 60.0
    assert by_id["eu-one"].probe.timeout == 20.0
    assert by_id["eu-one"].grant is Grant.PASSWORD
    assert by_id["eu-one"].labels == {"team": "itsm", "region": "eu"}
    assert by_id["us-one"].labels == {"team": "itsm", "region": "us"}
    assert by_id["main-one"].labels == {"team": "itsm"}
    assert summary(config).splitlines()[0] == (
        "connections: 3 from 3 file(s) (client_credentials 1, password 2)"
    )


def test_duplicate_ids_across_files_name_the_first_file(write: Writer) -> None:
    path = write(
        "snowmon.toml",
        DAEMON.replace("[daemon]", '[daemon]\nconnections_dir = "connections.d"')
        + connection("acme-prod"),
    )
    write("connections.d/a.toml", connection("eu-one") + connection("acme-prod"))
    write("connections.d/b.toml", connection("eu-one"))
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=ENV)
    assert caught.value.problems == [
        "connections.d/a.toml: connections[acme-prod].id: duplicate id; first defined in "
        "snowmon.toml",
        "connections.d/b.toml: connections[eu-one].id: duplicate id; first defined in "
        "connections.d/a.toml",
    ]


def test_every_problem_of_every_file_in_one_run(write: Writer) -> None:
    path = write(
        "snowmon.toml",
        """
        [daemon]
        store = "sqlite:///:memory:"
        encryption_keys = ["env:SNOWMON_KEY"]
        connections_dir = "connections.d"
        shutdown_grace = 60.0
        initial_spread = -1.0

        [slack]
        enabled = true
        mode = "webhook"
        webhook_url = "env:UNSET_WEBHOOK"

        [defaults]
        grant = "password"

        [[connections]]
        id = "acme-prod"
        instance_url = "https://acme.service-now.com"
        client_id = "x"
        client_secret = "env:ACME_SECRET_UNSET"
        username = "u"
        password = "env:ACME_PASSWORD"
        """,
    )
    write("connections.d/a-broken.toml", "[[connections]]\nid = \n")
    write(
        "connections.d/b-eu.toml",
        """
        fleet = "eu"

        [[connections]]
        id = "acme-prod"
        instance_url = "http://eu.service-now.com"
        grant = "client_credentials"
        client_id = "x"
        [connections.probe]
        interval = 1.0

        [[connections]]
        id = "eu-two"
        instance_url = "https://eu2.service-now.com"
        grant = "client_credentials"
        client_id = "x"
        client_secret = "env:ACME_SECRET"
        """,
    )
    write("connections.d/c-broken.json", '{"connections": [\n  {"id": "x",}\n]}')
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=ENV)
    assert caught.value.problems == [
        "snowmon.toml: slack.webhook_url: environment variable UNSET_WEBHOOK is not set",
        "snowmon.toml: daemon.store: sqlite needs a file path, e.g. sqlite:///snowmon.db",
        "snowmon.toml: daemon.shutdown_grace: must be between 0 and 15 seconds",
        "snowmon.toml: daemon.initial_spread: must be between 0 and 3600 seconds",
        "snowmon.toml: connections[acme-prod].client_secret: environment variable "
        "ACME_SECRET_UNSET is not set",
        "connections.d/a-broken.toml:2:6: invalid TOML: Invalid value",
        "connections.d/b-eu.toml: fleet: unknown key; this file may hold only "
        "[[connections]] and [defaults]",
        "connections.d/b-eu.toml: connections[acme-prod].id: duplicate id; first defined in "
        "snowmon.toml",
        "connections.d/b-eu.toml: connections[acme-prod].instance_url: http is only allowed on "
        "loopback; use https://<name>.service-now.com",
        "connections.d/b-eu.toml: connections[acme-prod].probe.interval: must be between 5 "
        "and 86400 seconds",
        "connections.d/b-eu.toml: connections[acme-prod].client_secret: required by the "
        "client_credentials grant",
        "connections.d/c-broken.json:2:14: invalid JSON: Expecting property name enclosed in "
        "double quotes",
    ]


def test_missing_connections_dir_is_a_problem(write: Writer) -> None:
    path = write(
        "snowmon.toml", DAEMON.replace("[daemon]", '[daemon]\nconnections_dir = "nowhere"')
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=ENV)
    assert caught.value.problems == [
        "snowmon.toml: daemon.connections_dir: cannot read directory nowhere: No such file or "
        "directory"
    ]


def test_connection_file_defaults_problems_are_reported_once(write: Writer) -> None:
    path = write(
        "snowmon.toml",
        DAEMON.replace("[daemon]", '[daemon]\nconnections_dir = "connections.d"'),
    )
    write(
        "connections.d/eu.toml",
        '[defaults]\nclient_secret = "env:ACME_SECRET"\n[defaults.probe]\ntimeout = 400.0\n'
        + connection("eu-one")
        + connection("eu-two"),
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=ENV)
    assert caught.value.problems == [
        "connections.d/eu.toml: defaults.probe.timeout: must be between 0.1 and 120 seconds",
        "connections.d/eu.toml: defaults.client_secret: set it in each connection, not in "
        "[defaults]",
    ]


def test_check_report_ok_prints_warnings_and_summary(write: Writer, tmp_path: Path) -> None:
    path = write(
        "snowmon.toml",
        DAEMON
        + """
        [[connections]]
        id = "acme"
        instance_url = "https://acme.service-now.com"
        grant = "client_credentials"
        client_id = "x"
        client_secret = "inline"
        """,
    )
    code, text = check_report(path, environ=ENV)
    assert code == 0
    assert text.splitlines() == [
        "warning: snowmon.toml: connections[acme].client_secret: inline secret; use env: or file:",
        f"{path}: OK",
        "connections: 1 from 1 file(s) (client_credentials 1)",
        f"store: sqlite {tmp_path}/snowmon.db (1 encryption key(s))",
        "web: http://127.0.0.1:8080 (listen 127.0.0.1:8080, 0 read / 0 admin tokens)",
        "slack: off",
        "clock: wall time",
    ]


def test_models_refuse_an_unresolved_reference() -> None:
    # Built around the loader, a reference must not become a literal secret.
    with pytest.raises(ValueError, match="unresolved secret reference"):
        ConnectionConfig.model_validate(
            {
                "id": "acme",
                "instance_url": "https://acme.service-now.com",
                "grant": "client_credentials",
                "client_id": "x",
                "client_secret": "env:ACME_SECRET",
            }
        )


def test_models_are_frozen() -> None:
    config = load_config(TESTDATA / "valid-full.toml", environ=ENV).config
    with pytest.raises(ValueError, match="frozen"):
        config.connections[0].id = "other"  # type: ignore[misc]


@pytest.mark.parametrize("enabled_before", [True, False])
def test_loading_restores_the_garbage_collector(write: Writer, enabled_before: bool) -> None:
    path = write("snowmon.toml", DAEMON)
    if not enabled_before:
        gc.disable()
    try:
        load_config(path, environ=ENV)
        assert gc.isenabled() is enabled_before
        with pytest.raises(ConfigError):
            load_config(path.with_name("missing.toml"), environ=ENV)
        assert gc.isenabled() is enabled_before
    finally:
        gc.enable()


def test_process_environment_is_the_default(write: Writer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNOWMON_KEY", KEY)
    path = write("snowmon.toml", DAEMON)
    assert load_config(path).config.daemon.encryption_keys[0].reveal() == os.environ["SNOWMON_KEY"]
