"""The Grafana dashboards: grafana/dashboard-linter's rules, every query parsed, and every
metric, label and label value they name found in what a running daemon exports."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest

from tests.assets import checks, promql
from tests.assets.conftest import ROOT
from tests.assets.exposition import Exposition

DASHBOARD_DIR = ROOT / "dashboards"
DASHBOARD_FILES = sorted(DASHBOARD_DIR.glob("*.json"))
DATASOURCE_UIDS = {"$datasource", "${datasource}"}
# Panel types that show data, and so need a datasource, a description and a unit. Rows
# are only headings.
NOT_DATA = {"row"}
# Grafana's global variables, usable anywhere without a definition.
GLOBAL_VARIABLES = {
    "__rate_interval",
    "__interval",
    "__interval_ms",
    "__range",
    "__range_s",
    "__range_ms",
    "__from",
    "__to",
    "__dashboard",
    "__org",
    "__user",
    "__name",
    "__value",
    "__field",
    "__series",
    "__data",
    "__url_time_range",
    "timeFilter",
}
# The unit ids Grafana knows (grafana-data valueFormats/categories.ts), as the linter's
# panel-units-rule lists them; the categories a monitoring dashboard can need.
VALID_UNITS = {
    *("none", "string", "short", "percent", "percentunit", "sci", "locale", "bool"),
    *("bool_yes_no", "bool_on_off", "hex", "hex0x"),
    *("bytes", "decbytes", "bits", "decbits", "kbytes", "deckbytes", "mbytes", "decmbytes"),
    *("gbytes", "decgbytes", "tbytes", "dectbytes", "pbytes", "decpbytes"),
    *("pps", "binBps", "Bps", "binbps", "bps", "KiBs", "Kibits", "KBs", "Kbits"),
    *("MiBs", "Mibits", "MBs", "Mbits", "GiBs", "Gibits", "GBs", "Gbits"),
    *("dateTimeAsIso", "dateTimeAsIsoNoDateIfToday", "dateTimeAsUS"),
    *("dateTimeAsUSNoDateIfToday", "dateTimeAsLocal", "dateTimeAsLocalNoDateIfToday"),
    *("dateTimeAsSystem", "dateTimeFromNow"),
    *("hertz", "ns", "µs", "ms", "s", "m", "h", "d", "dtdurationms", "dtdurations"),
    *("dthms", "dtdhms", "timeticks", "clockms", "clocks"),
    *("cps", "ops", "reqps", "rps", "wps", "iops", "cpm", "opm", "rpm", "wpm"),
}


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


@pytest.fixture(params=DASHBOARD_FILES, ids=[p.name for p in DASHBOARD_FILES])
def board(request: pytest.FixtureRequest) -> dict[str, Any]:
    path: Path = request.param
    return _load(path)


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # panels inside a collapsed row


def _data_panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    return (p for p in _panels(board) if p.get("type") not in NOT_DATA)


def _targets(board: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in _data_panels(board):
        for target in panel.get("targets", []):
            yield panel, target


def _variables(board: dict[str, Any]) -> list[dict[str, Any]]:
    variables: list[dict[str, Any]] = board.get("templating", {}).get("list", [])
    return variables


def _variable_query(variable: dict[str, Any]) -> str:
    query = variable.get("query", "")
    return str(query.get("query", "") if isinstance(query, dict) else query)


_LABEL_VALUES = re.compile(r"^label_values\((?P<expr>.+),\s*(?P<label>\w+)\)$")


def _all_expressions(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expression) of every target, and the PromQL inside query variables."""
    out = [(f"panel {p['title']!r}", t["expr"]) for p, t in _targets(board)]
    for variable in _variables(board):
        if variable.get("type") == "query":
            match = _LABEL_VALUES.match(_variable_query(variable))
            if match:
                out.append((f"variable {variable['name']!r}", match["expr"]))
    return out


def _parsed(board: dict[str, Any]) -> list[tuple[str, promql.Node]]:
    return [(where, promql.parse(expr)) for where, expr in _all_expressions(board)]


# --- the files ------------------------------------------------------------------------


def test_there_are_the_three_dashboards() -> None:
    uids = {_load(p)["uid"] for p in DASHBOARD_FILES}
    assert uids == {"snowmon-fleet", "snowmon-connection", "snowmon-daemon"}


def test_dashboard_files_are_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("generate", DASHBOARD_DIR / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    for name, build in generate.DASHBOARDS.items():
        assert (DASHBOARD_DIR / name).read_text(encoding="utf-8") == generate.render(build), (
            f"{name} differs from dashboards/generate.py: run python dashboards/generate.py"
        )


def test_classic_json_with_fixed_uid_for_file_provisioning(board: dict[str, Any]) -> None:
    text = json.dumps(board)
    assert 39 <= board["schemaVersion"] <= 41
    assert re.fullmatch(r"[a-z0-9-]{1,40}", board["uid"])
    assert board.get("id") is None  # a numeric id belongs to one Grafana database
    # Exported "for sharing" dashboards have __inputs and ${DS_...} placeholders that
    # file provisioning cannot fill in.
    assert "__inputs" not in board
    assert "__requires" not in board
    assert "${DS_" not in text
    assert board["title"].startswith("snowmon / ")
    assert board.get("description")


def test_titles_and_uids_are_unique() -> None:
    boards = [_load(p) for p in DASHBOARD_FILES]
    assert len({b["uid"] for b in boards}) == len(boards)
    assert len({b["title"] for b in boards}) == len(boards)


# --- template-datasource-rule, template-job-rule, template-instance-rule, ... ----------


def test_one_datasource_variable_of_type_datasource(board: dict[str, Any]) -> None:
    datasources = [v for v in _variables(board) if v.get("type") == "datasource"]
    assert len(datasources) == 1
    (variable,) = datasources
    assert variable["name"] == "datasource"
    assert variable["label"] == "Data source"
    assert variable["query"] == "prometheus"


@pytest.mark.parametrize("name", ["job", "instance"])
def test_job_and_instance_variables(board: dict[str, Any], name: str) -> None:
    (variable,) = (v for v in _variables(board) if v["name"] == name)
    assert variable["type"] == "query"
    assert variable["datasource"]["uid"] in DATASOURCE_UIDS
    assert variable["label"] == name.title()
    assert variable["multi"] is True
    assert variable["includeAll"] is True
    assert variable["allValue"] == ".+"


def test_query_variables_are_label_values_reloaded_on_time_range_change(
    board: dict[str, Any],
) -> None:
    for variable in _variables(board):
        if variable.get("type") != "query":
            continue
        assert variable["refresh"] == 2, variable["name"]
        assert variable["datasource"]["uid"] in DATASOURCE_UIDS, variable["name"]
        assert _LABEL_VALUES.match(_variable_query(variable)), variable["name"]


def test_every_variable_used_is_defined(board: dict[str, Any]) -> None:
    defined = {v["name"] for v in _variables(board)} | GLOBAL_VARIABLES
    used = set(re.findall(r"\$\{?(\w+)", json.dumps(board)))
    assert used <= defined, f"undefined variables: {sorted(used - defined)}"


# --- panel-datasource-rule, panel-title-description-rule, panel-units-rule, ... -------


def test_every_panel_uses_the_datasource_variable(board: dict[str, Any]) -> None:
    for panel in _data_panels(board):
        assert panel["datasource"]["uid"] in DATASOURCE_UIDS, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"])["uid"] in DATASOURCE_UIDS


def test_every_panel_has_a_title_a_description_and_targets(board: dict[str, Any]) -> None:
    for panel in _data_panels(board):
        assert panel.get("title"), panel
        assert panel.get("description"), panel["title"]
        assert panel.get("targets"), panel["title"]


def test_every_panel_has_a_valid_unit(board: dict[str, Any]) -> None:
    for panel in _data_panels(board):
        units = [panel["fieldConfig"]["defaults"].get("unit")]
        for override in panel["fieldConfig"].get("overrides", []):
            units += [p["value"] for p in override["properties"] if p["id"] == "unit"]
        for unit in units:
            assert unit in VALID_UNITS, f"{panel['title']}: unit {unit!r}"


def test_panels_do_not_overlap(board: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
    ids = [p["id"] for p in _panels(board)]
    assert len(ids) == len(set(ids))


# --- target-promql-rule, target-rate-interval-rule, target-job/instance-rule, ... -------


def test_every_expression_is_promql(board: dict[str, Any]) -> None:
    for where, expr in _all_expressions(board):
        try:
            promql.parse(expr)
        except ValueError as exc:
            pytest.fail(f"{board['uid']} {where}: {exc}\n{expr}")


def test_rate_is_taken_over_rate_interval(board: dict[str, Any]) -> None:
    for panel, target in _targets(board):
        problems = promql.rate_interval_misuse(promql.parse(target["expr"]))
        assert not problems, f"{panel['title']}: {problems}"


def test_every_selector_has_job_and_instance_matchers(board: dict[str, Any]) -> None:
    for panel, target in _targets(board):
        for selector in promql.selectors(promql.parse(target["expr"])):
            assert selector.matcher("job") == ("=~", "$job"), (panel["title"], selector)
            assert selector.matcher("instance") == ("=~", "$instance"), (panel["title"], selector)


def test_counters_only_inside_rate_or_increase(board: dict[str, Any], exported: Exposition) -> None:
    for panel, target in _targets(board):
        problems = promql.counter_misuse(promql.parse(target["expr"]), exported.counter_series)
        assert not problems, f"{panel['title']}: {problems}"


def test_the_connection_dashboard_selects_one_connection() -> None:
    board = _load(DASHBOARD_DIR / "snowmon-connection.json")
    (variable,) = (v for v in _variables(board) if v["name"] == "connection")
    assert variable["multi"] is False
    per_connection = 0
    for _, target in _targets(board):
        for selector in promql.selectors(promql.parse(target["expr"])):
            if selector.matcher("connection") is not None:
                assert selector.matcher("connection") == ("=", "$connection")
                per_connection += 1
    assert per_connection >= 8
    links = [link for link in board["links"] if "${connection}" in link.get("url", "")]
    assert links, "a link to the connection's traces"


# --- against what the daemon exports --------------------------------------------------


def test_every_metric_exists_in_the_daemon(board: dict[str, Any], exported: Exposition) -> None:
    selectors = [s for _, tree in _parsed(board) for s in promql.selectors(tree)]
    assert selectors
    assert checks.unknown_metrics(selectors, exported) == []


def test_labels_and_label_values_exist_in_the_daemon(
    board: dict[str, Any], exported: Exposition
) -> None:
    selectors = [s for _, tree in _parsed(board) for s in promql.selectors(tree)]
    assert checks.label_problems(selectors, exported) == []


def test_exemplar_queries_read_histograms_that_carry_trace_ids(
    board: dict[str, Any], exported: Exposition
) -> None:
    for panel, target in _targets(board):
        if not target.get("exemplar"):
            continue
        names = {s.name for s in promql.selectors(promql.parse(target["expr"]))}
        assert names & exported.series_with_exemplars, (
            f"{panel['title']}: exemplars asked of {names}, which carry none"
        )


def test_exemplars_are_shown_where_there_are_some() -> None:
    boards = [_load(p) for p in DASHBOARD_FILES]
    exemplar_targets = [t for b in boards for _, t in _targets(b) if t.get("exemplar")]
    assert len(exemplar_targets) >= 3


def test_the_walker_sees_every_selector() -> None:
    # The checks above are only as good as the AST walk: a selector it misses is a
    # metric nobody checks.
    tree = promql.parse(
        "sum by (le) (rate(a_total[$__rate_interval])) / on () group_left"
        " max_over_time(b[5m:1m]) and -(c offset 1m) or topk(3, d) > bool vector(1)"
    )
    assert {s.name for s in promql.selectors(tree)} == {"a_total", "b", "c", "d"}
    assert isinstance(tree, promql_parser.BinaryExpr)
