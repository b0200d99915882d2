"""Rendering: a notification (or a group of them) as a Slack message, Block Kit and text.

Pure: `render(notification, links) -> {"text": ..., "blocks": [...]}`, tested against
golden JSON. Every message carries a plain `text` (notifications, screen readers, the
webhook fallback). Times are Slack date tokens, shown in each reader's time zone, with
a UTC fallback. Strings from connections and ServiceNow are escaped for mrkdwn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from monitor.model import Grant
from monitor.notify.catalog import (
    SEVERITY_RANK,
    TITLES,
    Action,
    AlertName,
    Notification,
    Severity,
)
from monitor.notify.routing import Links

Message = dict[str, Any]

EMOJI: Final = {
    Severity.CRITICAL: ":red_circle:",
    Severity.WARNING: ":large_orange_circle:",
    Severity.INFO: ":large_blue_circle:",
}
RESOLVED_EMOJI: Final = ":white_check_mark:"
HEADER_MAX: Final = 150  # Block Kit header text limit
GROUP_LINES_PER_SECTION: Final = 10
GROUP_LINES_MAX: Final = 30

_CREDENTIAL_REASONS: Final = {
    "rejected": "ServiceNow's token endpoint rejected the refresh token or password, "
    "more than once and some time apart.",
    "invalid_client": "ServiceNow does not accept the OAuth client: the client id or secret "
    "is wrong, or the application registry entry was removed.",
    "grant_not_allowed": "The OAuth application no longer allows this grant type.",
    "probe_refused": "The Table API refused an access token obtained moments before.",
    "not_authorized": "Nobody has authorized this connection yet.",
}
_PROBE_REASONS: Final = {
    "timeout": "the Table API did not answer in time",
    "dns": "the instance's host name does not resolve",
    "connect": "the instance refused or dropped the connection",
    "tls": "the TLS handshake failed",
    "reset": "the connection was reset",
    "server_error": "the instance answered with a server error",
    "bad_response": "the instance answered something that is not a Table API response",
    "maintenance": "the instance is in maintenance",
    "invalid_table": "the probe table does not exist",
    "no_token": "there is no usable access token",
    "auth_rejected": "the Table API rejected the access token",
}


def render(n: Notification, links: Links) -> Message:
    """The alert's message: the original post, or its new look after an escalation or
    resolution (the bot edits the original), or a repeat (the webhook posts anew)."""
    resolved = n.action is Action.RESOLVE
    title = TITLES[n.alert]
    emoji = RESOLVED_EMOJI if resolved else EMOJI[n.severity]
    prefix = {Action.RESOLVE: "Resolved: ", Action.REMIND: "Still firing: "}.get(n.action, "")
    header = _cut(f"{emoji} {prefix}{title}: {n.connection_id}", HEADER_MAX)
    fields = [
        f"*Connection*\n{_link(links.connection(n.connection_id), n.connection_id)}",
        f"*Customer*\n{_esc(n.customer) or '-'}",
        f"*Instance*\n{_link(n.instance_url, _host(n.instance_url))}",
        f"*State*\n`{n.state.value}` since {_date(n.state_since)}",
        f"*Severity*\n{n.severity.value}",
        f"*Firing since*\n{_date(n.firing_since)}",
    ]
    if resolved:
        fields[-1] = f"*Resolved*\n{_date(n.at)}, after {duration(n.at - n.firing_since)}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
        {"type": "section", "fields": [_mrkdwn(f) for f in fields]},
        _section(f"*What happened*\n{what_happened(n)}"),
    ]
    if not resolved:
        blocks.append(_section(f"*What to do*\n{what_to_do(n, links)}"))
    link_line = _links_line(n, links)
    if link_line:
        blocks.append({"type": "context", "elements": [_mrkdwn(link_line)]})
    blocks.append(
        {
            "type": "context",
            "elements": [
                _mrkdwn(f"snowmon · `{n.alert.value}` · {n.severity.value} · {_date(n.at)}")
            ],
        }
    )
    state = "RESOLVED" if resolved else n.severity.value.upper()
    text = f"[{state}] {'' if resolved else prefix}{title}: {n.connection_id}"
    if n.customer:
        text += f" ({n.customer})"
    if resolved:
        text += f", after {duration(n.at - n.firing_since)}."
    else:
        text += f". {_plain(what_happened(n))}"
    return {"text": text, "blocks": blocks}


def render_reply(n: Notification) -> Message:
    """The thread reply under the original message (bot only)."""
    title = TITLES[n.alert]
    if n.action is Action.RESOLVE:
        text = f"{RESOLVED_EMOJI} Resolved after {duration(n.at - n.firing_since)}."
    elif n.action is Action.ESCALATE:
        was = n.previous_severity.value if n.previous_severity else "lower"
        text = f"{EMOJI[n.severity]} Now {n.severity.value} (was {was}): {what_happened(n)}"
    else:
        text = (
            f":bell: Still firing: {title} on {_esc(n.connection_id)} since "
            f"{_date(n.firing_since)} ({duration(n.at - n.firing_since)})."
        )
    return {"text": _plain(text), "blocks": [_section(text)]}


def what_happened(n: Notification) -> str:
    detail = f" ServiceNow said: `{_esc(n.detail)}`" if n.detail else ""
    if n.alert is AlertName.CREDENTIALS_EXPIRED:
        base = _CREDENTIAL_REASONS.get(n.reason, "ServiceNow rejected the credentials.")
        return base + detail
    if n.alert is AlertName.REFRESH_EXPIRING:
        if n.refresh_expires_at is None:
            return "The refresh token expires soon, and this grant cannot renew it by itself."
        left = n.refresh_expires_at - n.at
        when = _date(n.refresh_expires_at)
        if left <= 0:
            return f"The refresh token expired {when}; this grant cannot renew it by itself."
        return (
            f"The refresh token expires {when} (in {duration(left)}), "
            "and this grant cannot renew it by itself."
        )
    if n.alert is AlertName.PROBE_FAILING:
        why = _PROBE_REASONS.get(n.reason, f"the probe failed ({_esc(n.reason)})")
        return f"The last {n.consecutive_failures} probes failed: {why}.{detail}"
    if n.alert is AlertName.FORBIDDEN:
        return (
            "The Table API answered 403: the integration user lacks a role or an ACL to "
            f"read the probe table, or the token's OAuth scope does not cover it.{detail}"
        )
    if n.alert is AlertName.RATE_LIMITED:
        return (
            "ServiceNow has been answering 429 (rate limited) since "
            f"{_date(n.state_since)}.{detail}"
        )
    return "The instance is hibernating: a developer instance sleeps when nobody uses it."


def what_to_do(n: Notification, links: Links) -> str:
    reauthorize = links.reauthorize(n.connection_id)
    if n.alert in (AlertName.CREDENTIALS_EXPIRED, AlertName.REFRESH_EXPIRING):
        if n.grant is Grant.AUTHORIZATION_CODE:
            where = f" on {_link(reauthorize, 'the connect page')}" if reauthorize else ""
            soon = " before then" if n.alert is AlertName.REFRESH_EXPIRING else ""
            return f"Re-authorize the connection{where}{soon}."
        if n.grant is Grant.PASSWORD:
            return (
                "Check the integration user's password (locked out? rotated?) and the OAuth "
                "client secret, update them in snowmon's configuration, then reload it."
            )
        return "Check the OAuth client id and secret in ServiceNow and in snowmon's configuration."
    if n.alert is AlertName.PROBE_FAILING:
        return "Check that the instance is up and reachable from snowmon (status.servicenow.com)."
    if n.alert is AlertName.FORBIDDEN:
        return "Give the integration user read access to the probe table, or fix the scope."
    if n.alert is AlertName.RATE_LIMITED:
        return "Check the instance's REST API rate limit rules for the integration user."
    return "Wake the instance on developer.servicenow.com, or expect it to wake on use."


# -- groups --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupMember:
    connection_id: str
    alert: AlertName
    severity: Severity
    firing_since: float
    customer: str = ""


@dataclass(frozen=True, slots=True)
class GroupView:
    channel: str
    opened_at: float
    at: float
    firing: Sequence[GroupMember]
    total: int  # members ever, resolved ones included
    threshold: int
    window: float


def render_group(view: GroupView, links: Links) -> Message:
    firing = sorted(
        view.firing, key=lambda m: (SEVERITY_RANK[m.severity], m.firing_since, m.connection_id)
    )
    resolved = view.total - len(firing)
    counts = _counts(firing)
    if firing:
        emoji = EMOJI[firing[0].severity]
        title = f"{emoji} {len(firing)} connections alerting"
    else:
        title = f"{RESOLVED_EMOJI} Resolved: all {view.total} connections recovered"
    if view.channel and firing:
        title += f" in {view.channel}"
    summary = " · ".join(f"*{TITLES[a]}* {c}" for a, c in counts)
    if resolved:
        summary = f"{summary} · *resolved* {resolved} of {view.total}".lstrip(" ·")
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _cut(title, HEADER_MAX), "emoji": True},
        },
        _section(summary or f"{view.total} connections"),
    ]
    lines = [_member_line(m, links) for m in firing[:GROUP_LINES_MAX]]
    for start in range(0, len(lines), GROUP_LINES_PER_SECTION):
        blocks.append(_section("\n".join(lines[start : start + GROUP_LINES_PER_SECTION])))
    notes = [
        f"Grouped: more than {view.threshold} alerts within {duration(view.window)} "
        f"since {_date(view.opened_at)}."
    ]
    if len(firing) > GROUP_LINES_MAX:
        more = f"…and {len(firing) - GROUP_LINES_MAX} more"
        page = links.status_page()
        notes.insert(0, f"{more} on {_link(page, 'the status page')}." if page else f"{more}.")
    blocks.append({"type": "context", "elements": [_mrkdwn(n) for n in notes]})
    text_counts = ", ".join(f"{c} {TITLES[a].lower()}" for a, c in counts)
    if firing:
        text = f"[{firing[0].severity.value.upper()}] {len(firing)} connections alerting"
        text += f": {text_counts}" if text_counts else ""
    else:
        text = f"[RESOLVED] all {view.total} connections recovered"
    if resolved and firing:
        text += f"; {resolved} of {view.total} resolved"
    return {"text": text + ".", "blocks": blocks}


def render_group_reply(view: GroupView, action: Action) -> Message:
    if action is Action.RESOLVE:
        text = (
            f"{RESOLVED_EMOJI} All {view.total} connections recovered, "
            f"{duration(view.at - view.opened_at)} after the first alert."
        )
    else:
        text = (
            f":bell: Still firing: {len(view.firing)} of {view.total} connections, "
            f"since {_date(view.opened_at)}."
        )
    return {"text": _plain(text), "blocks": [_section(text)]}


def _member_line(m: GroupMember, links: Links) -> str:
    who = _link(links.connection(m.connection_id), m.connection_id)
    customer = f" · {_esc(m.customer)}" if m.customer else ""
    since = _date(m.firing_since)
    return f"{EMOJI[m.severity]} {who} · {TITLES[m.alert]}{customer} · since {since}"


def _counts(members: Sequence[GroupMember]) -> list[tuple[AlertName, int]]:
    counts: dict[AlertName, int] = {}
    for m in members:
        counts[m.alert] = counts.get(m.alert, 0) + 1
    return sorted(counts.items(), key=lambda item: (-item[1], item[0].value))


# -- text helpers --------------------------------------------------------------------------


def duration(seconds: float) -> str:
    """Two units at most: "3 d 4 h", "2 h 13 min", "45 s"."""
    s = max(0, int(seconds))
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def _date(ts: float) -> str:
    fallback = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(ts)}^{{date_short_pretty}} {{time}}|{fallback}>"


def _esc(text: str) -> str:
    # Slack's mrkdwn needs only these three escaped; anything else is shown as is.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(url: str, label: str) -> str:
    return f"<{url}|{_esc(label)}>" if url else _esc(label)


def _host(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[0]


def _links_line(n: Notification, links: Links) -> str:
    parts = []
    status = links.connection(n.connection_id)
    if status:
        parts.append(f"<{status}|Status page>")
    needs_person = n.alert in (AlertName.CREDENTIALS_EXPIRED, AlertName.REFRESH_EXPIRING)
    reauthorize = links.reauthorize(n.connection_id)
    if needs_person and n.grant is Grant.AUTHORIZATION_CODE and reauthorize:
        parts.append(f"<{reauthorize}|Re-authorize>")
    runbook = links.runbook(n.alert)
    if runbook:
        parts.append(f"<{runbook}|Runbook>")
    return " · ".join(parts)


def _plain(mrkdwn: str) -> str:
    """A text fallback: Slack tokens reduced to what they show."""
    out = []
    rest = mrkdwn
    while "<" in rest:
        head, _, tail = rest.partition("<")
        token, sep, rest = tail.partition(">")
        out.append(head)
        if not sep:
            out.append("<" + token)
            break
        out.append(token.rsplit("|", 1)[-1] if "|" in token else token)
    out.append(rest)
    return "".join(out).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(_cut(text, 3000))}
