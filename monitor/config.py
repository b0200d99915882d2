"""Configuration: one TOML file plus a directory of connection files, loaded, resolved
and validated up front.

`load_config` returns a frozen `Config` (secrets resolved, defaults merged into every
connection) and the warnings worth showing, or raises `ConfigError` listing every
problem of every file at once, each naming the file, the connection and the field.
The format is documented in docs/configuration.md.
"""

from __future__ import annotations

import gc
import os
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from monitor.config_alerts import AlertsConfig, SlackConfig
from monitor.config_connection import ConnectionConfig
from monitor.config_fields import UNRESOLVED, ConfigModel
from monitor.config_fleet import FleetLoader, SourceFile
from monitor.config_problems import (
    WARNING_LIMIT,
    capped_warnings,
    problem,
    read_document,
    validation_problems,
)
from monitor.config_settings import (
    ClockConfig,
    DaemonConfig,
    HttpConfig,
    TelemetryConfig,
    WebConfig,
    dsn_has_password,
)
from monitor.errors import ConfigError, SecretError
from monitor.instance_url import is_loopback_url
from monitor.model import Grant
from monitor.secrets_ref import INLINE_WARNING, SecretResolver

__all__ = [
    "WARNING_LIMIT",
    "Config",
    "ConnectionConfig",
    "LoadedConfig",
    "capped_warnings",
    "check_report",
    "load_config",
    "summary",
    "warning_lines",
]


class Config(ConfigModel):
    daemon: DaemonConfig
    clock: ClockConfig = ClockConfig()
    http: HttpConfig = HttpConfig()
    web: WebConfig = WebConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    slack: SlackConfig = SlackConfig()
    alerts: AlertsConfig = AlertsConfig()
    connections: list[ConnectionConfig] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    config: Config
    warnings: list[str]  # every one; show them through `capped_warnings`


# (section, key, holds a list). A secret of a switched-off feature is not resolved (see
# `_secret_active`), so `slack.enabled = false` with SLACK_BOT_TOKEN unset is no problem.
_SETTINGS_SECRETS: tuple[tuple[str, str, bool], ...] = (
    ("daemon", "store", False),
    ("daemon", "encryption_keys", True),
    ("web", "read_tokens", True),
    ("web", "admin_tokens", True),
    ("slack", "bot_token", False),
    ("slack", "webhook_url", False),
)


def load_config(path: Path, *, environ: Mapping[str, str] | None = None) -> LoadedConfig:
    """Load `path` and everything it refers to; raise ConfigError with every problem."""
    with _gc_paused():
        return _load(Path(path), os.environ if environ is None else environ)


@contextmanager
def _gc_paused() -> Iterator[None]:
    # Loading a fleet allocates hundreds of thousands of long-lived dicts and models and
    # no garbage cycles; the collector's passes over them cost about a third of the load.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _load(path: Path, environ: Mapping[str, str]) -> LoadedConfig:
    main = SourceFile(path=path, display=path.name)
    document = read_document(path, main.display)
    if isinstance(document, str):
        raise ConfigError([document])
    resolver = SecretResolver(environ)
    problems: list[str] = []
    warnings: list[str] = []

    settings_raw = {k: v for k, v in document.items() if k not in ("connections", "defaults")}
    _resolve_settings_secrets(settings_raw, main, resolver, problems, warnings)
    settings: Config | None = None
    try:
        settings = Config.model_validate(settings_raw, context={"base_dir": main.base_dir})
    except ValidationError as exc:
        problems.extend(problem(main.display, loc, msg) for loc, msg in validation_problems(exc))

    fleet = FleetLoader(resolver=resolver, problems=problems, warnings=warnings)
    fleet.load_file(main, document)
    connections_dir = _connections_dir(settings, settings_raw, main)
    if connections_dir is not None:
        fleet.load_dir(connections_dir, main)

    if settings is not None:
        problems.extend(_fleet_problems(settings, fleet.connections, main.display))
    if problems or settings is None:  # settings are None only if there are problems
        raise ConfigError(problems)
    if not fleet.connections:
        warnings.append(f"{main.display}: no connections configured")
    config = settings.model_copy(update={"connections": fleet.connections})
    return LoadedConfig(config=config, warnings=warnings)


def _resolve_settings_secrets(
    raw: dict[str, Any],
    main: SourceFile,
    resolver: SecretResolver,
    problems: list[str],
    warnings: list[str],
) -> None:
    """Replace references in `raw` (copying the tables it changes) with Secrets."""
    for section_name, key, is_list in _SETTINGS_SECRETS:
        section = raw.get(section_name)
        if not isinstance(section, dict) or key not in section:
            continue
        section = raw[section_name] = dict(section)
        if not _secret_active(section_name, key, section):
            del section[key]
            continue
        value = section[key]
        if is_list and isinstance(value, list):
            section[key] = [
                _resolve_one(item, (section_name, key, index), main, resolver, problems, warnings)
                for index, item in enumerate(value)
            ]
        else:
            section[key] = _resolve_one(
                value, (section_name, key), main, resolver, problems, warnings
            )


def _secret_active(section_name: str, key: str, section: dict[str, Any]) -> bool:
    if section_name == "web":
        return section.get("enabled", True) is not False
    if section_name == "slack":
        mode = section.get("mode", "bot")
        wanted = "bot_token" if mode == "bot" else "webhook_url"
        return section.get("enabled", False) is True and key == wanted
    return True


def _resolve_one(
    value: object,
    loc: tuple[str | int, ...],
    main: SourceFile,
    resolver: SecretResolver,
    problems: list[str],
    warnings: list[str],
) -> object:
    if not isinstance(value, str):
        return value  # the model reports the type, without echoing the value
    try:
        secret, warning = resolver.resolve(value, base_dir=main.base_dir)
    except SecretError as exc:
        problems.append(problem(main.display, loc, str(exc)))
        return UNRESOLVED
    if warning == INLINE_WARNING and loc == ("daemon", "store") and not dsn_has_password(value):
        warning = None
    if warning:
        warnings.append(problem(main.display, loc, warning))
    return secret


def _connections_dir(settings: Config | None, raw: dict[str, Any], main: SourceFile) -> Path | None:
    # With broken settings the directory is still read, so its files' problems show up
    # in the same run.
    if settings is not None:
        return settings.daemon.connections_dir
    daemon = raw.get("daemon")
    value = daemon.get("connections_dir") if isinstance(daemon, dict) else None
    return main.path.parent / value if isinstance(value, str) else None


def _fleet_problems(
    settings: Config, connections: list[ConnectionConfig], display: str
) -> list[str]:
    """Rules between the settings and the connections."""
    found = []
    if settings.clock.speed != 1.0:
        remote = [c.id for c in connections if not is_loopback_url(c.instance_url)]
        if remote:
            more = f" and {len(remote) - 1} more" if len(remote) > 1 else ""
            found.append(
                problem(
                    display,
                    "clock.speed",
                    f"{settings.clock.speed:g} needs every instance on loopback (only the "
                    f"emulator runs fast); connections[{remote[0]}]{more} are not",
                )
            )
    auth_code = [c.id for c in connections if c.grant is Grant.AUTHORIZATION_CODE]
    if auth_code and not (settings.web.enabled and settings.web.public_url):
        found.append(
            problem(
                display,
                "web.public_url",
                "required, with web enabled, when a connection uses the authorization_code "
                f"grant (it is the OAuth redirect_uri base): connections[{auth_code[0]}]",
            )
        )
    return found


def summary(config: Config) -> str:
    """A few lines saying what the daemon would run, for `snowmon check`."""
    connections = config.connections
    files = len({c.source for c in connections})
    grants = Counter(c.grant.value for c in connections)
    by_grant = ", ".join(f"{grant} {count}" for grant, count in sorted(grants.items()))
    daemon, web, slack, clock = config.daemon, config.web, config.slack, config.clock
    store = f"sqlite {daemon.sqlite_path}" if daemon.sqlite_path else "postgresql"
    web_line = (
        f"{web.base_url} (listen {web.listen}, {len(web.read_tokens)} read / "
        f"{len(web.admin_tokens)} admin tokens)"
        if web.enabled
        else "off"
    )
    slack_line = (
        f"{slack.mode}, default channel {slack.default_channel or '-'}, {len(slack.routes)} routes"
        if slack.enabled
        else "off"
    )
    clock_line = "wall time" if clock.speed == 1.0 else f"{clock.speed:g}x (emulator)"
    lines = [
        f"connections: {len(connections)} from {files} file(s)"
        + (f" ({by_grant})" if by_grant else ""),
        f"store: {store} ({len(daemon.encryption_keys)} encryption key(s))",
        f"web: {web_line}",
        f"slack: {slack_line}",
        f"clock: {clock_line}",
    ]
    return "\n".join(lines)


def check_report(path: Path, *, environ: Mapping[str, str] | None = None) -> tuple[int, str]:
    """`snowmon check`: (exit code, text to print). 0 when the config loads, else 2 (the
    CLI's code for a bad configuration)."""
    try:
        loaded = load_config(path, environ=environ)
    except ConfigError as exc:
        count = len(exc.problems)
        footer = f"{path}: {count} problem{'s' if count != 1 else ''}"
        return 2, "\n".join([*exc.problems, footer])
    return 0, "\n".join([*warning_lines(loaded.warnings), f"{path}: OK", summary(loaded.config)])


def warning_lines(warnings: Sequence[str]) -> list[str]:
    """What `snowmon check` shows of the warnings: `warning: ...` lines, at most
    `WARNING_LIMIT`, then the count of the rest."""
    shown, suppressed = capped_warnings(warnings)
    lines = [f"warning: {warning}" for warning in shown]
    return lines if suppressed is None else [*lines, suppressed]
