"""What ServiceNow puts on the wire: headers, cookies, JSON envelopes and HTML pages.

Handlers return a `Reply` (status, body bytes, a few facts about it); this module renders
the ServiceNow-specific shapes byte for byte (key order included) and turns a `Reply`
into an aiohttp response with the headers every ServiceNow answer carries. Keeping the
rendering pure lets fault injection transform a body before it is sent.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field

from aiohttp import web
from multidict import CIMultiDict

JSON_TYPE = "application/json;charset=UTF-8"
HTML_TYPE = "text/html;charset=UTF-8"

DEVELOPER_PORTAL = "https://developer.servicenow.com/dev.do#!/home?wu=true"


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON_TYPE
    logged_in: bool = False
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def is_json(self) -> bool:
        return self.content_type == JSON_TYPE


def dumps(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


# --- OAuth token endpoint -------------------------------------------------------------

# ServiceNow hides every token-endpoint failure behind this one body
ACCESS_DENIED = b'{"error_description":"access_denied","error":"server_error"}'


def token_success(access: str, refresh: str | None, scope: str, expires_in: int) -> Reply:
    body: dict[str, object] = {"access_token": access}
    if refresh is not None:
        body["refresh_token"] = refresh
    body["scope"] = scope
    body["token_type"] = "Bearer"  # noqa: S105
    body["expires_in"] = expires_in
    return Reply(200, dumps(body))


def access_denied() -> Reply:
    return Reply(401, ACCESS_DENIED)


def no_integration_user(client_id: str) -> Reply:
    return Reply(
        400,
        dumps(
            {
                "error": "unauthorized_client",
                "error_description": "Received client_credentials grant_type request however "
                f"integration user is not configured for OAuth:{client_id}",
            }
        ),
    )


# --- REST error envelopes -------------------------------------------------------------


def failure(status: int, message: str, detail: str | None, **extra: str) -> Reply:
    reply = Reply(
        status, dumps({"error": {"message": message, "detail": detail}, "status": "failure"})
    )
    reply.headers.extend(extra.items())
    return reply


def not_authenticated() -> Reply:
    return failure(401, "User Not Authenticated", "Required to provide Auth information")


def invalid_table(table: str) -> Reply:
    return failure(400, f"Invalid table {table}", None)


def no_record() -> Reply:
    return failure(
        404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
    )


def not_a_resource() -> Reply:
    return failure(400, "Requested URI does not represent any resource", None)


def method_not_supported() -> Reply:
    return failure(405, "Method not Supported", "The emulator's Table API is read-only")


def acl_denied(table: str) -> Reply:
    return failure(403, "User Not Authorized", f"ACL restricts access to table {table}")


def query_denied() -> Reply:
    return failure(
        403,
        "Insufficient rights to query records",
        "Field(s) present in the query do not have permission to be read",
    )


def rate_limited(limit: int) -> Reply:
    return failure(
        429,
        "Rate limit exceeded",
        f"Rate limit of {limit} requests per hour for Table API exceeded",
    )


_REST_DEBUG = (
    " Check logs for error trace or enable glide.rest.debug property"
    " to verify REST request processing"
)


def server_error(message: str) -> Reply:
    # ServiceNow writes detail before message in this one envelope
    return Reply(
        500,
        dumps(
            {"error": {"detail": message + _REST_DEBUG, "message": message}, "status": "failure"}
        ),
    )


def cancelled_transaction(partial_result: bytes) -> bytes:
    """A list answer the 60 s transaction quota cut short: 200, partial result, then error."""
    message = "Transaction cancelled: maximum execution time exceeded"
    error = dumps({"detail": message + _REST_DEBUG, "message": message})
    return b'{"result":' + partial_result + b',"error":' + error + b',"status":"failure"}'


# --- HTML pages -----------------------------------------------------------------------

_HIBERNATING = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Instance Hibernating page</title>
</head>
<body>
<div class="container">
<h1>Your instance is hibernating</h1>
<p>Developer instances hibernate when idle. Wake it up from the developer portal.</p>
<a class="button" href="{DEVELOPER_PORTAL}">Wake up your instance</a>
</div>
</body>
</html>
""".encode()

_MAINTENANCE = b"""<!DOCTYPE html>
<html><head><title>Service Unavailable</title></head>
<body><h1>Service Unavailable</h1>
<p>The instance is undergoing maintenance. Please try again later.</p></body></html>
"""

_NOT_FOUND = b"""<!DOCTYPE html>
<html><head><title>404 Not Found</title></head>
<body><h1>Not Found</h1><p>The requested page was not found on this instance.</p></body></html>
"""

_BAD_GATEWAY = b"""<!DOCTYPE html>
<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>
"""

_UNAVAILABLE = b"""<!DOCTYPE html>
<html><head><title>503 Service Unavailable</title></head>
<body><h1>503 Service Unavailable</h1></body></html>
"""

# what a full API_INT semaphore answers: not JSON
_SEMAPHORE = b"""<!DOCTYPE html>
<html><head><title>429 Too Many Requests</title></head>
<body><h1>Too Many Requests</h1><p>The server is busy. Please try again later.</p></body></html>
"""


def hibernating() -> Reply:
    return Reply(200, _HIBERNATING, HTML_TYPE)


def maintenance() -> Reply:
    return Reply(503, _MAINTENANCE, HTML_TYPE)


def not_found_page() -> Reply:
    return Reply(404, _NOT_FOUND, HTML_TYPE)


def bad_gateway() -> Reply:
    return Reply(502, _BAD_GATEWAY, HTML_TYPE)


def unavailable() -> Reply:
    return Reply(503, _UNAVAILABLE, HTML_TYPE)


def semaphore_full() -> Reply:
    return Reply(429, _SEMAPHORE, HTML_TYPE, headers=[("Retry-After", "1")])


def html_page(status: int, title: str, body_html: str) -> Reply:
    page = (
        f"<!DOCTYPE html>\n<html><head><title>{title}</title></head>"
        f"<body>{body_html}</body></html>\n"
    )
    return Reply(status, page.encode(), HTML_TYPE)


# --- headers every answer carries -----------------------------------------------------


def base_headers(reply: Reply) -> CIMultiDict[str]:
    ids = os.urandom(54).hex()  # one system call for the transaction id and three cookies
    headers: CIMultiDict[str] = CIMultiDict()
    headers["Server"] = "snow_adc"
    headers["X-Is-Logged-In"] = "true" if reply.logged_in else "false"
    headers["X-Transaction-ID"] = ids[:12]
    headers["Content-Type"] = reply.content_type
    session, route, store = ids[12:44].upper(), ids[44:76], ids[76:108].upper()
    headers.add("Set-Cookie", f"JSESSIONID={session}; Path=/; HttpOnly; SameSite=None; Secure")
    headers.add("Set-Cookie", f"glide_user_route=glide.{route}; Path=/; HttpOnly; Secure")
    headers.add(
        "Set-Cookie", f"glide_session_store={store}; Path=/; HttpOnly; SameSite=None; Secure"
    )
    for name, value in reply.headers:
        headers.add(name, value)
    return headers


def accepts_gzip(request: web.BaseRequest) -> bool:
    return "gzip" in request.headers.get("Accept-Encoding", "")


def wire_body(
    request: web.BaseRequest, reply: Reply, headers: CIMultiDict[str]
) -> tuple[bytes, bool]:
    """The bytes to send and whether to send them chunked (JSON is gzip + chunked, as live)."""
    if reply.is_json and accepts_gzip(request):
        headers["Content-Encoding"] = "gzip"
        return zlib.compress(reply.body, 6, wbits=31), True
    return reply.body, False


def to_response(request: web.BaseRequest, reply: Reply) -> web.Response:
    headers = base_headers(reply)
    body, chunked = wire_body(request, reply, headers)
    response = web.Response(status=reply.status, body=body, headers=headers)
    if chunked:
        response.enable_chunked_encoding()
    return response
