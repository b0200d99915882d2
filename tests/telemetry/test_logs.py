"""JSON and text log lines: shape, trace ids, extras, redaction."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider

from monitor.secret import Secret
from monitor.telemetry import CONNECTION, configure_logging
from monitor.telemetry.logs import RepeatLimit, TextFormatter, log_fields
from tests.telemetry.helpers import JsonLines, capture_logs

TOKEN = "Zq9-" * 21 + "_A"
RFC3339_MS_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
log = logging.getLogger("snowmon.test")


@pytest.fixture
def lines() -> Iterator[JsonLines]:
    with capture_logs() as handler:
        yield handler


def test_line_shape_outside_a_span(lines: JsonLines) -> None:
    log.info("token.refreshed", extra={"connection": "acme-prod", "outcome": "ok", "n": 3})
    (line,) = lines.lines
    assert list(line)[:4] == ["time", "level", "event", "logger"]
    assert RFC3339_MS_UTC.match(str(line["time"]))
    assert line["level"] == "info"
    assert line["event"] == "token.refreshed"
    assert line["logger"] == "snowmon.test"
    assert line["connection"] == "acme-prod"
    assert line["outcome"] == "ok"
    assert line["n"] == 3
    assert "trace_id" not in line
    assert "span_id" not in line


def test_trace_ids_inside_a_recording_span(lines: JsonLines) -> None:
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("t")
    with tracer.start_as_current_span("probe") as span:
        log.warning("probe.failed")
    (line,) = lines.lines
    ctx = span.get_span_context()
    assert line["trace_id"] == format(ctx.trace_id, "032x")
    assert line["span_id"] == format(ctx.span_id, "016x")
    assert re.fullmatch(r"[0-9a-f]{32}", str(line["trace_id"]))
    assert re.fullmatch(r"[0-9a-f]{16}", str(line["span_id"]))
    assert line["level"] == "warning"


def test_connection_comes_from_context(lines: JsonLines) -> None:
    token = CONNECTION.set("beta-dev")
    try:
        log.info("probe.done")
        log.info("probe.done", extra={"connection": "explicit"})
    finally:
        CONNECTION.reset(token)
    assert [line["connection"] for line in lines.lines] == ["beta-dev", "explicit"]


def test_secrets_are_masked(lines: JsonLines) -> None:
    log.info(
        "token.obtained %s",
        TOKEN,
        extra={
            "password": "hunter2",
            "client_secret": Secret("s3cr3t"),
            "Authorization": "Bearer abc",
            "code": "short-code",
            "wrapped": Secret("wrapped-value"),
            "detail": f"body had {TOKEN}",
            "nested": {"refresh_token": "rt-value", "ok": [1, "xoxb-123-456-abc"]},
            "webhook": "https://hooks.slack.com/services/T1/B2/hooksecret",
        },
    )
    (raw,) = lines.raw
    for secret in (
        "hunter2",
        "s3cr3t",
        "abc",
        "short-code",
        "wrapped-value",
        TOKEN,
        "rt-value",
        "xoxb-123",
        "hooksecret",
    ):
        assert secret not in raw
    (line,) = lines.lines
    assert line["event"] == "token.obtained ***"
    assert line["password"] == "***"
    assert line["client_secret"] == "***"
    assert line["wrapped"] == "***"
    assert line["detail"] == "body had ***"
    assert line["nested"] == {"refresh_token": "***", "ok": [1, "***"]}
    assert line["webhook"] == "https://hooks.slack.com/services/REDACTED"


def test_values_are_json_safe(lines: JsonLines) -> None:
    log.info("odd", extra={"nan": float("nan"), "b": b"body", "obj": object(), "t": (1, 2)})
    (line,) = lines.lines
    assert line["nan"] == "nan"
    assert line["b"] == "<4 bytes>"
    assert str(line["obj"]).startswith("<object object")
    assert line["t"] == [1, 2]


def _fail(secret_local: str) -> None:
    raise RuntimeError(f"refresh failed for {TOKEN}")


def test_exception_fields(lines: JsonLines) -> None:
    secret_local = "local-secret-value"
    try:
        _fail(secret_local)
    except RuntimeError:
        log.exception("keeper.crashed", extra={"connection": "c1"})
    (line,) = lines.lines
    assert line["level"] == "error"
    assert line["error"] == "refresh failed for ***"
    assert line["error.type"] == "builtins.RuntimeError"
    assert "Traceback (most recent call last)" in str(line["stack"])
    assert TOKEN not in lines.raw[0]
    assert secret_local not in lines.raw[0]  # no locals in the stack


def test_text_format() -> None:
    record = logging.LogRecord(
        "snowmon.http", logging.INFO, __file__, 1, "http.request", None, None
    )
    record.__dict__.update(
        {
            "method": "GET",
            "status": 200,
            "url": "https://x/y?code=REDACTED",
            "detail": "two words",
            "password": "pw",
        }
    )
    text = TextFormatter().format(record)
    assert re.match(r"^\S+Z INFO    snowmon.http http.request ", text)
    assert "method=GET status=200 url=https://x/y?code=REDACTED" in text
    assert 'detail="two words"' in text
    assert "password=***" in text


def test_configure_logging_writes_json_lines_when_not_a_tty() -> None:
    out = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    flags = (logging.logThreads, logging.logProcesses, logging.logMultiprocessing)
    try:
        configure_logging("debug", "auto", stream=out)
        handler = configure_logging("debug", "auto", stream=out)  # twice: no doubled lines
        logging.getLogger("snowmon.x").debug("hello", extra={"k": "v"})
        assert root.handlers == [handler]
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        logging.logThreads, logging.logProcesses, logging.logMultiprocessing = flags
    (raw,) = out.getvalue().splitlines()
    assert json.loads(raw)["k"] == "v"
    assert json.loads(raw)["level"] == "debug"


def test_configure_logging_rejects_unknown_level() -> None:
    with pytest.raises(ValueError, match="loud"):
        configure_logging("loud", "json", stream=io.StringIO())


def test_log_fields_refuses_record_attributes() -> None:
    assert log_fields(connection="c") == {"connection": "c"}
    with pytest.raises(ValueError, match="msg"):
        log_fields(msg="x")


def test_repeat_limit_holds_back_exporter_noise() -> None:
    now = [0.0]
    limit = RepeatLimit(interval=60, clock=lambda: now[0])

    def record(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, None, None)

    exporter = "opentelemetry.exporter.otlp.proto.http.trace_exporter"
    failed = "Failed to export %s batch code: %s"
    assert limit.filter(record(exporter, failed))
    assert not limit.filter(record(exporter, failed))
    assert not limit.filter(record(exporter, failed))
    assert limit.filter(record(exporter, "another message"))
    assert limit.filter(record("snowmon.http", failed))  # our own lines are never limited
    assert limit.filter(record("snowmon.http", failed))
    now[0] = 61.0
    again = record(exporter, failed)
    assert limit.filter(again)
    assert again.__dict__["suppressed"] == 2
