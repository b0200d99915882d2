"""The status page (`GET /`): the fleet at a glance, server-rendered.

Counts by state, the refresh tokens that die soon, then the connections grouped by state,
worst first, each with how long it has been in that state and why. A label filter narrows
all of it. The page reloads itself every 30 seconds (meta refresh, no script), and the
reload drops a `?token=` from the address bar.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape
from typing import Final
from urllib.parse import quote, urlparse

from aiohttp import web

from monitor.model import ConnectionStatus, State
from monitor.telemetry.redact import redact_text
from monitor.web.html import document, html_response
from monitor.web.keys import CLOCK, FLEET
from monitor.web.problems import ApiError
from monitor.web.render import STATES_WORST_FIRST, expiring_refresh_tokens, rfc3339

REFRESH_SECONDS: Final = 30
EXPIRY_WINDOW: Final = 7 * 86400.0
MAX_CARDS_PER_GROUP: Final = 100
MAX_LABEL_OPTIONS: Final = 500
OPEN_HEALTHY_UP_TO: Final = 12

TITLES: Final[dict[State, str]] = {
    State.CREDENTIALS_EXPIRED: "Credentials expired",
    State.FAILING: "Failing",
    State.FORBIDDEN: "Forbidden",
    State.HIBERNATING: "Hibernating",
    State.RATE_LIMITED: "Rate limited",
    State.DEGRADED: "Degraded",
    State.PENDING: "Pending",
    State.HEALTHY: "Healthy",
}
MEANING: Final[dict[State, str]] = {
    State.CREDENTIALS_EXPIRED: "ServiceNow rejects the stored credentials. A person must "
    "re-authorize, or fix the password or client secret in the config.",
    State.FAILING: "Probes keep failing: the instance is down, unreachable, or answers errors.",
    State.FORBIDDEN: "The token works, but the integration user may not read the probe table.",
    State.HIBERNATING: "A developer instance is asleep: wake it at developer.servicenow.com.",
    State.RATE_LIMITED: "ServiceNow is throttling this integration user.",
    State.DEGRADED: "Recent probes failed, not enough in a row to call it failing.",
    State.PENDING: "Not checked yet.",
    State.HEALTHY: "Working.",
}

Label = tuple[str, str]


def duration_words(seconds: float) -> str:
    """`45 s`, `12 min`, `3 h 5 min`, `4 d 2 h`: how a person says a span of time."""
    whole = int(max(0.0, seconds))
    if whole < 60:
        return f"{whole} s"
    minutes = whole // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _time(ts: float, text: str) -> str:
    stamp = rfc3339(ts) or ""
    return f'<time datetime="{stamp}" title="{stamp}">{escape(text)}</time>'


def _relative(ts: float | None, now: float) -> str:
    if ts is None:
        return "never"
    if ts <= now:
        return _time(ts, f"{duration_words(now - ts)} ago")
    return _time(ts, f"in {duration_words(ts - now)}")


def _refresh_words(status: ConnectionStatus, now: float) -> str:
    expires = status.refresh_expires_at
    if expires is None:
        return "none"
    if expires <= now:
        return _time(expires, f"died {duration_words(now - expires)} ago")
    return _time(expires, f"dies in {duration_words(expires - now)}")


def _card(status: ConnectionStatus, now: float, reauthorize: bool) -> str:
    info, health = status.info, status.health
    state = health.state
    host = urlparse(info.instance_url).hostname or info.instance_url
    parts = [
        f'<li class="card s-{state.value}" data-id="{escape(info.id)}">',
        f'<p><a class="id" href="/api/v1/connections/{quote(info.id, safe="")}">'
        f"{escape(info.id)}</a> "
        f'<span class="badge">{escape(TITLES[state].lower())}</span></p>',
        f'<p class="for">for {_time(health.since, duration_words(now - health.since))}</p>',
    ]
    if state is not State.HEALTHY and (health.last_reason or health.last_error):
        why = ": ".join(x for x in (health.last_reason, redact_text(health.last_error)) if x)
        parts.append(f'<p class="reason">{escape(why[:300])}</p>')
    probe = "never"
    if health.last_probe_at is not None:
        probe = _relative(health.last_probe_at, now)
        outcome = health.last_probe_reason or "?"
        if health.last_probe_duration is not None:
            outcome += f", {health.last_probe_duration * 1000:.0f} ms"
        probe += f" ({escape(outcome)})"
    parts.append(
        f"<dl><dt>Instance</dt><dd>{escape(host)}</dd>"
        f"<dt>Grant</dt><dd>{escape(info.grant.value)}</dd>"
        f"<dt>Last probe</dt><dd>{probe}</dd>"
        f"<dt>Refresh token</dt><dd>{_refresh_words(status, now)}</dd></dl>"
    )
    if info.labels:
        chips = "".join(f"<li>{escape(k)}={escape(v)}</li>" for k, v in sorted(info.labels.items()))
        parts.append(f'<ul class="chips" aria-label="labels">{chips}</ul>')
    if reauthorize:
        parts.append(
            f'<p><a class="action" href="/connect/{quote(info.id, safe="")}">Re-authorize</a></p>'
        )
    parts.append("</li>")
    return "".join(parts)


def _label_form(all_statuses: Sequence[ConnectionStatus], label: Label | None) -> str:
    pairs = sorted({kv for s in all_statuses for kv in s.info.labels.items()})
    options = ['<option value="">all connections</option>']
    for key, value in pairs[:MAX_LABEL_OPTIONS]:
        text = f"{key}:{value}"
        selected = " selected" if label == (key, value) else ""
        options.append(f'<option value="{escape(text)}"{selected}>{escape(key)}={escape(value)}')
    clear = ' <a href="/">clear filter</a>' if label is not None else ""
    return (
        '<form class="filter" method="get" action="/">'
        f'<label>Label <select name="label">{"".join(options)}</select></label>'
        f"<button>Filter</button>{clear}</form>"
    )


def render_page(
    all_statuses: Sequence[ConnectionStatus],
    *,
    now: float,
    label: Label | None,
    can_reauthorize: Callable[[str], bool],
    connection: str | None = None,
) -> str:
    """The whole status page as HTML; pure, given the fleet and the time. `connection`
    (the link of a Slack message) narrows it to that one connection."""
    shown = list(all_statuses)
    if label is not None:
        shown = [s for s in shown if s.info.labels.get(label[0]) == label[1]]
    if connection is not None:
        shown = [s for s in shown if s.info.id == connection]
    groups: dict[State, list[ConnectionStatus]] = {state: [] for state in STATES_WORST_FIRST}
    for status in shown:
        groups[status.health.state].append(status)
    scope = f" with {escape(label[0])}={escape(label[1])}" if label is not None else ""
    if connection is not None:
        scope += f' · only {escape(connection)} (<a href="/">the whole fleet</a>)'
    head = (
        f'<header><h1>snowmon</h1><p class="sub">{_count(len(shown), "connection")}{scope} · '
        f"as of {_time(now, (rfc3339(now) or '')[:19].replace('T', ' ') + ' UTC')} · "
        f"updates every {REFRESH_SECONDS} s</p></header>"
    )
    tiles = "".join(
        f'<li><a class="tile s-{state.value}{" zero" if not groups[state] else ""}" '
        f'href="#{state.value}"><b>{len(groups[state])}</b>{TITLES[state]}</a></li>'
        for state in STATES_WORST_FIRST
    )
    body = [
        head,
        f'<ul class="tiles" aria-label="Fleet summary">{tiles}</ul>',
        _label_form(all_statuses, label),
    ]
    expiring = expiring_refresh_tokens(shown, now, EXPIRY_WINDOW)
    reauth = {
        s.info.id
        for s in [*expiring, *groups[State.CREDENTIALS_EXPIRED]]
        if can_reauthorize(s.info.id)
    }
    if expiring:
        items = "".join(
            f"<li><b>{escape(s.info.id)}</b> <span>{_refresh_words(s, now)}</span>"
            + (
                '<span class="muted">renews itself</span>'
                if s.can_renew_refresh
                else '<span class="muted">needs a person</span>'
            )
            + (
                f'<a class="action" href="/connect/{quote(s.info.id, safe="")}">Re-authorize</a>'
                if s.info.id in reauth
                else ""
            )
            + "</li>"
            for s in expiring[:MAX_CARDS_PER_GROUP]
        )
        body.append(
            f'<section id="expiring"><h2>Refresh tokens that die within 7 days '
            f'<span class="badge">{len(expiring)}</span></h2><ul class="expiring">{items}</ul>'
            "</section>"
        )
    if not shown:
        body.append('<p class="note">No connections to show.</p>')
    for state in STATES_WORST_FIRST:
        members = sorted(groups[state], key=lambda s: (-s.health.since, s.info.id))
        if not members:
            continue
        cards = "".join(
            _card(s, now, s.info.id in reauth and state is State.CREDENTIALS_EXPIRED)
            for s in members[:MAX_CARDS_PER_GROUP]
        )
        more = (
            f'<p class="note">Showing {MAX_CARDS_PER_GROUP} of {len(members)}: filter by label '
            "or use the API to see the rest.</p>"
            if len(members) > MAX_CARDS_PER_GROUP
            else ""
        )
        listing = f'<ul class="cards">{cards}</ul>{more}'
        if state is State.HEALTHY and len(members) > OPEN_HEALTHY_UP_TO:
            # Problems come first; a long list of fine connections waits behind a click.
            listing = f"<details><summary>Show them</summary>{listing}</details>"
        body.append(
            f'<section id="{state.value}" class="group"><h2>{TITLES[state]} '
            f'<span class="badge">{len(members)}</span></h2>'
            f'<p class="muted">{escape(MEANING[state])}</p>{listing}</section>'
        )
    query = []
    if label is not None:
        query.append("label=" + quote(f"{label[0]}:{label[1]}", safe=""))
    if connection is not None:
        query.append("connection=" + quote(connection, safe=""))
    refresh_url = "/?" + "&".join(query) if query else "/"
    return document(
        "snowmon status", "".join(body), refresh=f"{REFRESH_SECONDS}; url={refresh_url}"
    )


def page_label(request: web.Request) -> Label | None:
    raw = request.query.get("label", "")
    if not raw:
        return None
    key, sep, value = raw.partition(":")
    if not sep or not key:
        raise ApiError(400, "The label filter must look like key:value.")
    return key, value


async def status_page(request: web.Request) -> web.Response:
    label = page_label(request)
    fleet = request.app[FLEET]
    text = render_page(
        fleet.statuses(),
        now=request.app[CLOCK].now(),
        label=label,
        can_reauthorize=lambda cid: fleet.authorize_target(cid) is not None,
        connection=request.query.get("connection") or None,
    )
    return html_response(text)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", status_page)
