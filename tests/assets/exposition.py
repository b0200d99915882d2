"""What a scrape of the daemon's /metrics offers a query: the series names it can select,
the family each belongs to, the label names and values it carries, and which series had
exemplars.

A PromQL selector names a *series* (`snowmon_probes_total`,
`snowmon_probe_latency_seconds_bucket`), the parser of prometheus_client yields
*families* (`snowmon_probes` of type counter). `Exposition.family_of` maps one to the
other, so a counter's `_total` and a histogram's `_bucket`/`_sum`/`_count` resolve to the
family that really exists.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

# Labels the scraping Prometheus adds to every series of a target.
TARGET_LABELS = frozenset({"job", "instance"})
# Series Prometheus makes up for every scrape target; they never appear in /metrics.
SYNTHETIC_SERIES = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    }
)
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
}


@dataclass
class Family:
    name: str
    type: str
    series: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)

    @property
    def is_counter_like(self) -> bool:
        """Counters, and the cumulative series of histograms and summaries."""
        return self.type in {"counter", "histogram", "summary"}


@dataclass
class Exposition:
    families: dict[str, Family]
    by_series: dict[str, Family]
    label_values: dict[str, set[str]]
    series_with_exemplars: set[str]

    def family_of(self, series: str) -> Family | None:
        return self.by_series.get(series)

    def counter_series(self, series: str) -> bool:
        """Whether selecting `series` selects a monotonically growing counter."""
        family = self.by_series.get(series)
        if family is None:
            return series.endswith("_total")
        if family.type == "counter":
            return series.endswith("_total")
        if family.type in {"histogram", "summary"}:
            return series.endswith(_SUFFIXES[family.type])
        return False


def parse(classic: str, openmetrics: str) -> Exposition:
    """Both expositions of one daemon: the classic text format (what Prometheus parses
    without OpenMetrics) and OpenMetrics (the only one carrying exemplars)."""
    families: dict[str, Family] = {}
    by_series: dict[str, Family] = {}
    values: dict[str, set[str]] = defaultdict(set)
    for parsed in text_string_to_metric_families(classic):
        if parsed.name.endswith("_created") and parsed.type == "gauge":
            # prometheus_client's `_created` samples parse as gauges of their own in the
            # classic format. Prometheus scrapes OpenMetrics, where they belong to their
            # counter and are dropped at ingestion: never selectable, so never offered.
            continue
        family = families.setdefault(parsed.name, Family(parsed.name, parsed.type))
        for sample in parsed.samples:
            family.series.add(sample.name)
            family.labels.update(sample.labels)
            by_series[sample.name] = family
            for label, value in sample.labels.items():
                values[label].add(value)
        # A family without samples (a per-connection gauge before its first value) is
        # still selectable by its expected series names.
        for suffix in _SUFFIXES.get(parsed.type, ("",)):
            by_series.setdefault(parsed.name + suffix, family)
    exemplars: set[str] = set()
    for parsed in openmetrics_families(openmetrics):
        for sample in parsed.samples:
            if sample.exemplar is not None and "trace_id" in sample.exemplar.labels:
                exemplars.add(sample.name)
    return Exposition(families, by_series, dict(values), exemplars)
