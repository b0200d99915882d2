"""The fleet: `[[connections]]` from the main file and from `daemon.connections_dir`,
each merged with its `[defaults]`, resolved and validated once.

This is the hot path of loading 100,000 connections, so each connection costs one raw
dict merge and one pydantic validation; defaults are validated once per file, not once
per connection, and a broken default is reported once and left out of the merge rather
than blamed on every connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from monitor.config_connection import (
    CREDENTIAL_FIELDS,
    MERGED_TABLES,
    PER_CONNECTION_ONLY,
    SECRET_FIELDS,
    ConnectionConfig,
    ConnectionDefaults,
    merge_defaults,
)
from monitor.config_fields import SLUG_PATTERN, UNRESOLVED
from monitor.config_problems import Loc, problem, read_document, validation_problems
from monitor.config_rules import CONFIGURABLE_GRANTS, RULES_ERROR, credential_rules
from monitor.errors import SecretError
from monitor.model import Grant
from monitor.secret import Secret
from monitor.secrets_ref import SecretResolver

_SLUG = re.compile(SLUG_PATTERN)
FILE_KEYS: Final = ("connections", "defaults")
# JSON beside TOML: tomllib is most of the cost of a big fleet, and a generated fleet of
# 100,000 loads in about a quarter of the time from JSON.
FILE_SUFFIXES: Final = (".toml", ".json")


@dataclass(frozen=True, slots=True)
class SourceFile:
    path: Path
    display: str  # as problems name it: relative to the main file's directory

    @property
    def base_dir(self) -> Path:
        """Where relative `file:` references in this file start."""
        return self.path.parent


@dataclass(slots=True)
class FleetLoader:
    """Collects connections, problems and warnings across every file of one load."""

    resolver: SecretResolver
    problems: list[str]
    warnings: list[str]
    connections: list[ConnectionConfig] = field(default_factory=list)
    _main_defaults: dict[str, Any] = field(default_factory=dict)
    _first_seen: dict[str, str] = field(default_factory=dict)

    def load_file(self, source: SourceFile, document: dict[str, Any]) -> None:
        """The main file's `[defaults]` and `[[connections]]` (its other keys are settings)."""
        self._main_defaults = self._defaults(document.get("defaults"), source, base={})
        self._entries(document.get("connections"), source, self._main_defaults)

    def load_dir(self, directory: Path, main: SourceFile) -> None:
        """Every `*.toml` and `*.json` in `directory`, by name; dotfiles are skipped
        (Kubernetes keeps its `..data` bookkeeping there when it mounts a ConfigMap)."""
        try:
            files = sorted(
                entry
                for entry in directory.iterdir()
                if entry.suffix in FILE_SUFFIXES
                and not entry.name.startswith(".")
                and entry.is_file()
            )
        except OSError as exc:
            self.problems.append(
                problem(
                    main.display,
                    "daemon.connections_dir",
                    f"cannot read directory {_display(directory, main)}: {exc.strerror}",
                )
            )
            return
        for path in files:
            source = SourceFile(path=path, display=_display(path, main))
            document = read_document(path, source.display, allow_json=True)
            if isinstance(document, str):
                self.problems.append(document)
                continue
            self.problems.extend(
                problem(
                    source.display,
                    key,
                    "unknown key; this file may hold only [[connections]] and [defaults]",
                )
                for key in document
                if key not in FILE_KEYS
            )
            defaults = self._defaults(document.get("defaults"), source, base=self._main_defaults)
            self._entries(document.get("connections"), source, defaults)

    def _defaults(self, raw: object, source: SourceFile, *, base: dict[str, Any]) -> dict[str, Any]:
        """Validate one `[defaults]` table and return it merged over `base`, less any
        key that has a problem (reported here, once)."""
        if raw is None:
            return base
        if not isinstance(raw, dict):
            self.problems.append(problem(source.display, "defaults", "must be a table"))
            return base
        try:
            ConnectionDefaults.model_validate(raw)
        except ValidationError as exc:
            raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
            for loc, message in validation_problems(exc):
                misplaced = message == "unknown key" and len(loc) == 1 and loc[0] in _NOT_DEFAULTS
                text = "set it in each connection, not in [defaults]" if misplaced else message
                self.problems.append(problem(source.display, ("defaults", *loc), text))
                _prune(raw, loc)
        return merge_defaults(base, raw)

    def _entries(self, entries: object, source: SourceFile, defaults: dict[str, Any]) -> None:
        base_dir = source.base_dir
        if entries is None:
            return
        if not isinstance(entries, list):
            self.problems.append(
                problem(source.display, "connections", "must be an array of [[connections]] tables")
            )
            return
        for index, entry in enumerate(entries):
            self._connection(entry, index, source, defaults, base_dir)

    def _connection(
        self,
        entry: object,
        index: int,
        source: SourceFile,
        defaults: dict[str, Any],
        base_dir: Path,
    ) -> None:
        if not isinstance(entry, dict):
            self.problems.append(
                problem(source.display, f"connections[{index}]", "must be a table")
            )
            return
        raw_id = entry.get("id")
        slug = raw_id if isinstance(raw_id, str) and _SLUG.fullmatch(raw_id) else None
        label = f"connections[{slug or index}]"
        merged = merge_defaults(defaults, entry)
        if "source" in merged:
            self.problems.append(problem(source.display, f"{label}.source", "unknown key"))
        merged["source"] = source.display
        for name in SECRET_FIELDS:
            value = merged.get(name)
            if isinstance(value, str):
                merged[name] = self._secret(value, f"{label}.{name}", source, base_dir)

        duplicate = False
        if slug is not None:
            first = self._first_seen.get(slug)
            if first is None:
                self._first_seen[slug] = source.display
            else:
                duplicate = True
                self.problems.append(
                    problem(
                        source.display, f"{label}.id", f"duplicate id; first defined in {first}"
                    )
                )
        try:
            connection = ConnectionConfig.model_validate(merged)
        except ValidationError as exc:
            self._report(exc, merged, label, source)
            return
        if not duplicate:
            self.connections.append(connection)

    def _secret(self, raw: str, where: str, source: SourceFile, base_dir: Path) -> Secret:
        try:
            secret, warning = self.resolver.resolve(raw, base_dir=base_dir)
        except SecretError as exc:
            self.problems.append(problem(source.display, where, str(exc)))
            return UNRESOLVED
        if warning:
            self.warnings.append(problem(source.display, where, warning))
        return secret

    def _report(
        self, exc: ValidationError, merged: dict[str, Any], label: str, source: SourceFile
    ) -> None:
        found = validation_problems(exc)
        # Pydantic skips the cross-field check when any field failed; run the credential
        # part on the raw keys so a missing password shows up in this run too.
        ran_rules = any(e["type"] == RULES_ERROR for e in exc.errors(include_input=False))
        grant = merged.get("grant")
        if not ran_rules and isinstance(grant, str) and grant in CONFIGURABLE_GRANTS:
            present = [name for name in CREDENTIAL_FIELDS if merged.get(name) is not None]
            reported = {loc for loc, _ in found}
            found.extend(
                ((name,), message)
                for name, message in credential_rules(Grant(grant), present)
                if (name,) not in reported
            )
        self.problems.extend(
            problem(source.display, f"{label}{_suffix(loc)}", message) for loc, message in found
        )


# In [defaults] these are not unknown but misplaced: say so.
_NOT_DEFAULTS: Final = frozenset({*PER_CONNECTION_ONLY, *CREDENTIAL_FIELDS})


def _suffix(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def _prune(raw: dict[str, Any], loc: Loc) -> None:
    """Drop the key behind a problem so the merge falls back to the built-in default."""
    if not loc or not isinstance(loc[0], str):
        return
    table = raw.get(loc[0])
    if (
        len(loc) > 1
        and loc[0] in MERGED_TABLES
        and isinstance(loc[1], str)
        and isinstance(table, dict)
    ):
        table.pop(loc[1], None)
    else:
        raw.pop(loc[0], None)


def _display(path: Path, main: SourceFile) -> str:
    try:
        return str(path.relative_to(main.path.parent))
    except ValueError:
        return str(path)
