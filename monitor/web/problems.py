"""Problems: how the web app says no.

Every refusal is `{"error": <code>, "message": <plain words>, "status": <int>}` with the
right HTTP status, or, for a person's browser on the page and connect-flow routes, an HTML
page in plain words. An exception nobody expected becomes a JSON 500 with no detail, and
is logged with its traceback; a traceback never reaches a client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

log = logging.getLogger("monitor.web")

ERROR_CODES: Final[Mapping[int, str]] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    500: "internal",
    502: "bad_gateway",
    503: "not_ready",
    504: "gateway_timeout",
}


class ApiError(Exception):
    """Raised by handlers to refuse a request; the error middleware renders it."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        links: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = ERROR_CODES.get(status, "error")
        self.message = message
        self.headers = dict(headers or {})
        self.links = tuple(links)  # (href, text) for a person's page; JSON leaves them out


def error_body(status: int, message: str) -> dict[str, object]:
    return {"error": ERROR_CODES.get(status, "error"), "message": message, "status": status}


def json_error(error: ApiError) -> web.Response:
    response = web.json_response(error_body(error.status, error.message), status=error.status)
    response.headers.update(error.headers)
    response.headers["Cache-Control"] = "no-store"
    return response


# How an aiohttp-raised refusal (no route, wrong method, ...) is worded for people.
_PLAIN: Final[Mapping[int, str]] = {
    404: "There is nothing at this address.",
    405: "This address does not accept that method.",
    413: "The request is too large.",
}

HtmlRenderer = Callable[[web.Request, ApiError], web.Response | None]


def error_middleware(render_html: HtmlRenderer) -> Middleware:
    """Turn `ApiError`, aiohttp's HTTP errors and unexpected exceptions into answers.

    `render_html` may answer a browser with a page; it returns None to leave it to JSON."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            error = exc
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "WWW-Authenticate")}
            message = _PLAIN.get(exc.status, exc.reason)
            error = ApiError(exc.status, message, headers=headers)
        except Exception:
            log.exception(
                "web.unhandled_error",
                extra={"method": request.method, "path": request.rel_url.path},
            )
            error = ApiError(500, "internal error")
        return render_html(request, error) or json_error(error)

    return middleware
