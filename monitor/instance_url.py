"""Instance URLs: which base URLs a connection may send its credentials to.

Tokens and passwords go to whatever `instance_url` says, so a typo must never reach a
stranger: only https on a ServiceNow domain, any https host when a connection explicitly
allows a custom domain, or loopback (the emulator, plain http allowed, with a path prefix
so one emulator serves many instances). Everything else is refused before the daemon
starts. Messages never repeat the URL: it may carry a password in its userinfo.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final
from urllib.parse import SplitResult, urlsplit

SERVICENOW_DOMAINS: Final = (".service-now.com", ".servicenowservices.com")

_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DNS_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*")
# Characters a base URL never needs; a backslash or a space is how URL-parser confusion
# attacks (and copy-paste accidents) start.
_FORBIDDEN = re.compile(r"[\s\\]")
_LOOPBACK_NAMES: Final = frozenset({"localhost"})
# The shape of nearly every URL in a big fleet, accepted without the general parse:
# loading 100,000 connections spends its time in a few places, and this was one.
_PLAIN_SERVICENOW = re.compile(rf"https://{_LABEL}\.(?:service-now\.com|servicenowservices\.com)/?")


class InstanceURLError(ValueError):
    """Why an instance URL is refused; the message is safe to show."""


def is_loopback_host(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (the emulator runs there)."""
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname
    return host is not None and is_loopback_host(host)


def normalize_instance_url(url: str, *, allow_custom_domain: bool = False) -> str:
    """Return `url` normalised (lower-case scheme and host, no trailing slash) or raise
    InstanceURLError saying which rule it breaks."""
    if _PLAIN_SERVICENOW.fullmatch(url):
        return url.rstrip("/")
    if _FORBIDDEN.search(url):
        raise InstanceURLError("must not contain spaces or backslashes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InstanceURLError("is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise InstanceURLError("must start with https://")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InstanceURLError("must not contain user:password@; credentials go in their fields")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise InstanceURLError("must not have a query (?) or fragment (#)")
    host = (parts.hostname or "").lower()
    if not host:
        raise InstanceURLError("has no host")
    loopback = is_loopback_host(host)
    if not loopback:
        _check_remote(parts, scheme, host, allow_custom_domain=allow_custom_domain)
    return _rebuild(scheme, host, port, parts.path.rstrip("/"))


def _check_remote(parts: SplitResult, scheme: str, host: str, *, allow_custom_domain: bool) -> None:
    if scheme != "https":
        raise InstanceURLError(
            "http is only allowed on loopback; use https://<name>.service-now.com"
        )
    if not _DNS_NAME.fullmatch(host) and not _is_ip(host):
        raise InstanceURLError("host is not a valid DNS name")
    if not allow_custom_domain and not _is_servicenow_host(host):
        raise InstanceURLError(
            "host is not on a ServiceNow domain (*.service-now.com, *.servicenowservices.com);"
            " set allow_custom_domain = true for a custom domain"
        )
    if parts.path.rstrip("/"):
        raise InstanceURLError(
            "a path is only allowed on loopback (the emulator); use the instance's base URL"
        )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_servicenow_host(host: str) -> bool:
    # `acme.service-now.com`, not the bare domain: the bare domain is no instance.
    return any(host.endswith(domain) and len(host) > len(domain) for domain in SERVICENOW_DOMAINS)


def _rebuild(scheme: str, host: str, port: int | None, path: str) -> str:
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    return f"{scheme}://{netloc}{path}"
