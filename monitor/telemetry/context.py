"""Ambient request context: which connection the current task works for, and the ids of
the current span, for log lines, HTTP spans and exemplars.

The keeper sets `CONNECTION` around everything it does for one connection; the HTTP hooks
and the log formatter read it, so callers never thread a connection id through helpers.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Final

from opentelemetry import trace

CONNECTION: Final[ContextVar[str | None]] = ContextVar("snowmon_connection", default=None)


def current_trace_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) in hex of the current span when it is recording, else None."""
    span = trace.get_current_span()
    if not span.is_recording():
        return None
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def exemplar_of(span: trace.Span) -> dict[str, str] | None:
    """The exemplar labels (trace_id, span_id) of a sampled span, or None."""
    ctx = span.get_span_context()
    if not ctx.trace_flags.sampled:
        return None
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


def current_exemplar() -> dict[str, str] | None:
    """The exemplar labels of the current span, or None outside a sampled span."""
    return exemplar_of(trace.get_current_span())
