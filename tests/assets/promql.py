"""PromQL, read the way grafana/dashboard-linter reads it: Grafana's template variables
replaced by placeholders the parser accepts, then the AST walked with every node's
ancestors at hand.

The placeholders are the linter's idea: `$__rate_interval` becomes a duration nobody would
write (130d12h46m4s), so a range selector can be told to use it by its length alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import promql_parser

RATE_INTERVAL = timedelta(seconds=11_277_964)
_DURATIONS = {
    "__rate_interval": RATE_INTERVAL,
    "__interval": RATE_INTERVAL + timedelta(seconds=1),
    "__range": RATE_INTERVAL + timedelta(seconds=2),
}
# $name, ${name}, ${name:format}, [[name]]; a variable right after a double quote is inside
# a string (a label value) and stays as it is, as the linter leaves it.
_VARIABLE = re.compile(r'(?<!")\$\{(\w+)(?::\w+)?\}|(?<!")\$(\w+)|\[\[(\w+)\]\]')

Node = Any  # the promql_parser classes carry no type information


def _seconds(delta: timedelta) -> str:
    return f"{int(delta.total_seconds())}s"


def expand(expr: str) -> str:
    """`expr` with Grafana's variables outside label values replaced by placeholders."""

    def placeholder(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g is not None)
        if name in _DURATIONS:
            return _seconds(_DURATIONS[name])
        if name in {"__from", "__to"}:
            return "1294671549.254"
        return f"bgludgvy_{name}"

    return _VARIABLE.sub(placeholder, expr)


def parse(expr: str) -> Node:
    """Parse a dashboard or rule expression; raises ValueError when it is not PromQL."""
    return promql_parser.parse(expand(expr))


@dataclass(frozen=True)
class Visit:
    node: Node
    parents: tuple[Node, ...]


def walk(node: Node, parents: tuple[Node, ...] = ()) -> Iterator[Visit]:
    """Every node of the tree, depth first, with its ancestors (nearest last)."""
    yield Visit(node, parents)
    below = (*parents, node)
    for child in _children(node):
        yield from walk(child, below)


def _children(node: Node) -> list[Node]:
    if isinstance(node, promql_parser.BinaryExpr):
        return [node.lhs, node.rhs]
    if isinstance(node, promql_parser.AggregateExpr):
        return [c for c in (node.param, node.expr) if c is not None]
    if isinstance(node, promql_parser.Call):
        return list(node.args)
    if isinstance(node, promql_parser.MatrixSelector):
        return [node.vector_selector]
    if isinstance(
        node, promql_parser.SubqueryExpr | promql_parser.ParenExpr | promql_parser.UnaryExpr
    ):
        return [node.expr]
    return []


@dataclass(frozen=True)
class Selector:
    """One vector selector: the metric it names and its label matchers."""

    name: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, op, value); op as in PromQL

    def matcher(self, label: str) -> tuple[str, str] | None:
        for name, op, value in self.matchers:
            if name == label:
                return op, value
        return None


_OPS = (
    (promql_parser.MatchOp.Equal, "="),
    (promql_parser.MatchOp.NotEqual, "!="),
    (promql_parser.MatchOp.Re, "=~"),
    (promql_parser.MatchOp.NotRe, "!~"),
)


def _op(op: Any) -> str:
    return next(text for known, text in _OPS if op == known)


def selectors(tree: Node) -> list[Selector]:
    out = []
    for visit in walk(tree):
        node = visit.node
        if not isinstance(node, promql_parser.VectorSelector):
            continue
        matchers = tuple((m.name, _op(m.op), m.value) for m in node.matchers.matchers)
        name = node.name or next((v for n, op, v in matchers if n == "__name__" and op == "="), "")
        out.append(Selector(name, tuple(m for m in matchers if m[0] != "__name__")))
    return out


def counter_misuse(tree: Node, is_counter: Any) -> list[str]:
    """Counters (as `is_counter(name)` judges) not read through rate/irate/increase over a
    range: the linter's target-counter-agg-rule, with histogram series counted as counters."""
    problems = []
    for visit in walk(tree):
        node = visit.node
        if not isinstance(node, promql_parser.VectorSelector) or not is_counter(node.name):
            continue
        parents = visit.parents
        ok = (
            len(parents) >= 2
            and isinstance(parents[-1], promql_parser.MatrixSelector)
            and isinstance(parents[-2], promql_parser.Call)
            and parents[-2].func.name in {"rate", "irate", "increase"}
        )
        if not ok:
            problems.append(f"counter {node.name} is not inside rate(), irate() or increase()")
    return problems


def rate_interval_misuse(tree: Node) -> list[str]:
    """rate()/irate() over anything but $__rate_interval: target-rate-interval-rule."""
    problems = []
    for visit in walk(tree):
        node = visit.node
        if not isinstance(node, promql_parser.MatrixSelector) or node.range == RATE_INTERVAL:
            continue
        if not visit.parents:
            continue
        call = visit.parents[-1]
        if not isinstance(call, promql_parser.Call):
            problems.append(f"range selector {node} outside a function")
        elif call.func.name in {"rate", "irate"}:
            problems.append(f"{call.func.name}() over {node.range}, not $__rate_interval")
    return problems


def alternatives(op: str, value: str) -> list[str] | None:
    """The literal values a matcher selects, when it is `=` or a plain `a|b|c` regex;
    None when it selects by pattern or by exclusion."""
    if op == "=":
        return [value]
    if op == "=~" and re.fullmatch(r"[\w.:-]+(\|[\w.:-]+)*", value):
        return value.split("|")
    return None
