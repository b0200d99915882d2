"""The Prometheus rules (alerts/*.rules.yml) without Prometheus: naming, labels and
annotations by the conventions, the SRE workbook's burn-rate windows, every expression
parsed and every metric it names exported by a running daemon, a runbook section and
promtool tests for every alert. tests/assets/test_promtool.py runs the real tools."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from monitor.notify.catalog import RUNBOOK_ANCHORS
from tests.assets import checks, promql
from tests.assets.conftest import ROOT
from tests.assets.exposition import Exposition

RULE_FILES = sorted((ROOT / "alerts").glob("*.rules.yml"))
TEST_FILES = sorted((ROOT / "alerts" / "tests").glob("*.yml"))
RUNBOOKS = ROOT / "docs" / "runbooks.md"
RUNBOOK_BASE = "https://github.com/snowmon/snowmon/blob/main/docs/runbooks.md"
REQUIRED = {
    "ServiceNowCredentialsExpired",
    "ServiceNowRefreshTokenExpiringSoon",
    "ServiceNowProbeFailing",
    "ServiceNowRateLimited",
    "ServiceNowProbeLatencyHigh",
    "ServiceNowProbeErrorBudgetBurn",
    "SnowmonDown",
    "SnowmonSchedulerLagging",
    "SnowmonTelemetryExportFailing",
}
SEVERITIES = {"critical", "warning", "info"}
ERROR_BUDGET = 0.005  # SLO 99.5 %
# SRE workbook, "Multiwindow, Multi-Burn-Rate Alerts": (long, short, burn rate, severity).
BURN_WINDOWS = {
    ("1h", "5m", 14.4, "critical"),
    ("6h", "30m", 6.0, "critical"),
    ("1d", "2h", 3.0, "warning"),
    ("3d", "6h", 1.0, "warning"),
}
_QUERY_IN_TEMPLATE = re.compile(r'printf\s+"([^"]+)"[^|}]*\|\s*query')


def _rules() -> list[dict[str, Any]]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            rules.extend(group["rules"])
    return rules


ALERTS = [r for r in _rules() if "alert" in r]
RECORDS = [r for r in _rules() if "record" in r]


def _rule_id(rule: dict[str, Any]) -> str:
    name = rule.get("alert") or rule["record"]
    extra = [rule.get("labels", {}).get(k) for k in ("severity", "long")]
    return "-".join([name, *(e for e in extra if e)])


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def _runbook_sections() -> dict[str, str]:
    text = RUNBOOKS.read_text(encoding="utf-8")
    sections: dict[str, str] = {}
    for chunk in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        heading, _, body = chunk.partition("\n")
        sections[_anchor(heading)] = body
    return sections


def _template_queries(rule: dict[str, Any]) -> list[str]:
    """PromQL run by `query` in annotation templates, with %s filled in."""
    texts = " ".join(rule.get("annotations", {}).values())
    return [q.replace("%s", "x") for q in _QUERY_IN_TEMPLATE.findall(texts)]


def _expressions(rule: dict[str, Any]) -> list[str]:
    return [rule["expr"], *_template_queries(rule)]


@pytest.fixture(params=ALERTS, ids=[_rule_id(r) for r in ALERTS])
def alert(request: pytest.FixtureRequest) -> dict[str, Any]:
    rule: dict[str, Any] = request.param
    return rule


@pytest.fixture(params=ALERTS + RECORDS, ids=[_rule_id(r) for r in ALERTS + RECORDS])
def rule(request: pytest.FixtureRequest) -> dict[str, Any]:
    chosen: dict[str, Any] = request.param
    return chosen


# --- names, labels, annotations -------------------------------------------------------


def test_the_required_alerts_exist() -> None:
    assert RULE_FILES
    assert {a["alert"] for a in ALERTS} >= REQUIRED


def test_alert_name_is_camel_case_with_a_shared_first_word(alert: dict[str, Any]) -> None:
    assert re.fullmatch(r"(ServiceNow|Snowmon)([A-Z][a-z0-9]+)+", alert["alert"])


def test_severity_is_critical_warning_or_info(alert: dict[str, Any]) -> None:
    assert alert["labels"]["severity"] in SEVERITIES


def test_summary_is_one_static_sentence(alert: dict[str, Any]) -> None:
    summary = alert["annotations"]["summary"]
    assert "{{" not in summary
    assert "\n" not in summary.strip()
    assert summary[0].isupper()
    assert summary.endswith(".")
    assert not re.search(r"[.!?]\s+[A-Z]", summary), "more than one sentence"


def test_description_is_templated(alert: dict[str, Any]) -> None:
    description = alert["annotations"]["description"]
    assert "{{" in description
    assert "$labels" in description or "$value" in description


def test_runbook_url_points_at_the_alerts_section(alert: dict[str, Any]) -> None:
    url = alert["annotations"]["runbook_url"]
    assert url == f"{RUNBOOK_BASE}#{alert['alert'].lower()}"
    assert url.rpartition("#")[2] in _runbook_sections()


def test_alerts_sharing_a_name_share_summary_and_runbook() -> None:
    by_name: dict[str, set[tuple[str, str]]] = {}
    for a in ALERTS:
        annotations = a["annotations"]
        by_name.setdefault(a["alert"], set()).add(
            (annotations["summary"], annotations["runbook_url"])
        )
    assert all(len(v) == 1 for v in by_name.values()), by_name


def test_every_runbook_section_says_what_how_to_confirm_and_how_to_fix() -> None:
    sections = _runbook_sections()
    for name in {a["alert"] for a in ALERTS}:
        body = sections[name.lower()]
        for heading in ("### What it means", "### How to confirm", "### How to fix"):
            assert heading in body, f"{name}: no {heading!r}"
        confirm = body.partition("### How to confirm")[2].partition("### How to fix")[0]
        assert "```promql" in confirm, f"{name}: no PromQL to confirm with"
        assert "```sh" in confirm, f"{name}: no API call or log query to confirm with"
        if name.startswith("ServiceNow"):
            assert "/api/v1/connections" in confirm, f"{name}: no API call"


def test_every_promql_block_of_the_runbooks_parses(exported: Exposition) -> None:
    text = RUNBOOKS.read_text(encoding="utf-8")
    blocks = re.findall(r"```promql\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) >= len({a["alert"] for a in ALERTS})
    recorded = {r["record"] for r in RECORDS}
    for block in blocks:
        tree = promql.parse(block)
        assert checks.unknown_metrics(promql.selectors(tree), exported, recorded) == [], block


# --- the SLO ----------------------------------------------------------------------------


def _threshold(node: Any) -> float:
    """The number a comparison compares with: `x > (14.4 * 0.005)`."""
    while isinstance(node, promql_parser.ParenExpr):
        node = node.expr
    if isinstance(node, promql_parser.NumberLiteral):
        return float(node.val)
    assert isinstance(node, promql_parser.BinaryExpr)
    left, right = _threshold(node.lhs), _threshold(node.rhs)
    ops = {"*": left * right, "/": left / right, "+": left + right, "-": left - right}
    return ops[str(node.op)]


def test_burn_rate_alerts_follow_the_sre_workbook() -> None:
    found = set()
    for a in (a for a in ALERTS if a["alert"] == "ServiceNowProbeErrorBudgetBurn"):
        tree = promql.parse(a["expr"])
        assert isinstance(tree, promql_parser.BinaryExpr)
        assert str(tree.op) == "and"
        windows = []
        for side in (tree.lhs, tree.rhs):
            assert isinstance(side, promql_parser.BinaryExpr)
            assert str(side.op) == ">"
            assert isinstance(side.lhs, promql_parser.VectorSelector)
            window = str(side.lhs.name).rpartition("ratio_rate")[2]
            windows.append((window, _threshold(side.rhs)))
        (long, long_threshold), (short, short_threshold) = windows
        assert long_threshold == pytest.approx(short_threshold)
        burn = long_threshold / ERROR_BUDGET
        labels = a["labels"]
        assert (labels["long"], labels["short"]) == (long, short)
        found.add((long, short, round(burn, 1), labels["severity"]))
    assert found == BURN_WINDOWS


def test_the_slo_ratios_are_recorded_over_their_windows() -> None:
    records = {r["record"]: r["expr"] for r in RECORDS}
    for long, short, _, _ in BURN_WINDOWS:
        for window in (long, short):
            name = f"job:snowmon_probe_errors:ratio_rate{window}"
            assert name in records
            tree = promql.parse(records[name])
            ranges = {
                v.node.range
                for v in promql.walk(tree)
                if isinstance(v.node, promql_parser.MatrixSelector)
            }
            assert ranges == {promql_parser.parse_duration(window)}, name


def test_burn_rate_alerts_read_the_ratios_of_their_own_group() -> None:
    # promtool and Prometheus evaluate groups independently; only rules of one group run
    # in order, so an alert reading a ratio of another group sees last round's value.
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            recorded = {r["record"] for r in group["rules"] if "record" in r}
            for r in group["rules"]:
                if "alert" not in r:
                    continue
                used = {s.name for s in promql.selectors(promql.parse(r["expr"]))}
                used_records = {n for n in used if ":" in n}
                assert used_records <= recorded, (r["alert"], used_records - recorded)


# --- expressions against what the daemon exports --------------------------------------


def test_every_expression_parses(rule: dict[str, Any]) -> None:
    for expr in _expressions(rule):
        promql.parse(expr)


def test_counters_only_inside_rate_or_increase(rule: dict[str, Any], exported: Exposition) -> None:
    for expr in _expressions(rule):
        assert promql.counter_misuse(promql.parse(expr), exported.counter_series) == []


def test_every_metric_exists_in_the_daemon(rule: dict[str, Any], exported: Exposition) -> None:
    recorded = {r["record"] for r in RECORDS}
    for expr in _expressions(rule):
        selectors = promql.selectors(promql.parse(expr))
        assert checks.unknown_metrics(selectors, exported, recorded) == []


def test_labels_and_label_values_exist_in_the_daemon(
    rule: dict[str, Any], exported: Exposition
) -> None:
    for expr in _expressions(rule):
        assert checks.label_problems(promql.selectors(promql.parse(expr)), exported) == []


def test_recording_rule_names_follow_level_metric_operations() -> None:
    for r in RECORDS:
        assert re.fullmatch(r"[a-z_]+:snowmon_[a-z_]+:[a-z0-9_]+", r["record"]), r["record"]


# --- promtool tests cover every alert -------------------------------------------------


def _alert_tests() -> list[dict[str, Any]]:
    out = []
    for path in TEST_FILES:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for rule_file in data["rule_files"]:
            assert (path.parent / rule_file).resolve() in {p.resolve() for p in RULE_FILES}
        for test in data["tests"]:
            out.extend(test.get("alert_rule_test", []))
    return out


def test_every_alert_has_promtool_tests_firing_and_not_firing() -> None:
    cases = _alert_tests()
    for name in {a["alert"] for a in ALERTS}:
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c.get("exp_alerts") for c in mine), f"{name} never shown firing"
        assert any(not c.get("exp_alerts") for c in mine), f"{name} never shown silent"


def test_every_alert_variant_is_shown_firing() -> None:
    fired = {
        (c["alertname"], e["exp_labels"]["severity"], e["exp_labels"].get("long"))
        for c in _alert_tests()
        for e in c.get("exp_alerts") or []
    }
    for a in ALERTS:
        labels = a["labels"]
        assert (a["alert"], labels["severity"], labels.get("long")) in fired, _rule_id(a)


def test_expected_annotations_are_complete_in_promtool_tests() -> None:
    # promtool compares annotations only when the test names them: name them all.
    for case in _alert_tests():
        for expected in case.get("exp_alerts") or []:
            annotations = expected.get("exp_annotations", {})
            assert set(annotations) == {"summary", "description", "runbook_url"}, case


def test_rule_and_test_files_are_yaml_documents() -> None:
    for path in [*RULE_FILES, *TEST_FILES]:
        assert isinstance(yaml.safe_load(path.read_text(encoding="utf-8")), dict), path
    assert all(isinstance(p, Path) for p in TEST_FILES)
    assert TEST_FILES


def test_every_slack_runbook_link_has_its_anchor() -> None:
    """Slack messages link to `{runbook_url}#<alert>`; each anchor exists in the runbook."""
    text = RUNBOOKS.read_text(encoding="utf-8")
    ids = set(re.findall(r'<a id="([\w-]+)"></a>', text))
    assert set(RUNBOOK_ANCHORS.values()) <= ids, set(RUNBOOK_ANCHORS.values()) - ids
