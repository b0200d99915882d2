"""The Table API probe: one small authenticated read, and what its answer means.

`probe()` asks for at most one `sys_id` of a table (`sys_user` by default) and returns a
`ProbeResult` with a reason from a small fixed set, whatever happens: timeouts, resets,
HTML where JSON was expected, a hibernating instance. An exception out of here is a bug.
An empty `result` still proves the token works.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import quote, urlencode

import aiohttp
from yarl import URL

from monitor import servicenow
from monitor.clock import Clock
from monitor.http import (
    BodyTooLarge,
    RequestNote,
    classify_target,
    read_body,
    transport_failure,
)
from monitor.model import ProbeReason, ProbeResult
from monitor.secret import Secret
from monitor.telemetry.redact import redact_url

MAX_PROBE_BODY = 256 * 1024
_TRANSPORT_REASONS = {reason.value: reason for reason in ProbeReason}


@dataclass(frozen=True, slots=True)
class ProbeRequest:
    """What every probe of one connection sends, worked out once: the URL, the hooks'
    note (the URL as shown, its target) and the host. Kept per connection, so small: the
    URL as shown is the URL itself unless redaction changed it."""

    url: str
    note: RequestNote
    host: str

    @classmethod
    def build(cls, target: ProbeTarget) -> ProbeRequest:
        url = target.url()
        parsed = URL(url)
        shown = redact_url(parsed)
        return cls(
            url,
            RequestNote(shown=url if shown == url else shown, target=classify_target(parsed)),
            parsed.raw_host or "",
        )


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    base_url: str
    table: str = "sys_user"
    query: str = ""
    fields: str = "sys_id"

    def url(self) -> str:
        params = {
            "sysparm_limit": "1",
            "sysparm_fields": self.fields,
            "sysparm_no_count": "true",
            "sysparm_suppress_pagination_header": "true",
        }
        if self.query:
            params["sysparm_query"] = self.query
        return f"{self.base_url}/api/now/table/{quote(self.table, safe='')}?{urlencode(params)}"


async def probe(
    session: aiohttp.ClientSession,
    request: ProbeRequest,
    token: Secret,
    clock: Clock,
    *,
    deadline: float,
    resend: int = 0,
) -> ProbeResult:
    """One probe request; `resend` > 0 for a repeat of an earlier one (the span's
    `http.request.resend_count`)."""
    url = request.url
    note = replace(request.note, resend=resend) if resend else request.note
    started_at = clock.now()
    started = time.perf_counter()  # not loop.time(): uvloop's is cached, in whole ms
    headers = {"Accept": "application/json", "Authorization": f"Bearer {token.reveal()}"}
    try:
        async with (
            asyncio.timeout_at(deadline),
            session.get(url, headers=headers, trace_request_ctx=note) as resp,
        ):
            body = await read_body(resp, MAX_PROBE_BODY)
            status = resp.status
            answer_headers: Mapping[str, str] = resp.headers
            content_type = resp.headers.get("Content-Type", "")
    except TimeoutError:
        took = time.perf_counter() - started
        return ProbeResult(ProbeReason.TIMEOUT, started_at, took, None, "timeout")
    except BodyTooLarge:
        took = time.perf_counter() - started
        return ProbeResult(ProbeReason.BAD_RESPONSE, started_at, took, None, "answer too large")
    except (aiohttp.ClientError, OSError) as exc:
        kind = transport_failure(exc)
        if kind is None:
            raise
        reason = _TRANSPORT_REASONS.get(kind, ProbeReason.BAD_RESPONSE)
        return ProbeResult(reason, started_at, time.perf_counter() - started, None, kind)
    return classify(
        status,
        answer_headers,
        content_type,
        body,
        started_at=started_at,
        duration=time.perf_counter() - started,
    )


def classify(
    status: int,
    headers: Mapping[str, str],
    content_type: str,
    body: bytes,
    *,
    started_at: float,
    duration: float,
) -> ProbeResult:
    """Turn one Table API answer into a `ProbeResult` (pure)."""
    limits = servicenow.rate_limit(headers)

    def result(
        reason: ProbeReason, detail: str = "", retry_after: float | None = None
    ) -> ProbeResult:
        return ProbeResult(
            reason,
            started_at,
            duration,
            status,
            servicenow.redact_detail(detail),
            retry_after,
            limits,
        )

    if servicenow.is_hibernating(body):
        return result(ProbeReason.HIBERNATING, "instance is hibernating")
    doc = servicenow.parse_json(body)
    message = servicenow.error_message(doc)
    if status == 200:
        if not isinstance(doc, dict):
            kind = "an HTML page" if servicenow.looks_like_html(body, content_type) else "non-JSON"
            return result(ProbeReason.BAD_RESPONSE, f"HTTP 200 with {kind}")
        if "error" in doc:
            # A list call cut off by the transaction quota: a 200 that is a server failure.
            return result(ProbeReason.SERVER_ERROR, message or "error in a 200 answer")
        if isinstance(doc.get("result"), list | dict):
            return result(ProbeReason.OK)
        return result(ProbeReason.BAD_RESPONSE, "HTTP 200 without result")
    if status == 401:
        return result(ProbeReason.AUTH_REJECTED, message or "HTTP 401")
    if status == 403:
        return result(ProbeReason.FORBIDDEN, message or "HTTP 403")
    if status == 400 and message.lower().startswith("invalid table"):
        return result(ProbeReason.INVALID_TABLE, message)
    if status == 404 and message == "No Record found":
        # The token was accepted; the table is empty or an ACL hides its rows.
        return result(ProbeReason.OK)
    if status == 429:
        wait = servicenow.retry_after(headers, started_at)
        return result(ProbeReason.RATE_LIMITED, message or "HTTP 429", wait)
    if status in (502, 503, 504) and servicenow.looks_like_html(body, content_type):
        return result(ProbeReason.MAINTENANCE, f"HTTP {status} with an HTML page")
    if status >= 500:
        return result(ProbeReason.SERVER_ERROR, message or f"HTTP {status}")
    return result(ProbeReason.BAD_RESPONSE, message or f"HTTP {status}")
