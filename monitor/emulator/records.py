"""Tables and records: the demo data every emulated instance serves through the Table API.

Like a real developer instance, every instance of the fleet holds the same demo data
(real PDIs even share sys_ids); only the links in references differ, because they name
the instance's own base URL, and those are rendered per request. The data is generated
once per seed, so 100,000 instances cost nothing extra and the probe's hot path never
generates anything.

Values are strings as ServiceNow sends them ("true", "2016-01-19 04:52:04", "" for null);
a reference is a `Ref`, rendered as {"link", "value"} or its display value on demand.
"""

from __future__ import annotations

import functools
import hashlib
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple


class Ref(NamedTuple):
    table: str
    sys_id: str
    display: str


Value = str | Ref
Record = dict[str, Value]


@dataclass(slots=True)
class Table:
    name: str
    columns: tuple[str, ...]
    display_field: str
    records: list[Record] = field(default_factory=list)
    by_id: dict[str, Record] = field(default_factory=dict)
    # choice fields: stored value -> label shown with sysparm_display_value
    choices: dict[str, dict[str, str]] = field(default_factory=dict)

    def add(self, record: Record) -> Record:
        self.records.append(record)
        self.by_id[str(record["sys_id"])] = record
        return record


FIRST_NAMES = ("Abel", "Beth", "Carlos", "Dana", "Elif", "Femi", "Grete", "Hiro", "Ines", "Jonas")
LAST_NAMES = ("Tuter", "Anglin", "Rivera", "Okafor", "Yilmaz", "Adeyemi", "Berg", "Sato", "Costa")
GROUPS = ("Service Desk", "Network", "Database", "Hardware", "Software")
INCIDENT_STATES = {
    "1": "New",
    "2": "In Progress",
    "3": "On Hold",
    "6": "Resolved",
    "7": "Closed",
    "8": "Canceled",
}
PRIORITIES = {
    "1": "1 - Critical",
    "2": "2 - High",
    "3": "3 - Moderate",
    "4": "4 - Low",
    "5": "5 - Planning",
}
CI_CLASSES = ("cmdb_ci_server", "cmdb_ci_linux_server", "cmdb_ci_win_server", "cmdb_ci_database")


def _sys_id(seed: int, table: str, number: int) -> str:
    return hashlib.md5(f"{seed}/{table}/{number}".encode(), usedforsecurity=False).hexdigest()


def _stamp(rng: random.Random, start: float = 1_450_000_000.0) -> str:
    moment = start + rng.uniform(0, 250_000_000)
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _bool(rng: random.Random, share_true: float) -> str:
    return "true" if rng.random() < share_true else "false"


def _users(seed: int, rng: random.Random, username: str) -> Table:
    table = Table(
        "sys_user",
        (
            "sys_id", "user_name", "first_name", "last_name", "name", "email", "title",
            "active", "locked_out", "manager", "department", "sys_created_on",
            "sys_updated_on", "sys_created_by",
        ),
        "name",
    )  # fmt: skip
    people = [(username, "SnowMon", "Integration")] + [
        (f"{first.lower()}.{last.lower()}", first, last)
        for first, last in zip(
            FIRST_NAMES, rng.sample(LAST_NAMES * 2, len(FIRST_NAMES)), strict=True
        )
    ]
    first_manager: Ref | None = None
    for number, (user_name, first, last) in enumerate(people):
        sys_id = _sys_id(seed, "sys_user", number)
        created = _stamp(rng)
        record = table.add(
            {
                "sys_id": sys_id,
                "user_name": user_name,
                "first_name": first,
                "last_name": last,
                "name": f"{first} {last}",
                "email": f"{user_name}@example.com",
                "title": rng.choice(("Engineer", "Analyst", "Manager", "")),
                "active": "true" if number == 0 else _bool(rng, 0.85),
                "locked_out": "false",
                "manager": first_manager if first_manager and number > 2 else "",
                "department": "",
                "sys_created_on": created,
                "sys_updated_on": max(created, _stamp(rng)),
                "sys_created_by": "admin",
            }
        )
        if number == 1:
            first_manager = Ref("sys_user", sys_id, str(record["name"]))
    return table


def _ref(table: Table, record: Record) -> Ref:
    return Ref(table.name, str(record["sys_id"]), str(record[table.display_field]))


def _groups(seed: int, rng: random.Random, users: Table) -> Table:
    table = Table(
        "sys_user_group",
        ("sys_id", "name", "description", "active", "manager", "email", "sys_created_on"),
        "name",
    )
    for number, name in enumerate(GROUPS):
        table.add(
            {
                "sys_id": _sys_id(seed, "sys_user_group", number),
                "name": name,
                "description": f"{name} team",
                "active": "true",
                "manager": _ref(users, rng.choice(users.records[1:])),
                "email": f"{name.lower().replace(' ', '.')}@example.com",
                "sys_created_on": _stamp(rng),
            }
        )
    return table


def _incidents(seed: int, rng: random.Random, users: Table, groups: Table) -> Table:
    table = Table(
        "incident",
        (
            "sys_id", "number", "short_description", "state", "priority", "active",
            "caller_id", "assigned_to", "assignment_group", "opened_at", "sys_created_on",
            "sys_updated_on",
        ),
        "number",
        choices={"state": INCIDENT_STATES, "priority": PRIORITIES},
    )  # fmt: skip
    subjects = ("Email not working", "VPN drops", "Printer jam", "Password reset", "Slow laptop")
    for number in range(25):
        state = rng.choice(tuple(INCIDENT_STATES))
        opened = _stamp(rng)
        assigned = rng.random() < 0.6
        table.add(
            {
                "sys_id": _sys_id(seed, "incident", number),
                "number": f"INC{10001 + number:07d}",
                "short_description": rng.choice(subjects),
                "state": state,
                "priority": rng.choice(tuple(PRIORITIES)),
                "active": "true" if state in {"1", "2", "3"} else "false",
                "caller_id": _ref(users, rng.choice(users.records[1:])),
                "assigned_to": _ref(users, rng.choice(users.records[1:])) if assigned else "",
                "assignment_group": _ref(groups, rng.choice(groups.records)) if assigned else "",
                "opened_at": opened,
                "sys_created_on": opened,
                "sys_updated_on": max(opened, _stamp(rng)),
            }
        )
    return table


def _configuration_items(seed: int, rng: random.Random, groups: Table) -> Table:
    table = Table(
        "cmdb_ci",
        ("sys_id", "name", "sys_class_name", "operational_status", "ip_address", "support_group"),
        "name",
        choices={"operational_status": {"1": "Operational", "2": "Non-Operational"}},
    )
    for number in range(8):
        table.add(
            {
                "sys_id": _sys_id(seed, "cmdb_ci", number),
                "name": f"srv-{number + 1:03d}",
                "sys_class_name": rng.choice(CI_CLASSES),
                "operational_status": rng.choice(("1", "1", "1", "2")),
                "ip_address": f"10.0.{number}.{rng.randint(2, 250)}",
                "support_group": _ref(groups, rng.choice(groups.records)),
            }
        )
    return table


@functools.lru_cache(maxsize=8)
def demo_tables(seed: int, username: str) -> dict[str, Table]:
    rng = random.Random(seed)  # noqa: S311 - demo data, reproducible from the seed
    users = _users(seed, rng, username)
    groups = _groups(seed, rng, users)
    incidents = _incidents(seed, rng, users, groups)
    items = _configuration_items(seed, rng, groups)
    return {table.name: table for table in (users, groups, incidents, items)}
