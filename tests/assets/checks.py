"""Checks shared by the dashboard and the rule tests: does what an expression selects exist
in what the daemon exports, with those labels and label values?"""

from __future__ import annotations

from collections.abc import Iterable

from tests.assets import promql
from tests.assets.exposition import SYNTHETIC_SERIES, TARGET_LABELS, Exposition

# Labels whose every value the daemon exports from the start (zero-initialised series), so
# a value a query names and the scrape lacks is a typo, not a value yet to come.
BOUNDED_LABELS = frozenset(
    {"state", "reason", "result", "grant", "kind", "signal", "status_class", "generation"}
)


def unknown_metrics(
    selectors: Iterable[promql.Selector], exported: Exposition, defined: Iterable[str] = ()
) -> list[str]:
    """Names selected that are neither exported by the daemon, nor made by Prometheus for
    every target, nor recorded by one of our recording rules (`defined`)."""
    known = set(defined) | SYNTHETIC_SERIES
    missing = []
    for selector in selectors:
        if not selector.name:
            missing.append(f"selector without a metric name: {selector}")
        elif selector.name not in known and exported.family_of(selector.name) is None:
            missing.append(selector.name)
    return sorted(set(missing))


def label_problems(selectors: Iterable[promql.Selector], exported: Exposition) -> list[str]:
    """Matchers on labels the selected series do not have, and values of bounded labels
    the daemon never exports."""
    problems = []
    for selector in selectors:
        family = exported.family_of(selector.name)
        if family is None:
            continue
        allowed = family.labels | TARGET_LABELS
        if selector.name.endswith("_bucket"):
            allowed = allowed | {"le"}
        for label, op, value in selector.matchers:
            if label not in allowed:
                problems.append(f"{selector.name} has no label {label!r} (has {sorted(allowed)})")
                continue
            values = promql.alternatives(op, value)
            if label not in BOUNDED_LABELS or values is None:
                continue
            seen = exported.label_values.get(label, set())
            for wanted in values:
                if wanted not in seen:
                    problems.append(
                        f"{selector.name}{{{label}{op}{value!r}}}: the daemon never exports"
                        f" {label}={wanted!r} (it exports {sorted(seen)})"
                    )
    return problems
