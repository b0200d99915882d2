"""Redaction: what may leave the process in a URL, a log line or a span attribute.

Two passes share these rules. `redact_url` runs on every outgoing request URL before it
reaches a span, a log line or an exception message we produce; `redact_text` and
`redact_value` run in the log formatter as a second line of defence, so a token that slips
into a message by mistake is masked all the same.

What counts as secret:
- query values of well-known credential parameters (`code`, `state`, `access_token`, ...);
- userinfo (`user:password@`) of any URL;
- Slack incoming-webhook paths (`/services/T.../B.../<secret>`): the secret is the path;
- any 86-character base64url run (ServiceNow access and refresh tokens, authorization
  codes) and Slack tokens (`xoxb-...`, `xoxp-...`, `xapp-...`) anywhere in a string.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import unquote_plus

from yarl import URL

REDACTED: Final = "REDACTED"
MASK: Final = "***"

# Query parameters whose value is a credential, compared lower-cased.
SENSITIVE_PARAMS: Final = frozenset(
    {
        "code",
        "state",
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "password",
        "token",
        "code_verifier",
        "code_challenge",
        "sig",
        "signature",
        "key",
        "api_key",
        "apikey",
        "secret",
        "assertion",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
    }
)

# Log record fields whose value is masked whatever it is, compared lower-cased.
SENSITIVE_KEYS: Final = frozenset(
    {
        "password",
        "client_secret",
        "access_token",
        "refresh_token",
        "authorization",
        "code",
        "code_verifier",
        "token",
        "bot_token",
        "webhook_url",
        "cookie",
        "set-cookie",
        "secret",
    }
)

TOKEN_LENGTH: Final = 86  # ServiceNow tokens and authorization codes
_TOKEN_RE: Final = re.compile(r"(?<![A-Za-z0-9_\-])[A-Za-z0-9_\-]{86,}(?![A-Za-z0-9_\-])")
_SLACK_TOKEN_RE: Final = re.compile(r"\bx(?:ox[a-z]|app)-[A-Za-z0-9\-]+")
_WEBHOOK_RE: Final = re.compile(r"(/services/)[A-Za-z0-9/_\-]+")
_URL_USERINFO_RE: Final = re.compile(r"(\w+://)[^/@\s]+@")
_BASE64URL: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def looks_like_token(value: str) -> bool:
    """True for a base64url string at least as long as a ServiceNow token."""
    return len(value) >= TOKEN_LENGTH and _BASE64URL.issuperset(value)


def redact_text(text: str) -> str:
    """Mask tokens, Slack credentials, webhook paths and URL userinfo inside free text."""
    if len(text) >= TOKEN_LENGTH:
        text = _TOKEN_RE.sub(MASK, text)
    if "xox" in text or "xapp-" in text:
        text = _SLACK_TOKEN_RE.sub(MASK, text)
    if "/services/" in text:
        text = _WEBHOOK_RE.sub(r"\1" + REDACTED, text)
    if "@" in text and "://" in text:
        text = _URL_USERINFO_RE.sub(r"\1", text)
    return text


def _redact_path(path: str) -> str:
    if path.startswith("/services/"):
        return "/services/" + REDACTED
    if len(path) < TOKEN_LENGTH:
        return path
    return "/".join(REDACTED if looks_like_token(seg) else seg for seg in path.split("/"))


def redact_url(url: URL | str) -> str:
    """The URL as it may be shown: no userinfo, no fragment, credentials replaced.

    The fast path (no query, no userinfo, a short ordinary path) costs one `str()`.
    """
    if isinstance(url, str):
        url = URL(url)
    if not url.is_absolute():
        return _redact_relative(url)
    raw_path = url.raw_path
    path = _redact_path(raw_path)
    query = url.raw_query_string
    if url.raw_user is None and not query and not url.raw_fragment and path is raw_path:
        return str(url)
    out = f"{url.scheme}://{url.raw_host}"
    if url.explicit_port is not None:
        out += f":{url.explicit_port}"
    out += path
    if query:
        out += "?" + _redact_query(url)
    return out


def _redact_relative(url: URL) -> str:
    out = _redact_path(url.raw_path)
    if url.raw_query_string:
        out += "?" + _redact_query(url)
    return out


def _unquote(text: str) -> str:
    return unquote_plus(text) if "%" in text or "+" in text else text


def _redact_query(url: URL) -> str:
    parts: list[str] = []
    for raw_pair in url.raw_query_string.split("&"):
        name, sep, value = raw_pair.partition("=")
        if sep and (
            _unquote(name).lower() in SENSITIVE_PARAMS
            or (len(value) >= TOKEN_LENGTH and looks_like_token(_unquote(value)))
        ):
            parts.append(f"{name}={REDACTED}")
        elif not sep and len(name) >= TOKEN_LENGTH and looks_like_token(_unquote(name)):
            parts.append(REDACTED)
        else:
            parts.append(raw_pair)
    return "&".join(parts)


def mask_key(key: str) -> bool:
    """True when a structured field named `key` must never show its value."""
    return key in SENSITIVE_KEYS or (not key.islower() and key.lower() in SENSITIVE_KEYS)
