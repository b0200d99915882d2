"""Encoded queries: the `sysparm_query` language, the subset integrations really use.

`field=value^field2!=x^ORfield3LIKEy^NQ...^ORDERBYfield^ORDERBYDESCfield` with the
operators = != < <= > >= LIKE NOT LIKE STARTSWITH ENDSWITH IN NOT IN ISEMPTY ISNOTEMPTY.
As on an instance with the default `glide.invalid_query.returns_no_rows=false`, a
condition on a field the table does not have is ignored rather than failing the call.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from monitor.emulator.records import Record, Ref

_OPERATORS = (
    "NOT LIKE", "NOT IN", "STARTSWITH", "ENDSWITH", "ISNOTEMPTY", "ISEMPTY",
    "LIKE", "IN", "!=", ">=", "<=", "=", ">", "<",
)  # fmt: skip
_FIELD = re.compile(r"[a-z0-9_.]+")


def _value(record: Record, name: str) -> str:
    value = record.get(name, "")
    return value.sys_id if isinstance(value, Ref) else value


_TESTS: dict[str, Callable[[str, str], bool]] = {
    "=": lambda have, want: have == want,
    "!=": lambda have, want: have != want,
    ">": lambda have, want: have > want,
    ">=": lambda have, want: have >= want,
    "<": lambda have, want: have < want,
    "<=": lambda have, want: have <= want,
    "LIKE": lambda have, want: want.lower() in have.lower(),
    "NOT LIKE": lambda have, want: want.lower() not in have.lower(),
    "STARTSWITH": lambda have, want: have.lower().startswith(want.lower()),
    "ENDSWITH": lambda have, want: have.lower().endswith(want.lower()),
    "IN": lambda have, want: have in want.split(","),
    "NOT IN": lambda have, want: have not in want.split(","),
    "ISEMPTY": lambda have, _: have == "",
    "ISNOTEMPTY": lambda have, _: have != "",
}


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    operator: str
    value: str

    def matches(self, record: Record) -> bool:
        return _TESTS[self.operator](_value(record, self.field), self.value)


# OR-groups of conditions ANDed together; the query matches if any ^NQ branch matches
Branch = tuple[tuple[Condition, ...], ...]


@dataclass(frozen=True, slots=True)
class Query:
    branches: tuple[Branch, ...]
    order: tuple[tuple[str, bool], ...]  # (field, descending)
    fields: frozenset[str]  # every field a condition or ordering names

    def matches(self, record: Record) -> bool:
        if not self.branches:
            return True
        return any(
            all(any(cond.matches(record) for cond in group) for group in branch)
            for branch in self.branches
        )

    def apply(self, records: Sequence[Record], columns: Sequence[str]) -> list[Record]:
        known = set(columns)
        selected = [record for record in records if self.matches(record)]
        for name, descending in reversed(self.order):
            if name in known:
                selected.sort(key=lambda record: _value(record, name), reverse=descending)
        return selected


def _condition(term: str) -> Condition | None:
    match = _FIELD.match(term)
    if match is None:
        return None
    rest = term[match.end() :]
    for operator in _OPERATORS:
        if rest.startswith(operator):
            return Condition(match.group(), operator, rest[len(operator) :])
    return None


@functools.lru_cache(maxsize=1024)
def parse(text: str, columns: tuple[str, ...]) -> Query:
    """Parse an encoded query; conditions on unknown fields are dropped (ignored)."""
    known = set(columns)
    branches: list[Branch] = []
    order: list[tuple[str, bool]] = []
    named: set[str] = set()
    for branch_text in text.split("^NQ") if text else ():
        groups: list[list[Condition]] = []
        for raw in branch_text.split("^"):
            term = raw.strip()
            if not term or term == "EQ":
                continue
            if term.startswith("ORDERBYDESC"):
                order.append((term[11:], True))
                named.add(term[11:])
                continue
            if term.startswith("ORDERBY"):
                order.append((term[7:], False))
                named.add(term[7:])
                continue
            joins_previous = term.startswith("OR") and bool(groups)
            condition = _condition(term[2:] if joins_previous else term)
            if condition is None:
                continue
            named.add(condition.field)
            if condition.field not in known:
                continue
            if joins_previous:
                groups[-1].append(condition)
            else:
                groups.append([condition])
        if groups:
            branches.append(tuple(tuple(group) for group in groups))
    return Query(tuple(branches), tuple(order), frozenset(named))
