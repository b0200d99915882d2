"""ServiceNow answers as servicenow.md records them, byte for byte, for the pure classifiers.

Written out here rather than taken from the emulator so that the classifier tests check
the code against the documented wire format, not against another piece of our own code.
"""

from __future__ import annotations

import base64
import hashlib

from multidict import CIMultiDict, CIMultiDictProxy

JSON_TYPE = "application/json;charset=UTF-8"
HTML_TYPE = "text/html;charset=UTF-8"


def token(seed: str) -> str:
    """An 86-character base64url string, the shape of a ServiceNow token."""
    return base64.urlsafe_b64encode(hashlib.sha512(seed.encode()).digest()).rstrip(b"=").decode()


ACCESS = token("access")
REFRESH = token("refresh")
NEW_ACCESS = token("new access")
NEW_REFRESH = token("new refresh")
assert len(ACCESS) == len(REFRESH) == 86


def token_body(access: str = ACCESS, refresh: str | None = REFRESH) -> bytes:
    """The 200 token answer, keys in ServiceNow's order."""
    refresh_part = f'"refresh_token":"{refresh}",' if refresh is not None else ""
    return (
        f'{{"access_token":"{access}",{refresh_part}"scope":"useraccount",'
        f'"token_type":"Bearer","expires_in":1799}}'
    ).encode()


ACCESS_DENIED = b'{"error_description":"access_denied","error":"server_error"}'
NO_INTEGRATION_USER = (
    b'{"error":"unauthorized_client","error_description":"Received client_credentials '
    b"grant_type request however integration user is not configured for "
    b'OAuth:0123456789abcdef0123456789abcdef"}'
)

# --- Table API ----------------------------------------------------------------------------

EMPTY_RESULT = b'{"result":[]}'
ONE_RECORD = b'{"result":[{"sys_id":"6816f79cc0a8016401c5a33be04be441"}]}'
SINGLE_RECORD = (
    b'{"result":{"sys_id":"6816f79cc0a8016401c5a33be04be441","active":"true",'
    b'"sys_created_on":"2016-01-19 04:52:04","manager":""}}'
)
NOT_AUTHENTICATED = (
    b'{"error":{"message":"User Not Authenticated","detail":"Required to provide Auth '
    b'information"},"status":"failure"}'
)
NOT_AUTHENTICATED_NEW = (
    b'{"error":{"message":"User is not authenticated","detail":"Required to provide Auth '
    b'information"},"status":"failure"}'
)
INVALID_TABLE = (
    b'{"error":{"message":"Invalid table not_a_real_class","detail":null},"status":"failure"}'
)
ACL_DENIED = (
    b'{"error":{"message":"User Not Authorized","detail":"ACL restricts access"},'
    b'"status":"failure"}'
)
QUERY_DENIED = (
    b'{"error":{"message":"Insufficient rights to query records","detail":"Field(s) present '
    b'in the query do not have permission to be read"},"status":"failure"}'
)
NO_RECORD = (
    b'{"error":{"message":"No Record found","detail":"Record doesn\'t exist or ACL restricts '
    b'the record retrieval"},"status":"failure"}'
)
SERVER_ERROR = (
    b'{"error":{"detail":"Something broke Check logs for error trace or enable '
    b'glide.rest.debug property to verify REST request processing","message":"Something '
    b'broke"},"status":"failure"}'
)
RATE_LIMITED = (
    b'{"error":{"message":"Rate limit exceeded","detail":"Rate limit of 100 requests per hour '
    b'for Table API exceeded"},"status":"failure"}'
)
CANCELLED_TRANSACTION = (
    b'{"result":[{"sys_id":"6816f79cc0a8016401c5a33be04be441"}],"error":{"detail":'
    b'"Transaction cancelled: maximum execution time exceeded Check logs for error trace or '
    b'enable glide.rest.debug property to verify REST request processing","message":'
    b'"Transaction cancelled: maximum execution time exceeded"},"status":"failure"}'
)

# --- HTML pages ---------------------------------------------------------------------------

HIBERNATING = b"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Instance Hibernating page</title></head>
<body>
<h1>Your instance is hibernating</h1>
<a class="button" href="https://developer.servicenow.com/dev.do#!/home?wu=true">Wake up</a>
</body>
</html>
"""
HIBERNATING_TITLE_ONLY = (
    b"<html><head><title>Instance Hibernating page</title></head><body></body></html>"
)
HIBERNATING_H1_ONLY = b"<html><body><h1>Your instance is hibernating</h1></body></html>"
LOGIN_PAGE = b"""<!DOCTYPE html>
<html><head><title>ServiceNow</title></head><body><form id="login"></form></body></html>
"""
MAINTENANCE = b"""<!DOCTYPE html>
<html><head><title>Service Unavailable</title></head>
<body><h1>Service Unavailable</h1><p>The instance is undergoing maintenance.</p></body></html>
"""
BAD_GATEWAY = b"""<html><head><title>502 Bad Gateway</title></head>
<body><h1>502 Bad Gateway</h1></body></html>
"""
SEMAPHORE = b"""<!DOCTYPE html>
<html><head><title>429 Too Many Requests</title></head>
<body><h1>Too Many Requests</h1></body></html>
"""


def headers(**extra: str) -> CIMultiDictProxy[str]:
    """Headers as aiohttp hands them over (case-insensitive), with ServiceNow's usual ones.

    Keyword names use `_` for `-`: ``headers(Retry_After="30")``."""
    values = CIMultiDict(
        {
            "Server": "snow_adc",
            "X-Is-Logged-In": "false",
            "X-Transaction-ID": "0123456789ab",
        }
    )
    for name, value in extra.items():
        values[name.replace("_", "-")] = value
    return CIMultiDictProxy(values)
