"""The Table API: `GET /api/now[/v1|/v2]/table/{table}[/{sys_id}]` as an instance answers.

Bearer tokens are checked against the live token store (a dict lookup: this is the
probe's hot path), then rate-limit rules, ACL faults, the table and the sysparm
parameters. Rendering follows the documented shapes: string values, reference links on
the instance's own base URL, `X-Total-Count`, and the `Link` header with its quirks
(joined by "," without spaces; `prev` on the first page points at offset -1).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
from collections.abc import Mapping
from urllib.parse import urlencode

from monitor.emulator.faults import Faults
from monitor.emulator.fleet import Instance
from monitor.emulator.query import parse
from monitor.emulator.records import Record, Ref, Table, demo_tables
from monitor.emulator.state import FleetState
from monitor.emulator.tokens import ACCESS
from monitor.emulator.wire import (
    Reply,
    acl_denied,
    cancelled_transaction,
    dumps,
    invalid_table,
    no_record,
    not_authenticated,
    query_denied,
    rate_limited,
)

DEFAULT_LIMIT = 10_000
RATE_COMMIT_SECONDS = 30.0  # rate-limit counts are committed every 30 s, so bursts overshoot
RATE_RULE_SYS_ID = "5d1f0c5a1b2a3c4d5e6f708192a3b4c5"


def _true(params: Mapping[str, str], name: str) -> bool:
    return params.get(name, "").lower() == "true"


def authenticate(state: FleetState, instance: Instance, authorization: str | None) -> str | None:
    """The user the request acts as, or None (counted as rejected or expired)."""
    if authorization is None:
        return None
    scheme, _, credential = authorization.partition(" ")
    scheme = scheme.lower()
    credential = credential.strip()
    if scheme == "bearer":
        return _bearer(state, instance, credential)
    if scheme == "basic":
        try:
            username, _, password = base64.b64decode(credential).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if username == instance.username and hmac.compare_digest(password, instance.password):
            return username
    return None


def _bearer(state: FleetState, instance: Instance, token: str) -> str | None:
    record = state.tokens.access.get(token)
    stats = instance.live_stats()
    if record is None:
        minted = state.tokens.recognise(token)
        # forgotten because it expired; anything else was never issued here
        if minted is not None and minted.kind == ACCESS and minted.instance_index == instance.index:
            stats.expired_token_uses += 1
            if minted.client_index < len(instance.clients):
                client_id = instance.clients[minted.client_index].client_id
                stats.client(client_id).expired_token_uses += 1
        else:
            stats.rejected_access_tokens += 1
        return None
    if record.instance is not instance or record.is_revoked():
        stats.rejected_access_tokens += 1
        return None
    if state.clock.now() >= record.expires_at:
        stats.expired_token_uses += 1
        stats.client(record.client.client_id).expired_token_uses += 1
        return None
    return record.user


def _rate_limit(state: FleetState, instance: Instance, user: str, limit: int) -> Reply | None:
    """Apply a per-user hourly rule; returns the 429 or None, and adds the rule headers."""
    now = state.clock.now()
    window = math.floor(now / 3600.0) * 3600.0
    tick = math.floor(now / RATE_COMMIT_SECONDS)
    if instance.rate is None:
        instance.rate = {}
    # [window start, requests counted, requests committed, commit tick]
    counters = instance.rate.get(user)
    if counters is None or counters[0] != window:
        counters = instance.rate[user] = [window, 0.0, 0.0, float(tick)]
    if counters[3] != tick:
        counters[2], counters[3] = counters[1], float(tick)
    reset = window + 3600.0
    headers = [
        ("X-RateLimit-Limit", str(limit)),
        ("X-RateLimit-Reset", str(int(reset))),
        ("X-RateLimit-Rule", RATE_RULE_SYS_ID),
    ]
    if counters[2] >= limit:
        reply = rate_limited(limit)
        reply.headers.extend(headers)
        reply.headers.append(("Retry-After", str(max(1, math.ceil(reset - now)))))
        return reply
    counters[1] += 1
    return Reply(200, b"", headers=headers)


def _render_value(
    value: Ref | str, table: Table, name: str, display: str, links: bool, base_url: str
) -> object:
    if isinstance(value, Ref):
        link = f"{base_url}/api/now/table/{value.table}/{value.sys_id}"
        if display == "true":
            return {"display_value": value.display, "link": link} if links else value.display
        if display == "all":
            if links:
                return {"display_value": value.display, "link": link, "value": value.sys_id}
            return {"display_value": value.display, "value": value.sys_id}
        return {"link": link, "value": value.sys_id} if links else value.sys_id
    if display == "false":
        return value
    shown = table.choices.get(name, {}).get(value, value)
    if display == "true":
        return shown
    return {"display_value": shown, "value": value}


def render_record(
    record: Record,
    table: Table,
    fields: tuple[str, ...],
    display: str,
    links: bool,
    base_url: str,
) -> dict[str, object]:
    rendered: dict[str, object] = {}
    for name in fields:
        value = record.get(name)
        if value is not None:  # unknown fields are ignored
            rendered[name] = _render_value(value, table, name, display, links, base_url)
    return rendered


def _fields(params: Mapping[str, str], table: Table) -> tuple[str, ...]:
    requested = params.get("sysparm_fields", "")
    if not requested:
        return table.columns
    return tuple(name.strip() for name in requested.split(",") if name.strip())


def _int(params: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(params.get(name, ""))
    except ValueError:
        return default


def _link_header(
    resource: str,
    params: Mapping[str, str],
    limit: int,
    offset: int,
    total: int | None,
    full_page: bool,
) -> str:
    kept = [(k, v) for k, v in params.items() if k not in {"sysparm_limit", "sysparm_offset"}]

    def url(at: int) -> str:
        query = urlencode([*kept, ("sysparm_limit", str(limit)), ("sysparm_offset", str(at))])
        return f"<{resource}?{query}>"

    # the first page's prev points at -1, a quirk clients must tolerate
    links = [f'{url(0)};rel="first"', f'{url(offset - limit if offset > 0 else -1)};rel="prev"']
    if (total is not None and offset + limit < total) or (total is None and full_page):
        links.append(f'{url(offset + limit)};rel="next"')
    if total is not None:
        links.append(f'{url(max(0, (total - 1) // limit * limit))};rel="last"')
    return ",".join(links)


def handle(
    state: FleetState,
    instance: Instance,
    authorization: str | None,
    params: Mapping[str, str],
    version: str,
    table_name: str,
    sys_id: str | None,
) -> Reply:
    user = authenticate(state, instance, authorization)
    if user is None:
        return not_authenticated()
    faults: Faults | None = instance.faults
    rate_headers: list[tuple[str, str]] = []
    if faults is not None and faults.rate_limit is not None:
        verdict = _rate_limit(state, instance, user, faults.rate_limit)
        if verdict is not None and verdict.status == 429:
            verdict.logged_in = True
            return verdict
        if verdict is not None:
            rate_headers = verdict.headers
    reply = _answer(state, instance, faults, params, version, table_name, sys_id)
    reply.logged_in = True
    reply.headers.extend(rate_headers)
    return reply


def _answer(
    state: FleetState,
    instance: Instance,
    faults: Faults | None,
    params: Mapping[str, str],
    version: str,
    table_name: str,
    sys_id: str | None,
) -> Reply:
    table = demo_tables(state.options.seed, state.options.username).get(table_name)
    if table is None:
        return invalid_table(table_name)
    if faults is not None and table_name in faults.acl_deny:
        return acl_denied(table_name)
    display = params.get("sysparm_display_value", "false").lower()
    if display not in {"true", "all"}:
        display = "false"
    links = not _true(params, "sysparm_exclude_reference_link")
    fields = _fields(params, table)
    if sys_id is not None:
        record = table.by_id.get(sys_id)
        if record is None:
            return no_record()
        body = render_record(record, table, fields, display, links, instance.base_url)
        return Reply(200, dumps({"result": body}))
    query = parse(params.get("sysparm_query", ""), table.columns)
    if (
        faults is not None
        and faults.deny_query_fields
        and query.fields & set(faults.deny_query_fields)
    ):
        return query_denied()
    matched = query.apply(table.records, table.columns)
    limit = _int(params, "sysparm_limit", DEFAULT_LIMIT)
    if limit <= 0:
        limit = DEFAULT_LIMIT
    offset = max(0, _int(params, "sysparm_offset", 0))
    page = matched[offset : offset + limit]
    if not page and version == "v1":
        return no_record()
    result = [render_record(r, table, fields, display, links, instance.base_url) for r in page]
    if faults is not None and faults.cancelled and state.rng.random() < faults.cancelled:
        reply = Reply(200, cancelled_transaction(dumps(result[: len(result) // 2])))
    else:
        reply = Reply(200, dumps({"result": result}))
    total = None if _true(params, "sysparm_no_count") else len(matched)
    if total is not None:
        reply.headers.append(("X-Total-Count", str(total)))
    if not _true(params, "sysparm_suppress_pagination_header") and (total is None or total > 0):
        resource = (
            f"{instance.base_url}/api/now{'/' + version if version else ''}/table/{table.name}"
        )
        reply.headers.append(
            ("Link", _link_header(resource, params, limit, offset, total, len(page) == limit))
        )
    return reply
