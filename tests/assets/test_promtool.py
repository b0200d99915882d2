"""The rules and the Alertmanager example with the real tools: promtool checks and unit
tests, amtool, an Alertmanager that shows the inhibitions at work, and a Prometheus that
scrapes the live daemon, evaluates every rule and runs every dashboard query."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.assets.conftest import ROOT
from tests.assets.live import LiveScrape, free_port

pytestmark = pytest.mark.tools

RULE_FILES = sorted((ROOT / "alerts").glob("*.rules.yml"))
TEST_FILES = sorted((ROOT / "alerts" / "tests").glob("*.yml"))
ALERTMANAGER_CONFIG = ROOT / "alerts" / "alertmanager.example.yml"
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
# Dashboard queries that may rightly find nothing in the test fleet, and why.
MAY_BE_EMPTY = {
    "Connections with expired credentials": "no connection's credentials are expired",
    "Slack notifications": "Slack is off in the test fleet",
    "Token requests by grant and result": "tokens live 120 s: maybe no request in 10 s",
}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback)
        return json.loads(response.read())


def _post_json(url: str, body: object) -> None:
    request = urllib.request.Request(  # noqa: S310 (loopback)
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        assert response.status == 200


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready:\n{log.read_text()[-3000:]}")


@contextmanager
def _serve(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- promtool and amtool --------------------------------------------------------------


def test_promtool_check_rules(promtool: str) -> None:
    result = _run(promtool, "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_test_rules(promtool: str) -> None:
    result = _run(promtool, "test", "rules", *map(str, TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(TEST_FILES)


def test_amtool_check_config(amtool: str) -> None:
    result = _run(amtool, "check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert "3 inhibit rules" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=ServiceNowCredentialsExpired", "severity=critical"], "slack-pages"),
        (["alertname=ServiceNowRateLimited", "severity=warning"], "slack-alerts"),
        (["alertname=ServiceNowInstanceHibernating", "severity=info"], "slack-info"),
        (["alertname=SomethingElse"], "slack-alerts"),
    ],
)
def test_alertmanager_routes_to_slack_by_severity(
    amtool: str, labels: list[str], receiver: str
) -> None:
    result = _run(
        amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", *labels
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


# --- a real Alertmanager --------------------------------------------------------------


def _alert(name: str, connection: str, severity: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "labels": {
            "alertname": name,
            "connection": connection,
            "severity": severity,
            "job": "snowmon",
            "instance": "snowmon-0:8080",
        },
        "annotations": {"summary": name},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
    }


def test_alertmanager_inhibits_what_an_expired_credential_explains(
    alertmanager: str, tmp_path: Path
) -> None:
    # Slack is never reached: the webhook URL file points at a closed loopback port, and
    # the test is over long before group_wait (30 s) sends anything.
    webhook = tmp_path / "slack-webhook-url"
    webhook.write_text(f"http://127.0.0.1:{free_port()}/hook\n")
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    config["global"]["slack_api_url_file"] = str(webhook)
    config_file = tmp_path / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "alertmanager.log"
    args = [
        alertmanager,
        f"--config.file={config_file}",
        f"--storage.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    sent = {
        ("ServiceNowCredentialsExpired", "acme-prod", "critical"): "active",
        ("ServiceNowProbeFailing", "acme-prod", "critical"): "suppressed",
        ("ServiceNowRefreshTokenExpiringSoon", "acme-prod", "warning"): "suppressed",
        ("ServiceNowProbeFailing", "globex-prod", "critical"): "active",
        ("ServiceNowInstanceHibernating", "dev12345", "info"): "active",
        ("ServiceNowProbeFailing", "dev12345", "critical"): "suppressed",
        ("ServiceNowRateLimited", "initech-prod", "warning"): "active",
        ("ServiceNowProbeFailing", "initech-prod", "critical"): "suppressed",
        ("ServiceNowRefreshTokenExpiringSoon", "umbrella-prod", "critical"): "active",
        ("ServiceNowRefreshTokenExpiringSoon", "umbrella-prod", "warning"): "suppressed",
    }
    with _serve(args, log) as proc:
        _wait_ready(f"{base}/-/ready", proc, log, 15)
        _post_json(f"{base}/api/v2/alerts", [_alert(*key) for key in sent])
        deadline = time.monotonic() + 15
        while True:
            got = {
                (
                    a["labels"]["alertname"],
                    a["labels"]["connection"],
                    a["labels"]["severity"],
                ): a["status"]["state"]
                for a in _get_json(f"{base}/api/v2/alerts")
            }
            if got == sent or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert got == sent


# --- a real Prometheus on the live daemon ---------------------------------------------


def _query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        body = _get_json(url)
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{expr}: {exc.read().decode()}") from None
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _grafana_to_prometheus(expr: str) -> str:
    """What Grafana sends for the dashboard's defaults: All jobs and instances, a
    connection of the test fleet, and a rate interval that fits a 1 s scrape."""
    replacements = {
        "$__rate_interval": "10s",
        "$__range": "30s",
        "$job": ".+",
        "$instance": ".+",
        "$connection": "dev100001",
    }
    for variable, value in replacements.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


@pytest.fixture(scope="module")
def prometheus(
    live: LiveScrape, prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A Prometheus that scrapes the live daemon every second as job "snowmon" and
    evaluates alerts/*.rules.yml every second, once it has a few samples."""
    directory = tmp_path_factory.mktemp("prometheus")
    target = urllib.parse.urlsplit(live.base_url).netloc
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in RULE_FILES],
        "scrape_configs": [{"job_name": "snowmon", "static_configs": [{"targets": [target]}]}],
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = directory / "prometheus.log"
    args = [
        prometheus_bin,
        f"--config.file={directory / 'prometheus.yml'}",
        f"--storage.tsdb.path={directory / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--enable-feature=exemplar-storage",
    ]
    with _serve(args, log) as proc:
        _wait_ready(f"{base}/-/ready", proc, log, 20)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            samples = _query(base, 'count_over_time(up{job="snowmon"}[1m])')
            if samples and float(samples[0]["value"][1]) >= 4:
                break
            time.sleep(0.25)
        else:
            raise TimeoutError(f"no scrapes of the daemon:\n{log.read_text()[-3000:]}")
        yield base


def test_prometheus_scrapes_the_daemon(prometheus: str) -> None:
    (up,) = _query(prometheus, 'up{job="snowmon"}')
    assert up["value"][1] == "1"


def test_every_rule_evaluates_without_error(prometheus: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        groups = _get_json(f"{prometheus}/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if all(r["health"] == "ok" for r in rules) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert len(rules) == sum(
        len(g["rules"])
        for p in RULE_FILES
        for g in yaml.safe_load(p.read_text(encoding="utf-8"))["groups"]
    )
    problems = [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert problems == []


def test_the_slo_ratios_are_recorded(prometheus: str) -> None:
    # Four of the six instances are faulty: some probes fail, not all. The first
    # evaluations may see too few samples to tell.
    deadline = time.monotonic() + 15
    ratios: list[float] = []
    while not (ratios and 0 < ratios[0] < 1) and time.monotonic() < deadline:
        time.sleep(0.25)
        result = _query(prometheus, 'job:snowmon_probe_errors:ratio_rate5m{job="snowmon"}')
        ratios = [float(r["value"][1]) for r in result]
    assert len(ratios) == 1
    assert 0 < ratios[0] < 1


def test_every_dashboard_query_runs_on_live_data(prometheus: str) -> None:
    empty = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text(encoding="utf-8"))
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                if not _query(prometheus, _grafana_to_prometheus(target["expr"])):
                    empty.append(panel["title"])
    assert set(empty) <= set(MAY_BE_EMPTY), f"no data: {sorted(set(empty) - set(MAY_BE_EMPTY))}"


def test_dashboard_variables_find_their_values(prometheus: str) -> None:
    for path in DASHBOARDS:
        board = json.loads(path.read_text(encoding="utf-8"))
        for variable in board["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["definition"])
            assert match, variable["name"]
            result = _query(prometheus, _grafana_to_prometheus(match[1]))
            assert {s["metric"].get(match[2]) for s in result} - {None}, variable["name"]


def test_prometheus_stores_the_trace_id_exemplars(prometheus: str) -> None:
    now = time.time()
    url = f"{prometheus}/api/v1/query_exemplars?" + urllib.parse.urlencode(
        {
            "query": "snowmon_probe_latency_seconds_bucket",
            "start": f"{now - 120:.3f}",
            "end": f"{now + 1:.3f}",
        }
    )
    series = _get_json(url)["data"]
    trace_ids = {e["labels"].get("trace_id") for s in series for e in s["exemplars"]}
    assert trace_ids
    assert all(t and re.fullmatch(r"[0-9a-f]{32}", t) for t in trace_ids)
