"""Config problems: turning parse and validation failures into one line each.

Every line reads `FILE: PATH: message`, e.g.
`snowmon.toml: connections[acme-prod].probe.interval: must be between 5 and 86400 seconds`.
Lines are built from pydantic's error location and message only, never from the input
value: the input may be a secret, and pydantic's own rendering would print it.

Warnings are shown up to `WARNING_LIMIT` lines, then one line counts the rest by kind: a
fleet of 100,000 connections with inline secrets warns 200,000 times, and writing every
line took seconds of start-up and buried everything else in the log.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from monitor.config_rules import RULES_ERROR
from monitor.secrets_ref import INLINE_WARNING, MODE_WARNING_END

Loc = tuple[str | int, ...]

# Pydantic's wording is written for Python callers; these read better next to TOML.
_MESSAGES: Final = {
    "extra_forbidden": "unknown key",
    "missing": "required",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "dict_type": "must be a table",
    "list_type": "must be an array",
    "tuple_type": "must be an array",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "path_type": "must be a string",
}


WARNING_LIMIT: Final = 50

# (how the warning ends, its kind in the singular, in the plural)
_WARNING_KINDS: Final = (
    (INLINE_WARNING, "inline secret", "inline secrets"),
    (MODE_WARNING_END, "secret file readable by others", "secret files readable by others"),
)
_OTHER_KIND: Final = ("other", "others")


def capped_warnings(
    warnings: Sequence[str], limit: int = WARNING_LIMIT
) -> tuple[list[str], str | None]:
    """At most `limit` warnings, and a line counting the others by kind (None if there
    are no others), e.g. `... and 199,951 more warnings (199,951 inline secrets)`.

    Inline secrets come last (in file order otherwise): a fleet that inlines every secret
    must not push a readable secret file or any other warning out of sight."""
    if len(warnings) <= limit:
        return list(warnings), None
    ordered = sorted(warnings, key=lambda warning: warning.endswith(INLINE_WARNING))
    rest = ordered[limit:]
    kinds: Counter[tuple[str, str]] = Counter(map(_warning_kind, rest))
    by_kind = ", ".join(
        f"{count:,} {singular if count == 1 else plural}"
        for (singular, plural), count in sorted(kinds.items(), key=lambda item: -item[1])
    )
    noun = "warning" if len(rest) == 1 else "warnings"
    return ordered[:limit], f"... and {len(rest):,} more {noun} ({by_kind})"


def _warning_kind(warning: str) -> tuple[str, str]:
    for ending, singular, plural in _WARNING_KINDS:
        if warning.endswith(ending):
            return singular, plural
    return _OTHER_KIND


def validation_problems(exc: ValidationError) -> list[tuple[Loc, str]]:
    """(location, message) for every error; a rules error becomes one per rule."""
    found: list[tuple[Loc, str]] = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(part for part in error["loc"] if part != "[key]")
        ctx = error.get("ctx") or {}
        if error["type"] == RULES_ERROR:
            found.extend(((*loc, field), message) for field, message in ctx["rules"])
        else:
            found.append((loc, _message(error)))
    return found


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    if kind == "value_error":
        return str(ctx["error"])
    if kind == "literal_error":
        return f"must be {ctx['expected']}"
    message = error["msg"]
    # "Input should ..." -> "input should ...", but leave "URL ..." alone.
    if len(message) > 1 and message[1].islower():
        message = message[0].lower() + message[1:]
    return message


def format_loc(loc: Loc) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def problem(file: str, loc: Loc | str, message: str) -> str:
    where = loc if isinstance(loc, str) else format_loc(loc)
    return f"{file}: {where}: {message}" if where else f"{file}: {message}"


_TOML_POSITION = re.compile(r"^(?P<msg>.*) \(at line (?P<line>\d+), column (?P<col>\d+)\)$")


def read_document(path: Path, display: str, *, allow_json: bool = False) -> dict[str, Any] | str:
    """The parsed file (TOML, or JSON for a `.json` file if allowed), or the one problem
    that stops reading it. Syntax problems name the line and column; a file that cannot
    be read is named by its full path, the one thing that helps find it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"{path}: cannot read: {exc.strerror or type(exc).__name__}"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"{display}: not UTF-8 text (byte {exc.start})"
    if allow_json and path.suffix == ".json":
        return _parse_json(text, display)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib (before 3.14) puts the position only in the message text.
        message = str(exc)
        match = _TOML_POSITION.match(message)
        if match is None:
            return f"{display}: invalid TOML: {message}"
        return f"{display}:{match['line']}:{match['col']}: invalid TOML: {match['msg']}"


def _parse_json(text: str, display: str) -> dict[str, Any] | str:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"{display}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}"
    if not isinstance(document, dict):
        return f"{display}: must hold a JSON object with connections and defaults keys"
    return document
