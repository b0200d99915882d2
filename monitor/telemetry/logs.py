"""Log lines: one JSON object per line on stdout, or readable text on a terminal.

Callers log an event name and structured fields:
`log.info("token.refreshed", extra={"connection": cid, "outcome": "ok"})`.
The JSON line carries `time` (RFC 3339 UTC, milliseconds, `Z`), `level`, `event`,
`logger`, `trace_id`/`span_id` inside a recording span, `connection` from the ambient
context when the caller did not give one, and every `extra` field at top level.

The formatter is the second line of defence after `http.py`: sensitive field names are
masked whatever their value, `Secret` renders as `***`, and tokens, Slack credentials,
webhook paths and URL userinfo are masked inside every string, the message and the
exception text included.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, TextIO

from monitor.secret import Secret
from monitor.telemetry.context import CONNECTION, current_trace_ids
from monitor.telemetry.redact import MASK, mask_key, redact_text

LogFormat = Literal["auto", "json", "text"]

# Attributes every LogRecord has; anything else on a record came from `extra`.
_RECORD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}
_LEVELS: Final = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}
_MAX_DEPTH: Final = 6


def _safe(value: object, depth: int = 0) -> object:
    """A JSON-safe, redacted copy of `value`."""
    kind = type(value)
    if kind is str:
        return redact_text(value)  # type: ignore[arg-type]
    if value is None or kind is int or kind is bool:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):  # str subclasses, StrEnum
        return redact_text(str(value))
    if isinstance(value, int):
        return int(value)
    if isinstance(value, Secret):
        return MASK
    if depth >= _MAX_DEPTH:
        return "..."
    if isinstance(value, Mapping):
        return {str(k): MASK if mask_key(str(k)) else _safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_safe(v, depth + 1) for v in value]
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"  # bodies are never logged
    return redact_text(str(value))


def _level(record: logging.LogRecord) -> str:
    return _LEVELS.get(record.levelno) or record.levelname.lower()


class _Clock:
    """RFC 3339 UTC timestamps; the part up to the second is computed once a second."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def format(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((created - second) * 1000):03d}Z"


def add_fields(record: logging.LogRecord, out: dict[str, object]) -> None:
    """Add the structured fields of a record to `out`, never replacing a key it has:
    trace ids and the ambient connection (unless the caller gave its own), redacted
    extras, exception details."""
    extras = record.__dict__
    if "trace_id" not in extras:
        ids = current_trace_ids()
        if ids is not None:
            out["trace_id"], out["span_id"] = ids
    if "connection" not in extras:
        connection = CONNECTION.get()
        if connection is not None:
            out["connection"] = connection
    for key, value in extras.items():
        if key in _RECORD_ATTRS or key in out:
            continue
        out[key] = MASK if mask_key(key) else _safe(value)
    if record.exc_info and record.exc_info[1] is not None:
        exc = record.exc_info[1]
        out["error"] = redact_text(str(exc))
        out["error.type"] = f"{type(exc).__module__}.{type(exc).__qualname__}"
        out["stack"] = redact_text("".join(traceback.format_exception(exc)))
    elif record.stack_info:
        out["stack"] = redact_text(record.stack_info)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; see the module docstring for the shape."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = _Clock()
        self._encode = json.JSONEncoder(
            ensure_ascii=False, default=str, separators=(",", ":")
        ).encode

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": self._clock.format(record.created),
            "level": _level(record),
            "event": redact_text(record.getMessage()),
            "logger": record.name,
        }
        add_fields(record, line)
        return self._encode(line)


class TextFormatter(logging.Formatter):
    """`time level logger event key=value ...` for people at a terminal."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = _Clock()

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {}
        add_fields(record, fields)
        stack = fields.pop("stack", None)
        parts = [
            self._clock.format(record.created),
            f"{_level(record).upper():<7}",
            record.name,
            redact_text(record.getMessage()),
        ]
        parts.extend(f"{k}={_text_value(v)}" for k, v in fields.items())
        line = " ".join(parts)
        if isinstance(stack, str):
            line += "\n" + stack.rstrip("\n")
        return line


def _text_value(value: object) -> str:
    if isinstance(value, str):
        return value if value and " " not in value and '"' not in value else json.dumps(value)
    return json.dumps(value, default=str)


class RepeatLimit(logging.Filter):
    """At most one record per logger and message template every `interval` seconds from
    loggers under `prefix`; the next record let through carries `suppressed`, the count
    held back. The OTel exporter logs every failed batch, and a collector that is down
    for hours must not flood stdout (failures are counted in metrics anyway)."""

    def __init__(
        self,
        prefix: str = "opentelemetry",
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.prefix = prefix
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefix):
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        with self._lock:
            last, held = self._seen.get(key, (None, 0))
            if last is not None and now - last < self.interval:
                self._seen[key] = (last, held + 1)
                return False
            self._seen[key] = (now, 0)
        if held:
            record.suppressed = held
        return True


def configure_logging(
    level: str = "info", fmt: LogFormat = "auto", stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record to `stream` (stdout by default) in the chosen format.

    Replaces the handlers of the root logger, so calling it twice does not double lines;
    returns the handler so a caller (or a test) can remove it again.
    """
    out = sys.stdout if stream is None else stream
    if fmt == "auto":
        isatty = getattr(out, "isatty", None)
        fmt = "text" if callable(isatty) and isatty() else "json"
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    handler = logging.StreamHandler(out)
    handler.addFilter(RepeatLimit())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    # Never printed, so never collected: saves a few µs per record on the hot path.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    # Nor is the caller's file and line: without a source file, logging skips walking the
    # stack for every record (the logging HOWTO's "Optimization").
    logging._srcfile = None
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    return handler


def log_fields(**fields: Any) -> dict[str, Any]:
    """`extra=` for a log call, checked: a field may not shadow a LogRecord attribute."""
    clash = _RECORD_ATTRS.intersection(fields)
    if clash:
        raise ValueError(f"log fields shadow LogRecord attributes: {sorted(clash)}")
    return fields
