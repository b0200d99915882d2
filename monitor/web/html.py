"""HTML for people: the document shell, message pages in plain words, and the sign-in page.

Everything is in the one response: the stylesheet (`static/page.css`) is inlined and
allowed by its hash in the Content-Security-Policy, there is no script at all, and no
asset comes from anywhere else, so the page works offline and on a phone.
`Referrer-Policy: no-referrer` keeps a `?token=` or an authorization code out of
Referer headers.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from html import escape
from importlib.resources import files
from typing import Final

from aiohttp import web

from monitor.web.auth import TOKEN_PARAM, route_of
from monitor.web.problems import ApiError

CSS: Final = (files("monitor.web") / "static" / "page.css").read_text(encoding="utf-8")
_CSS_HASH: Final = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
CSP: Final = (
    f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; img-src data:; "
    "base-uri 'none'; frame-ancestors 'none'"
)
# Routes a person opens in a browser: their refusals are pages, not JSON.
BROWSER_ROUTES: Final = frozenset({"/", "/connect/{id}", "/oauth/callback"})
SIGN_IN_ROUTES: Final = frozenset({"/", "/connect/{id}"})


def document(title: str, body: str, *, refresh: str | None = None) -> str:
    """A whole page. `refresh` is a meta-refresh value like `30; url=/`."""
    meta_refresh = (
        f'<meta http-equiv="refresh" content="{escape(refresh)}">' if refresh is not None else ""
    )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{meta_refresh}<title>{escape(title)}</title>"
        '<link rel="icon" href="data:,">'
        f"<style>{CSS}</style></head>\n<body><main>{body}</main></body></html>\n"
    )


def html_response(text: str, *, status: int = 200) -> web.Response:
    response = web.Response(text=text, status=status, content_type="text/html", charset="utf-8")
    response.headers.update(
        {
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
            "Cache-Control": "no-store",
        }
    )
    return response


def message_page(
    title: str,
    paragraphs: Sequence[str],
    *,
    ok: bool,
    links: Sequence[tuple[str, str]] = (("/", "Back to the status page"),),
    extra_html: str = "",
) -> str:
    """A short page that says what happened. Paragraphs are plain text (escaped here)."""
    text = "".join(f"<p>{escape(p)}</p>" for p in paragraphs)
    nav = " · ".join(f'<a href="{escape(href)}">{escape(label)}</a>' for href, label in links)
    css_class = "message ok" if ok else "message bad"
    return document(
        title,
        f'<section class="{css_class}" role="status"><h1>{escape(title)}</h1>{text}'
        f"{extra_html}<p>{nav}</p></section>",
    )


def _sign_in_form(request: web.Request, admin: bool) -> str:
    hidden = "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
        for k, v in request.query.items()
        if k != TOKEN_PARAM
    )
    which = "an admin token" if admin else "a read or admin token"
    return (
        f'<form method="get" action="{escape(request.path)}">{hidden}'
        f'<input type="password" name="{TOKEN_PARAM}" autocomplete="current-password" '
        f'aria-label="Token" placeholder="Paste {which}" required>'
        "<button>Sign in</button></form>"
    )


def _wants_html(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "text/html" in accept or "application/json" not in accept


def html_error(request: web.Request, error: ApiError) -> web.Response | None:
    """The error middleware's renderer: a page for a browser on a browser route."""
    route = route_of(request)
    if route not in BROWSER_ROUTES or not _wants_html(request):
        return None
    if error.status in (401, 403) and route in SIGN_IN_ROUTES:
        admin = route != "/" or error.status == 403
        title = "Sign in to snowmon" if error.status == 401 else "An admin token is needed"
        if route == "/":
            need = "The status page needs a read or admin token."
        else:
            need = f"Re-authorizing {request.match_info.get('id', '')!r} needs an admin token."
        if "invalid_token" in error.headers.get("WWW-Authenticate", ""):
            need = f"That token is not valid. {need}"
        elif error.status == 403:
            need = f"You are signed in with a read-only token. {need}"
        paragraphs = [
            need,
            "This browser keeps a session cookie for 12 hours after you sign in "
            "(a hash of the token, never the token itself).",
        ]
        again = request.rel_url.without_query_params(TOKEN_PARAM)
        extra = _sign_in_form(request, admin) + (
            f'<p class="note">Signed in already? Links from other sites (Slack) do not '
            f'carry the session: <a href="{escape(str(again))}">continue here</a>.</p>'
        )
        response = html_response(
            message_page(title, paragraphs, ok=False, extra_html=extra), status=error.status
        )
    else:
        title = _TITLES.get(error.status, "Something went wrong")
        links = (*error.links, ("/", "Back to the status page"))
        response = html_response(
            message_page(title, [error.message], ok=False, links=links), status=error.status
        )
    response.headers.update(error.headers)
    return response


_TITLES: Final = {
    400: "That did not work",
    404: "Not found",
    405: "Not allowed",
    409: "This cannot be done here",
    500: "Something went wrong on our side",
    502: "ServiceNow did not accept it",
}
