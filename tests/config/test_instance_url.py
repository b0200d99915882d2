"""Which base URLs a connection may send credentials to, and how they are normalised."""

from __future__ import annotations

import pytest

from monitor.instance_url import (
    InstanceURLError,
    is_loopback_host,
    is_loopback_url,
    normalize_instance_url,
)

ACCEPTED = [
    ("https://acme.service-now.com", False, "https://acme.service-now.com"),
    ("https://acme.service-now.com/", False, "https://acme.service-now.com"),
    ("HTTPS://Acme.Service-Now.com", False, "https://acme.service-now.com"),
    ("https://dev284244.service-now.com:443", False, "https://dev284244.service-now.com:443"),
    ("https://agency.servicenowservices.com", False, "https://agency.servicenowservices.com"),
    ("https://servicenow.acme.example", True, "https://servicenow.acme.example"),
    ("https://acme.service-now.com", True, "https://acme.service-now.com"),
    ("https://10.0.0.1:8443", True, "https://10.0.0.1:8443"),
    ("https://[2001:DB8::1]", True, "https://[2001:db8::1]"),
    # loopback: the emulator, http allowed, a path prefix allowed
    ("http://127.0.0.5:8443/dev00042", False, "http://127.0.0.5:8443/dev00042"),
    ("http://127.0.0.5:8443/dev00042/", False, "http://127.0.0.5:8443/dev00042"),
    ("http://127.255.0.1", False, "http://127.255.0.1"),
    ("http://localhost:8080", False, "http://localhost:8080"),
    ("http://LOCALHOST:8080/x/y", False, "http://localhost:8080/x/y"),
    ("http://[::1]:8443/dev1", False, "http://[::1]:8443/dev1"),
    ("https://127.0.0.1:8443", False, "https://127.0.0.1:8443"),
]


@pytest.mark.parametrize(("url", "custom", "normalised"), ACCEPTED)
def test_accepted_urls_are_normalised(url: str, custom: bool, normalised: str) -> None:
    assert normalize_instance_url(url, allow_custom_domain=custom) == normalised


SNOW_ONLY = (
    "host is not on a ServiceNow domain (*.service-now.com, *.servicenowservices.com); "
    "set allow_custom_domain = true for a custom domain"
)
HTTP = "http is only allowed on loopback; use https://<name>.service-now.com"
PATH = "a path is only allowed on loopback (the emulator); use the instance's base URL"
USERINFO = "must not contain user:password@; credentials go in their fields"
QUERY = "must not have a query (?) or fragment (#)"

REFUSED = [
    ("http://acme.service-now.com", False, HTTP),
    ("http://servicenow.acme.example", True, HTTP),
    ("http://10.0.0.1", True, HTTP),
    ("http://128.0.0.1", False, HTTP),  # just outside 127.0.0.0/8
    ("https://acme.service-now.co", False, SNOW_ONLY),
    ("https://acme.service-now.com.example.net", False, SNOW_ONLY),
    ("https://acmeservice-now.com", False, SNOW_ONLY),
    ("https://service-now.com", False, SNOW_ONLY),
    ("https://.service-now.com", False, "host is not a valid DNS name"),
    ("https://-acme.service-now.com", False, "host is not a valid DNS name"),
    ("https://acme_x.service-now.com", False, "host is not a valid DNS name"),
    ("https://10.0.0.1", False, SNOW_ONLY),
    ("https://acme.service-now.com/dev00042", False, PATH),
    ("https://acme.service-now.com/api/now", True, PATH),
    ("https://user:pw@acme.service-now.com", False, USERINFO),
    ("https://user@acme.service-now.com", False, USERINFO),
    ("http://user:pw@127.0.0.1:8080", False, USERINFO),
    ("https://acme.service-now.com?x=1", False, QUERY),
    ("https://acme.service-now.com/?", False, QUERY),
    ("https://acme.service-now.com#frag", False, QUERY),
    ("https://acme.service-now.com#", False, QUERY),
    (
        "https://evil.example\\@acme.service-now.com",
        False,
        "must not contain spaces or backslashes",
    ),
    ("https://acme.service-now.com /", False, "must not contain spaces or backslashes"),
    ("ftp://acme.service-now.com", False, "must start with https://"),
    ("acme.service-now.com", False, "must start with https://"),
    ("", False, "must start with https://"),
    ("https://", False, "has no host"),
    ("https://acme.service-now.com:99999", False, "is not a valid URL"),
    ("https://[::1", False, "is not a valid URL"),
]


@pytest.mark.parametrize(("url", "custom", "message"), REFUSED)
def test_refused_urls_say_which_rule(url: str, custom: bool, message: str) -> None:
    with pytest.raises(InstanceURLError) as caught:
        normalize_instance_url(url, allow_custom_domain=custom)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("0.0.0.0", False),  # noqa: S104 (a host name under test, not a bind)
        ("localhost.example", False),
        ("acme.service-now.com", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_loopback_urls() -> None:
    assert is_loopback_url("http://127.0.0.5:8443/dev1")
    assert is_loopback_url("http://[::1]:8443")
    assert not is_loopback_url("https://acme.service-now.com")
