"""The authorize endpoint, `GET /oauth_auth.do`: where a person grants an application access.

`response_type=code&client_id&redirect_uri&state[&scope][&code_challenge&
code_challenge_method]`. `state` is required, as on new instances. In auto-approve mode
(tests, the demo) the integration user consents at once and the browser is redirected to
`redirect_uri?code=<86 chars>&state=<state>`; otherwise a login-and-allow form is shown
and its POST does the same after checking the user's password.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from urllib.parse import urlencode

from aiohttp import web

from monitor.emulator.fleet import Instance, OAuthClient
from monitor.emulator.state import FleetState
from monitor.emulator.token_endpoint import FORM_TYPE, parse_form, same
from monitor.emulator.tokens import AuthorizationCode
from monitor.emulator.wire import Reply, html_page

PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "scope",
    "code_challenge",
    "code_challenge_method",
)


def _redirect(target: str, params: list[tuple[str, str]]) -> Reply:
    joiner = "&" if "?" in target else "?"
    return Reply(
        302,
        b"",
        "text/html;charset=UTF-8",
        headers=[("Location", target + joiner + urlencode(params))],
    )


def _error(message: str) -> Reply:
    return html_page(400, "OAuth error", f"<h1>{html.escape(message)}</h1>")


class AuthorizeEndpoint:
    def __init__(self, state: FleetState) -> None:
        self.state = state

    async def handle(self, instance: Instance, request: web.BaseRequest, prefix: str) -> Reply:
        if request.method == "POST":
            if request.content_type != FORM_TYPE:
                return _error("Invalid request")
            form = parse_form(await request.read()) or {}
            return self._consent(instance, form, prefix)
        params = {key: request.query.get(key, "") for key in PARAMS}
        checked = self._check(instance, params)
        if isinstance(checked, Reply):
            return checked
        if self.state.options.auto_approve:
            return self._approve(instance, checked, params, instance.username)
        return self._login_form(params, prefix, "")

    def _check(self, instance: Instance, params: Mapping[str, str]) -> OAuthClient | Reply:
        client = instance.client(params["client_id"]) if params["client_id"] else None
        if client is None or not client.authorization_code:
            return _error("Invalid client_id")
        if params["response_type"] != "code":
            return _error("Invalid response_type: only code is supported")
        if not params["redirect_uri"] and client.redirect_uri is None:
            return _error("Missing redirect_uri parameter in request")
        if client.redirect_uri is not None and params["redirect_uri"] not in {
            "",
            client.redirect_uri,
        }:
            return _error("Invalid redirect_uri")
        if not params["state"]:
            return _error("Missing State parameter in request")
        if params["code_challenge"] and params["code_challenge_method"] not in {
            "",
            "S256",
            "plain",
        }:
            return _error("Invalid code_challenge_method")
        return client

    def _approve(
        self, instance: Instance, client: OAuthClient, params: Mapping[str, str], user: str
    ) -> Reply:
        now = self.state.clock.now()
        redirect_uri = params["redirect_uri"] or client.redirect_uri or ""
        code = AuthorizationCode(
            instance,
            client,
            user,
            params["redirect_uri"],
            params["scope"] or "useraccount",
            params["code_challenge"] or None,
            params["code_challenge_method"] or "plain",
            now + self.state.options.code_lifespan,
        )
        value = self.state.tokens.issue_code(code, now)
        return _redirect(redirect_uri, [("code", value), ("state", params["state"])])

    def _login_form(self, params: Mapping[str, str], prefix: str, problem: str) -> Reply:
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
            for name, value in params.items()
        )
        note = f'<p class="error">{html.escape(problem)}</p>' if problem else ""
        body = (
            f"<h1>Allow access to your ServiceNow instance?</h1>{note}"
            f'<form method="post" action="{prefix}/oauth_auth.do">{hidden}'
            '<label>User name <input name="user_name"></label>'
            '<label>Password <input name="user_password" type="password"></label>'
            '<button name="action" value="allow">Allow</button>'
            '<button name="action" value="deny">Deny</button></form>'
        )
        return html_page(200, "ServiceNow OAuth authorization", body)

    def _consent(self, instance: Instance, form: Mapping[str, str], prefix: str) -> Reply:
        params = {key: form.get(key, "") for key in PARAMS}
        checked = self._check(instance, params)
        if isinstance(checked, Reply):
            return checked
        redirect_uri = params["redirect_uri"] or checked.redirect_uri or ""
        if form.get("action") == "deny":
            return _redirect(redirect_uri, [("error", "access_denied"), ("state", params["state"])])
        user, password = form.get("user_name", ""), form.get("user_password", "")
        if user != instance.username or not same(password, instance.password):
            return self._login_form(params, prefix, "User name or password invalid")
        return self._approve(instance, checked, params, user)
