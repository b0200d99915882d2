"""URL and text redaction: what may be shown of a URL or a string."""

from __future__ import annotations

import pytest
from yarl import URL

from monitor.telemetry.redact import looks_like_token, redact_text, redact_url

TOKEN = "Zq9-" * 21 + "_A"
assert len(TOKEN) == 86


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # ordinary URLs pass unchanged
        (
            "https://acme.service-now.com/api/now/table/sys_user?sysparm_limit=1&sysparm_fields=sys_id",
            "https://acme.service-now.com/api/now/table/sys_user?sysparm_limit=1&sysparm_fields=sys_id",
        ),
        (
            "https://acme.service-now.com/oauth_token.do",
            "https://acme.service-now.com/oauth_token.do",
        ),
        # credential query parameters, whatever their case or encoding
        (
            f"https://snowmon.example/oauth/callback?code={TOKEN}&state=abc123",
            "https://snowmon.example/oauth/callback?code=REDACTED&state=REDACTED",
        ),
        (
            "https://x.example/p?Client_Secret=s3cr3t&a=1&PASSWORD=pw&access%5Ftoken=t",
            "https://x.example/p?Client_Secret=REDACTED&a=1&PASSWORD=REDACTED&access_token=REDACTED",
        ),
        (
            "https://x.example/p?refresh_token=r&code_verifier=v&sig=s&signature=g&key=k&token=t",
            "https://x.example/p?refresh_token=REDACTED&code_verifier=REDACTED&sig=REDACTED"
            "&signature=REDACTED&key=REDACTED&token=REDACTED",
        ),
        # a token-shaped value under any name
        (f"https://x.example/p?q={TOKEN}&n=2", "https://x.example/p?q=REDACTED&n=2"),
        # userinfo removed, explicit port kept, fragment dropped
        (
            "https://admin:hunter2@acme.service-now.com:8443/api/now/table/x#frag",
            "https://acme.service-now.com:8443/api/now/table/x",
        ),
        # Slack incoming webhooks carry their secret in the path
        (
            "https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX",
            "https://hooks.slack.com/services/REDACTED",
        ),
        # a token as a path segment
        (
            f"https://x.example/api/tokens/{TOKEN}/revoke",
            "https://x.example/api/tokens/REDACTED/revoke",
        ),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_url(URL(url)) == shown


def test_redact_relative_url() -> None:
    assert redact_url("/oauth/callback?code=abc&x=1") == "/oauth/callback?code=REDACTED&x=1"


def test_looks_like_token() -> None:
    assert looks_like_token(TOKEN)
    assert not looks_like_token(TOKEN[:85])
    assert not looks_like_token("a" * 85 + "/")
    assert not looks_like_token("0123456789abcdef0123456789abcdef")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"got {TOKEN} back", "got *** back"),
        (f"Bearer {TOKEN}", "Bearer ***"),
        ("bot xoxb-1234-5678-abcdEFGH here", "bot *** here"),
        ("user xoxp-1-2-3-abc and app xapp-1-A0-123-abc", "user *** and app ***"),
        (
            "POST https://hooks.slack.com/services/T1/B2/secret failed",
            "POST https://hooks.slack.com/services/REDACTED failed",
        ),
        ("dsn postgresql://snow:pa55@db:5432/x", "dsn postgresql://db:5432/x"),
        ("sys_id 0123456789abcdef0123456789abcdef", "sys_id 0123456789abcdef0123456789abcdef"),
        ("nothing to hide", "nothing to hide"),
    ],
)
def test_redact_text(text: str, shown: str) -> None:
    assert redact_text(text) == shown
