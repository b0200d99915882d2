"""Writes snowmon's Grafana dashboards (the *.json beside this file).

The JSON files are what Grafana provisions and what people import; this script is where
they are edited, so the three dashboards share one layout, one set of variables and one
way of writing queries:

    python dashboards/generate.py           # rewrite the JSON files
    python dashboards/generate.py --check   # exit 1 if they differ from what it would write

Conventions (checked by tests/assets/test_dashboards.py, after grafana/dashboard-linter):
classic dashboard JSON, schemaVersion 39, a fixed uid, one `datasource` variable of type
datasource and every panel on `${datasource}`, `job` and `instance` variables and both
matchers in every selector, a unit and a description on every panel, `rate()` over
`$__rate_interval`, counters only inside `rate()`/`increase()`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'job=~"$job", instance=~"$instance"'
CONN = f'{SEL}, connection="$connection"'
RATE = "$__rate_interval"
SLO_TARGET = 0.995  # alerts/snowmon.rules.yml: probe-success SLO
DAY = 86400
WEEK = 7 * DAY

Json = dict[str, Any]

STATE_COLORS = {
    "healthy": "green",
    "pending": "text",
    "degraded": "yellow",
    "rate_limited": "orange",
    "failing": "red",
    "credentials_expired": "dark-red",
    "forbidden": "purple",
    "hibernating": "blue",
}


# --- building blocks ------------------------------------------------------------------


def target(
    expr: str,
    legend: str = "",
    *,
    instant: bool = False,
    exemplar: bool = False,
    table: bool = False,
) -> Json:
    out: Json = {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
    }
    if exemplar:
        out["exemplar"] = True
    if table:
        out["format"] = "table"
    return out


def thresholds(*steps: tuple[float | None, str]) -> Json:
    return {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for value, color in steps],
    }


def by_name(name: str, **properties: Any) -> Json:
    return {
        "matcher": {"id": "byName", "options": name},
        "properties": [{"id": key, "value": value} for key, value in properties.items()],
    }


def state_colors() -> list[Json]:
    return [
        by_name(state, color={"mode": "fixed", "fixedColor": color})
        for state, color in STATE_COLORS.items()
    ]


def panel(
    kind: str,
    title: str,
    description: str,
    unit: str,
    targets: list[Json],
    *,
    size: tuple[int, int],
    defaults: Json | None = None,
    overrides: list[Json] | None = None,
    options: Json | None = None,
    transformations: list[Json] | None = None,
) -> Json:
    field_defaults: Json = {"unit": unit}
    field_defaults.update(defaults or {})
    out: Json = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(targets)],
        "fieldConfig": {"defaults": field_defaults, "overrides": overrides or []},
        "options": options or {},
        "_size": size,
    }
    if transformations:
        out["transformations"] = transformations
    return out


def timeseries(
    title: str,
    description: str,
    unit: str,
    targets: list[Json],
    *,
    size: tuple[int, int] = (12, 8),
    stack: bool = False,
    min_zero: bool = True,
    defaults: Json | None = None,
    overrides: list[Json] | None = None,
    legend_calcs: tuple[str, ...] = ("mean", "max", "lastNotNull"),
) -> Json:
    custom: Json = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 60 if stack else 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
    }
    field: Json = {"custom": custom}
    if min_zero:
        field["min"] = 0
    field.update(defaults or {})
    return panel(
        "timeseries",
        title,
        description,
        unit,
        targets,
        size=size,
        defaults=field,
        overrides=overrides,
        options={
            "legend": {
                "displayMode": "table",
                "placement": "bottom",
                "showLegend": True,
                "calcs": list(legend_calcs),
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    )


def stat(
    title: str,
    description: str,
    unit: str,
    expr: str,
    *,
    steps: Json | None = None,
    legend: str = "",
    text_mode: str = "value",
    size: tuple[int, int] = (4, 4),
    color_mode: str = "background",
    defaults: Json | None = None,
) -> Json:
    field: Json = {
        "thresholds": steps or thresholds((None, "green")),
        "color": {"mode": "thresholds"},
    }
    field.update(defaults or {})
    return panel(
        "stat",
        title,
        description,
        unit,
        [target(expr, legend, instant=True)],
        size=size,
        defaults=field,
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": color_mode,
            "graphMode": "none",
            "textMode": text_mode,
            "justifyMode": "auto",
            "orientation": "auto",
            "wideLayout": True,
        },
    )


def table(
    title: str,
    description: str,
    unit: str,
    expr: str,
    *,
    rename: dict[str, str],
    sort_by: str,
    size: tuple[int, int] = (12, 8),
    steps: Json | None = None,
) -> Json:
    value_column = rename.get("Value", "Value")
    overrides = []
    if steps is not None:
        overrides.append(
            by_name(
                value_column,
                **{
                    "custom.cellOptions": {"type": "color-background", "mode": "basic"},
                    "thresholds": steps,
                },
            )
        )
    keep = list(rename)
    return panel(
        "table",
        title,
        description,
        unit,
        [target(expr, instant=True, table=True)],
        size=size,
        defaults={"custom": {"align": "auto", "filterable": True}},
        overrides=overrides,
        options={
            "showHeader": True,
            "cellHeight": "sm",
            "footer": {"show": False, "reducer": ["sum"], "fields": ""},
            "sortBy": [{"displayName": sort_by, "desc": False}],
        },
        transformations=[
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True, "__name__": True, "job": True, "state": True},
                    "indexByName": {name: i for i, name in enumerate(keep)},
                    "renameByName": rename,
                },
            }
        ],
    )


def state_timeline(
    title: str,
    description: str,
    targets: list[Json],
    *,
    mappings: list[Json],
    overrides: list[Json] | None = None,
    size: tuple[int, int] = (24, 5),
) -> Json:
    return panel(
        "state-timeline",
        title,
        description,
        "none",
        targets,
        size=size,
        defaults={
            "color": {"mode": "thresholds"},
            "thresholds": thresholds((None, "green")),
            "mappings": mappings,
            "custom": {"fillOpacity": 80, "lineWidth": 0},
        },
        overrides=overrides,
        options={
            "mergeValues": True,
            "showValue": "never",
            "alignValue": "left",
            "rowHeight": 0.8,
            "legend": {"showLegend": False, "displayMode": "list", "placement": "bottom"},
            "tooltip": {"mode": "single", "sort": "none"},
        },
    )


def row(title: str) -> Json:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "_size": (24, 1)}


def layout(panels: list[Json]) -> list[Json]:
    """Flow panels left to right, wrapping at Grafana's 24 columns; number them."""
    x = y = line_height = 0
    out = []
    for number, spec in enumerate(panels, start=1):
        width, height = spec.pop("_size")
        if x + width > 24 or spec["type"] == "row":
            x, y, line_height = 0, y + line_height, 0
        out.append({"id": number, "gridPos": {"h": height, "w": width, "x": x, "y": y}, **spec})
        x += width
        line_height = max(line_height, height)
        if spec["type"] == "row":
            x, y, line_height = 0, y + height, 0
    return out


def query_variable(name: str, label: str, query: str, *, multi: bool) -> Json:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {
            "qryType": 1,
            "query": query,
            "refId": "PrometheusVariableQueryEditor-VariableQuery",
        },
        "refresh": 2,  # on time range change
        "regex": "",
        "sort": 1,
        "multi": multi,
        "includeAll": multi,
        **({"allValue": ".+"} if multi else {}),
        "current": {},
        "options": [],
        "hide": 0,
    }


def variables(*extra: Json) -> Json:
    datasource = {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "regex": "",
        "current": {},
        "options": [],
        "refresh": 1,
        "hide": 0,
        "multi": False,
        "includeAll": False,
    }
    return {
        "list": [
            datasource,
            query_variable("job", "Job", "label_values(snowmon_build_info, job)", multi=True),
            query_variable(
                "instance",
                "Instance",
                'label_values(snowmon_build_info{job=~"$job"}, instance)',
                multi=True,
            ),
            *extra,
        ]
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[Json],
    *,
    templating: Json,
    links: list[Json] | None = None,
) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["snowmon", "servicenow"],
        "editable": False,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "utc",
        "weekStart": "",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "title": "snowmon dashboards",
                "type": "dashboards",
                "tags": ["snowmon"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            },
            *(links or []),
        ],
        "templating": templating,
        "panels": layout(panels),
    }


# --- the dashboards -------------------------------------------------------------------


def fleet() -> Json:
    expiring = thresholds((None, "red"), (DAY, "orange"), (WEEK, "green"))
    panels = [
        row("Now"),
        stat(
            "Connections",
            "Connections in the configuration of the selected fleets (replicas sharing a"
            " fleet through PostgreSQL are one job and count once).",
            "none",
            f"sum(max by (job) (snowmon_connections_configured{{{SEL}}}))",
            color_mode="none",
        ),
        stat(
            "Healthy",
            "Connections whose last probes succeeded (state healthy).",
            "none",
            f'sum(snowmon_connections{{{SEL}, state="healthy"}})',
            color_mode="none",
        ),
        stat(
            "Credentials expired now",
            "Connections ServiceNow no longer accepts the credentials of (state"
            " credentials_expired): a person must re-authorize them. Alert:"
            " ServiceNowCredentialsExpired.",
            "none",
            f'sum(snowmon_connections{{{SEL}, state="credentials_expired"}})',
            steps=thresholds((None, "green"), (1, "red")),
        ),
        stat(
            "Failing or forbidden",
            "Connections whose probes keep failing (states failing and forbidden).",
            "none",
            f'sum(snowmon_connections{{{SEL}, state=~"failing|forbidden"}})',
            steps=thresholds((None, "green"), (1, "red")),
        ),
        stat(
            "Refresh tokens dying within 7 days",
            "Connections whose refresh token expires within 7 days. Needs the per-connection"
            " metrics (telemetry.per_connection_metrics). Alert:"
            " ServiceNowRefreshTokenExpiringSoon.",
            "none",
            f"count((snowmon_refresh_token_expiry_timestamp_seconds{{{SEL}}} - time()) < {WEEK})"
            " or vector(0)",
            steps=thresholds((None, "green"), (1, "orange")),
        ),
        stat(
            "Probe success (time range)",
            f"Share of probes that succeeded over the dashboard's time range. The SLO is"
            f" {SLO_TARGET:.1%}.",
            "percentunit",
            f'sum(increase(snowmon_probes_total{{{SEL}, result="success"}}[$__range]))'
            f" / sum(increase(snowmon_probes_total{{{SEL}}}[$__range]))",
            steps=thresholds((None, "red"), (0.99, "orange"), (SLO_TARGET, "green")),
            defaults={"decimals": 2},
        ),
        row("Connections"),
        timeseries(
            "Connections by state",
            "How many connections are in each health state. pending: not probed yet;"
            " degraded: some recent probes failed; failing: the last probes all failed;"
            " credentials_expired, forbidden, rate_limited, hibernating: what ServiceNow"
            " said.",
            "none",
            [target(f"sum by (state) (snowmon_connections{{{SEL}}})", "{{state}}")],
            stack=True,
            overrides=state_colors(),
            legend_calcs=("lastNotNull", "max"),
        ),
        table(
            "Refresh tokens dying soonest",
            "The 25 refresh tokens that expire first, soonest first. ServiceNow refresh"
            " tokens die at issue time + lifespan however often they are used; password"
            " grants renew theirs at 80 % of their life, authorization-code connections"
            " need a person to run the connect flow again.",
            "dtdurations",
            f"sort(bottomk(25, snowmon_refresh_token_expiry_timestamp_seconds{{{SEL}}} - time()))",
            rename={"connection": "Connection", "instance": "Watched by", "Value": "Expires in"},
            sort_by="Expires in",
            steps=expiring,
        ),
        table(
            "Connections with expired credentials",
            "Connections in state credentials_expired now, and since when: re-authorize"
            " them (connect flow) or fix their secret. Runbook: ServiceNowCredentialsExpired.",
            "dateTimeFromNow",
            f"snowmon_connection_state_since_timestamp_seconds{{{SEL}}} * 1000"
            " and on (job, instance, connection)"
            f' snowmon_connection_state{{{SEL}, state="credentials_expired"}} == 1',
            rename={"connection": "Connection", "instance": "Watched by", "Value": "Since"},
            sort_by="Since",
            size=(24, 6),
        ),
        row("Probes"),
        timeseries(
            "Probe success ratio",
            f"Share of probes that succeeded, per job. The dashed line is the SLO"
            f" ({SLO_TARGET:.1%}); the burn-rate alerts (ServiceNowProbeErrorBudgetBurn)"
            f" fire when it is missed fast.",
            "percentunit",
            [
                target(
                    f'sum by (job) (rate(snowmon_probes_total{{{SEL}, result="success"}}[{RATE}]))'
                    f" / sum by (job) (rate(snowmon_probes_total{{{SEL}}}[{RATE}]))",
                    "{{job}}",
                )
            ],
            min_zero=False,
            defaults={
                "max": 1,
                "thresholds": thresholds((None, "red"), (SLO_TARGET, "transparent")),
                "custom": {
                    "drawStyle": "line",
                    "lineWidth": 1,
                    "fillOpacity": 0,
                    "showPoints": "never",
                    "spanNulls": False,
                    "stacking": {"mode": "none", "group": "A"},
                    "thresholdsStyle": {"mode": "dashed"},
                },
            },
        ),
        timeseries(
            "Probe latency percentiles",
            "Duration of successful probes (a one-row Table API read), 50th, 90th and 99th"
            " percentile across the fleet. The dots are exemplars: click one to open its"
            " trace. Alert: ServiceNowProbeLatencyHigh (per connection, > 2.5 s).",
            "s",
            [
                target(
                    f"histogram_quantile({q}, sum by (le) (rate("
                    f'snowmon_probe_latency_seconds_bucket{{{SEL}, result="success"}}[{RATE}])))',
                    f"p{int(q * 100)}",
                    exemplar=q == 0.99,
                )
                for q in (0.5, 0.9, 0.99)
            ],
        ),
        timeseries(
            "Probe failures by reason",
            "Failed probes per second by what ServiceNow (or the network) answered:"
            " auth_rejected, forbidden, rate_limited, hibernating, maintenance,"
            " server_error, timeout, dns, connect, tls, reset, bad_response, no_token, ...",
            "reqps",
            [
                target(
                    f"sum by (reason) (rate(snowmon_probe_failures_total{{{SEL}}}[{RATE}])) > 0",
                    "{{reason}}",
                )
            ],
            stack=True,
        ),
        timeseries(
            "Probes by result",
            "Probes per second, successful and failed.",
            "reqps",
            [
                target(
                    f"sum by (result) (rate(snowmon_probes_total{{{SEL}}}[{RATE}]))",
                    "{{result}}",
                )
            ],
            stack=True,
            overrides=[
                by_name("success", color={"mode": "fixed", "fixedColor": "green"}),
                by_name("failure", color={"mode": "fixed", "fixedColor": "red"}),
            ],
        ),
        row("Tokens, rate limits and notifications"),
        timeseries(
            "Token requests by grant and result",
            "Calls to the token endpoint per second: refreshes (grant refresh_token) and"
            " new grants, by result. rejected means ServiceNow refused the credential;"
            " transient are 5xx, 429, timeouts and resets, retried with backoff.",
            "reqps",
            [
                target(
                    "sum by (grant, result) (rate("
                    f"snowmon_token_requests_total{{{SEL}}}[{RATE}])) > 0",
                    "{{grant}} {{result}}",
                )
            ],
            size=(8, 8),
        ),
        timeseries(
            "Rate limiting",
            "Probes answered with HTTP 429 per second. The integration user has used its"
            " inbound REST rate limit; every integration sharing it is throttled too."
            " Alert: ServiceNowRateLimited.",
            "reqps",
            [
                target(
                    "sum(rate(snowmon_probe_failures_total"
                    f'{{{SEL}, reason="rate_limited"}}[{RATE}]))',
                    "rate-limited probes",
                )
            ],
            size=(8, 8),
        ),
        timeseries(
            "Slack notifications",
            "Slack messages per second by result: sent, failed (after retries), dropped"
            " (queue full), suppressed (maintenance window, inhibited, grouped). Alert:"
            " SnowmonSlackNotificationsFailing.",
            "reqps",
            [
                target(
                    f"sum by (result) (rate(snowmon_notifications_total{{{SEL}}}[{RATE}]))",
                    "{{result}}",
                )
            ],
            size=(8, 8),
        ),
    ]
    return dashboard(
        "snowmon-fleet",
        "snowmon / Fleet overview",
        "The ServiceNow connections snowmon keeps alive: states, expiring credentials,"
        " probes, token refreshes, rate limits and Slack notifications.",
        panels,
        templating=variables(),
    )


def connection() -> Json:
    expiring = thresholds((None, "red"), (DAY, "orange"), (WEEK, "green"))
    state_mappings = [
        {
            "type": "value",
            "options": {"1": {"text": "in state", "index": 0}},
        }
    ]
    result_mappings = [
        {
            "type": "value",
            "options": {
                "0": {"text": "failure", "color": "red", "index": 0},
                "1": {"text": "success", "color": "green", "index": 1},
            },
        }
    ]
    connection_variable = query_variable(
        "connection",
        "Connection",
        f"label_values(snowmon_connection_state{{{SEL}}}, connection)",
        multi=False,
    )
    jaeger = {
        "name": "jaeger_url",
        "label": "Jaeger UI",
        "type": "textbox",
        "query": "http://localhost:16686",
        "current": {"text": "http://localhost:16686", "value": "http://localhost:16686"},
        "options": [],
        "hide": 0,
    }
    panels = [
        row("Now"),
        stat(
            "State",
            "The connection's health state now (see the fleet dashboard for what each"
            " state means).",
            "none",
            f"snowmon_connection_state{{{CONN}}} == 1",
            legend="{{state}}",
            text_mode="name",
            color_mode="none",
        ),
        stat(
            "In this state since",
            "When the connection entered its current state.",
            "dateTimeFromNow",
            f"snowmon_connection_state_since_timestamp_seconds{{{CONN}}} * 1000",
            color_mode="none",
        ),
        stat(
            "Access token expires in",
            "Time left on the current access token; snowmon refreshes it at 60-70 % of its"
            " life, so this never gets close to zero while all is well.",
            "dtdurations",
            f"snowmon_access_token_expiry_timestamp_seconds{{{CONN}}} - time()",
            steps=thresholds((None, "red"), (60, "green")),
        ),
        stat(
            "Refresh token expires in",
            "Time left on the current refresh token. No value: the grant has none"
            " (client_credentials) or there is no token yet.",
            "dtdurations",
            f"snowmon_refresh_token_expiry_timestamp_seconds{{{CONN}}} - time()",
            steps=expiring,
        ),
        stat(
            "Last probe HTTP status",
            "HTTP status code of the last probe answer; 0 when none came (timeout, DNS,"
            " connection refused or reset, no usable token).",
            "none",
            f"snowmon_probe_http_status_code{{{CONN}}}",
            steps=thresholds((None, "red"), (200, "green"), (300, "red")),
        ),
        stat(
            "Last probe took",
            "Duration of the last probe of the connection.",
            "s",
            f"snowmon_probe_duration_seconds{{{CONN}}}",
            steps=thresholds((None, "green"), (1, "orange"), (2.5, "red")),
        ),
        row("History"),
        state_timeline(
            "State timeline",
            "The connection's health state over time, one line per state it was in.",
            [target(f"max by (state) (snowmon_connection_state{{{CONN}}}) == 1", "{{state}}")],
            mappings=state_mappings,
            overrides=state_colors(),
            size=(24, 6),
        ),
        state_timeline(
            "Probe results",
            "Whether each probe succeeded. Why one failed is in the HTTP status below, in"
            " the state, and in GET /api/v1/connections/$connection (last_reason,"
            " last_error); the `reason` counters have no connection label.",
            [target(f"snowmon_probe_success{{{CONN}}}", "last probe")],
            mappings=result_mappings,
            size=(24, 3),
        ),
        timeseries(
            "Probe latency",
            "Duration of this connection's last probe, against the fleet's 90th percentile"
            " (its dots are exemplars: click one for the trace). Alert:"
            " ServiceNowProbeLatencyHigh.",
            "s",
            [
                target(f"snowmon_probe_duration_seconds{{{CONN}}}", "$connection"),
                target(
                    "histogram_quantile(0.9, sum by (le) (rate("
                    f'snowmon_probe_latency_seconds_bucket{{{SEL}, result="success"}}[{RATE}])))',
                    "fleet p90",
                    exemplar=True,
                ),
            ],
        ),
        timeseries(
            "Last probe HTTP status",
            "HTTP status of the last probe answer over time; 0 = no answer.",
            "none",
            [target(f"snowmon_probe_http_status_code{{{CONN}}}", "status")],
            defaults={"decimals": 0},
        ),
        timeseries(
            "Token expiry countdowns",
            "Time left on the access token (a saw tooth: each refresh resets it) and on the"
            " refresh token (falls for days, jumps when renewed). Alert:"
            " ServiceNowRefreshTokenExpiringSoon at 7 days and 1 day.",
            "s",
            [
                target(
                    f"snowmon_access_token_expiry_timestamp_seconds{{{CONN}}} - time()",
                    "access token",
                ),
                target(
                    f"snowmon_refresh_token_expiry_timestamp_seconds{{{CONN}}} - time()",
                    "refresh token",
                ),
            ],
            min_zero=False,
        ),
        timeseries(
            "Probe failures by reason (all connections)",
            "Failed probes per second by reason across the connections of the selected"
            " processes, for context: the reason counters carry no connection label, so"
            " this connection's reason is in the State timeline and the API.",
            "reqps",
            [
                target(
                    f"sum by (reason) (rate(snowmon_probe_failures_total{{{SEL}}}[{RATE}])) > 0",
                    "{{reason}}",
                )
            ],
            stack=True,
        ),
    ]
    return dashboard(
        "snowmon-connection",
        "snowmon / Connection",
        "One ServiceNow connection: its state over time, probe latency and results, token"
        " expiry countdowns, and links to its traces.",
        panels,
        templating=variables(connection_variable, jaeger),
        links=[
            {
                "title": "Traces of $connection (Jaeger)",
                "type": "link",
                "url": "${jaeger_url}/search?service=snowmon&limit=50"
                "&tags=%7B%22snowmon.connection%22%3A%22${connection}%22%7D",
                "icon": "external link",
                "targetBlank": True,
                "includeVars": False,
                "keepTime": False,
                "asDropdown": False,
                "tags": [],
                "tooltip": "Spans with attribute snowmon.connection = $connection",
            }
        ],
    )


def daemon() -> Json:
    panels = [
        row("Work"),
        timeseries(
            "Scheduler lag",
            "How late probes and refreshes started compared with when they were due, 50th"
            " and 99th percentile by kind. Growing lag means more work than the process can"
            " start on time. Alert: SnowmonSchedulerLagging (p99 > 2.5 s).",
            "s",
            [
                target(
                    f"histogram_quantile({q}, sum by (kind, le) (rate("
                    f"snowmon_scheduler_lag_seconds_bucket{{{SEL}}}[{RATE}])))",
                    f"{{{{kind}}}} p{int(q * 100)}",
                )
                for q in (0.5, 0.99)
            ],
        ),
        timeseries(
            "First runs after a start",
            "How long a start's first grants and probes waited for a slot once they could"
            " start (99th percentile by kind). A large fleet starts as fast as the process"
            " goes: this is the start's progress, not lag.",
            "s",
            [
                target(
                    "histogram_quantile(0.99, sum by (kind, le) (rate("
                    f"snowmon_scheduler_first_run_wait_seconds_bucket{{{SEL}}}[{RATE}])))",
                    "{{kind}} wait p99",
                ),
            ],
        ),
        timeseries(
            "Event-loop lag",
            "How late the asyncio event loop ran a callback that asked to run on time"
            " (highest value per interval). Tens of milliseconds delay every request of the"
            " process.",
            "s",
            [
                target(
                    f"max_over_time(snowmon_event_loop_lag_seconds{{{SEL}}}[{RATE}])",
                    "{{instance}}",
                )
            ],
        ),
        row("HTTP client"),
        timeseries(
            "Connections in use",
            "HTTP client connections taken from the keep-alive pool and not yet released"
            " (limits: http.pool_limit, http.pool_limit_per_host).",
            "none",
            [target(f"snowmon_http_client_connections_in_use{{{SEL}}}", "{{instance}}")],
            size=(8, 8),
        ),
        timeseries(
            "Outgoing requests",
            "Outgoing HTTP requests per second by target (token endpoint, Table API, Slack)"
            " and status class.",
            "reqps",
            [
                target(
                    "sum by (target, status_class) (rate("
                    f"snowmon_http_client_request_duration_seconds_count{{{SEL}}}[{RATE}])) > 0",
                    "{{target}} {{status_class}}",
                )
            ],
            size=(8, 8),
        ),
        timeseries(
            "Outgoing request latency p99",
            "99th percentile of outgoing request duration up to the response headers, by"
            " target. The dots are exemplars: click one for its trace.",
            "s",
            [
                target(
                    "histogram_quantile(0.99, sum by (target, le) (rate("
                    f"snowmon_http_client_request_duration_seconds_bucket{{{SEL}}}[{RATE}])))",
                    "{{target}}",
                    exemplar=True,
                )
            ],
            size=(8, 8),
        ),
        row("Telemetry export"),
        timeseries(
            "Export failures",
            "Failed calls to the OpenTelemetry collector per second, by signal. Monitoring"
            " goes on without it. Alert: SnowmonTelemetryExportFailing.",
            "reqps",
            [
                target(
                    "sum by (signal) (rate("
                    f"snowmon_telemetry_export_failures_total{{{SEL}}}[{RATE}]))",
                    "{{signal}}",
                )
            ],
        ),
        timeseries(
            "Dropped telemetry",
            "Spans dropped before reaching the collector per second, by reason (queue_full,"
            " export_failed, shutdown).",
            "ops",
            [
                target(
                    "sum by (signal, reason) (rate("
                    f"snowmon_telemetry_dropped_total{{{SEL}}}[{RATE}]))",
                    "{{signal}} {{reason}}",
                )
            ],
        ),
        row("Process"),
        timeseries(
            "Resident memory",
            "Resident set size of each snowmon process.",
            "bytes",
            [target(f"process_resident_memory_bytes{{{SEL}}}", "{{instance}}")],
            size=(8, 8),
        ),
        timeseries(
            "Memory per connection",
            "Resident memory divided by the connections each process keeps (its share of"
            " a fleet shared by replicas): a few kilobytes per connection is the design"
            " target.",
            "bytes",
            [
                target(
                    f"process_resident_memory_bytes{{{SEL}}}"
                    f" / on (job, instance) sum by (job, instance) (snowmon_connections{{{SEL}}})",
                    "{{instance}}",
                )
            ],
            size=(8, 8),
        ),
        timeseries(
            "CPU",
            "CPU time used per second (1 = one core busy).",
            "percentunit",
            [
                target(
                    f"rate(process_cpu_seconds_total{{{SEL}}}[{RATE}])",
                    "{{instance}}",
                )
            ],
            size=(8, 8),
        ),
        timeseries(
            "Garbage collections",
            "Python garbage collections per second, by generation.",
            "ops",
            [
                target(
                    f"sum by (generation) (rate(python_gc_collections_total{{{SEL}}}[{RATE}]))",
                    "generation {{generation}}",
                )
            ],
            size=(8, 8),
        ),
        timeseries(
            "File descriptors",
            "Open file descriptors as a share of the limit: each pooled connection holds one.",
            "percentunit",
            [
                target(
                    f"process_open_fds{{{SEL}}} / process_max_fds{{{SEL}}}",
                    "{{instance}}",
                )
            ],
            size=(8, 8),
        ),
        stat(
            "Version",
            "snowmon version of each process.",
            "none",
            f"snowmon_build_info{{{SEL}}}",
            legend="{{instance}}: {{version}} (Python {{python}})",
            text_mode="name",
            color_mode="none",
            size=(8, 8),
        ),
    ]
    return dashboard(
        "snowmon-daemon",
        "snowmon / Daemon",
        "The snowmon process itself: scheduler and event-loop lag, the HTTP client pool,"
        " telemetry export, memory and CPU.",
        panels,
        templating=variables(),
    )


DASHBOARDS = {
    "snowmon-fleet.json": fleet,
    "snowmon-connection.json": connection,
    "snowmon-daemon.json": daemon,
}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = HERE / name
        text = render(build)
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if text == current:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}; run python dashboards/generate.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
