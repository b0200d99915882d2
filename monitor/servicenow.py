"""What ServiceNow's answers look like, read without trusting them.

Shared by the token client and the probe: the hibernation page, the error envelope
`{"error": {"message", "detail"}, "status": "failure"}`, the rate-limit headers, and a
short, redacted one-line detail for logs and the status API.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping

from monitor.model import RateLimit

_HIBERNATION_MARKERS = (b"Instance Hibernating page", b"Your instance is hibernating")
# Anything shaped like a ServiceNow token (86 base64url chars) or a long hex secret.
_TOKENISH = re.compile(r"[A-Za-z0-9_-]{40,}")
DETAIL_MAX = 200


def is_hibernating(body: bytes) -> bool:
    head = body if len(body) <= 65536 else body[:65536]
    first, second = _HIBERNATION_MARKERS
    return first in head or second in head


def looks_like_html(body: bytes, content_type: str) -> bool:
    if "html" in content_type.lower():
        return True
    return body.lstrip()[:15].lower().startswith((b"<!doctype", b"<html"))


def parse_json(body: bytes) -> object | None:
    """The decoded JSON value, or None when the body is not JSON at all."""
    try:
        value: object = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return value


def error_message(doc: object) -> str:
    """The `error.message` of a ServiceNow error envelope, or ``""``."""
    if isinstance(doc, dict):
        error = doc.get("error")
        if isinstance(error, dict):
            message = error.get("message")
            return message if isinstance(message, str) else ""
    return ""


def redact_detail(text: str) -> str:
    """One short line, with anything token-shaped masked: details end up in logs, spans,
    the status API and Slack."""
    if not text:
        return text
    line = " ".join(text.split())
    line = _TOKENISH.sub("[redacted]", line)
    return line if len(line) <= DETAIL_MAX else line[: DETAIL_MAX - 1] + "…"


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def rate_limit(headers: Mapping[str, str]) -> RateLimit | None:
    limit = _number(headers.get("X-RateLimit-Limit"))
    reset = _number(headers.get("X-RateLimit-Reset"))
    rule = headers.get("X-RateLimit-Rule")
    if limit is None and reset is None and rule is None:
        return None
    return RateLimit(limit=int(limit) if limit is not None else None, reset_at=reset, rule=rule)


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait, from `Retry-After` (seconds) or else `X-RateLimit-Reset` (UNIX time)."""
    seconds = _number(headers.get("Retry-After"))
    if seconds is not None:
        return seconds
    reset = _number(headers.get("X-RateLimit-Reset"))
    if reset is not None and reset > now:
        return reset - now
    return None
