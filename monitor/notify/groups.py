"""Alert groups: one Slack message for many connections that went bad at once.

When more than `group_threshold` alerts fire in one channel within `group_window`, the
next ones join a group instead of getting a message each. A group is one message that
is edited as members join, escalate and resolve; it takes members for `group_window`
after it opened, then lives until every member has resolved.

A group is persisted as an `AlertRecord` of the pseudo-connection `GROUP_OWNER` (not a
valid connection id) named `group:<id>`; its members are the alert records whose
`extra["group"]` names it, so a restart rebuilds both without a table of its own.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from monitor.model import AlertRecord
from monitor.notify.catalog import Action
from monitor.notify.outbox import AlertKey, revision
from monitor.notify.rules import AlertPolicy, Grouping, group_mode

GROUP_OWNER: Final = "*"
GROUP_PREFIX: Final = "group:"


@dataclass(slots=True)
class Group:
    id: str
    channel: str
    opened_at: float
    severity: str = "warning"
    total: int = 0  # members ever, resolved ones included
    message_ts: str = ""
    channel_id: str = ""
    reminded_at: float = 0.0
    posted: bool = False  # Slack has seen it (the webhook has no ts to tell)
    done: bool = False  # window closed and every member resolved: the last message
    rev: int = 0
    members: set[AlertKey] = field(default_factory=set)
    # In memory only: rebuilt after a restart.
    dirty: bool = False  # Slack should see a new version
    queued: bool = False  # a job for this group waits in the queue
    reply: Action | None = None  # the thread reply the next job carries
    shown: str = ""  # the message as last sent, to skip edits that change nothing

    def to_record(self) -> AlertRecord:
        self.rev += 1
        return AlertRecord(
            connection_id=GROUP_OWNER,
            alert=f"{GROUP_PREFIX}{self.id}",
            firing_since=self.opened_at,
            severity=self.severity,
            last_notified_at=self.reminded_at,
            channel=self.channel,
            message_ts=self.message_ts,
            extra={
                "rev": str(self.rev),
                "channel_id": self.channel_id,
                "total": str(self.total),
                "posted": "1" if self.posted else "",
                "done": "1" if self.done else "",
            },
        )

    @classmethod
    def from_record(cls, record: AlertRecord) -> Group:
        extra = record.extra
        return cls(
            id=record.alert.removeprefix(GROUP_PREFIX),
            channel=record.channel,
            opened_at=record.firing_since,
            severity=record.severity,
            total=int(extra.get("total", "0") or 0),
            message_ts=record.message_ts,
            channel_id=extra.get("channel_id", ""),
            reminded_at=record.last_notified_at or record.firing_since,
            posted=bool(extra.get("posted")) or bool(record.message_ts),
            done=bool(extra.get("done")),
            rev=revision(record)[1],
        )

    @property
    def key(self) -> AlertKey:
        return (GROUP_OWNER, f"{GROUP_PREFIX}{self.id}")

    def is_open(self, now: float, policy: AlertPolicy) -> bool:
        return now < self.opened_at + policy.group_window


class Groups:
    """Every live group, the open one per channel, and each channel's recent fires."""

    def __init__(self, policy: AlertPolicy) -> None:
        self._policy = policy
        self._by_id: dict[str, Group] = {}
        self._latest: dict[str, Group] = {}  # channel → its most recently opened group
        self._recent: dict[str, deque[float]] = {}

    def __iter__(self) -> Iterator[Group]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, group_id: str) -> Group | None:
        return self._by_id.get(group_id)

    def add(self, group: Group) -> None:
        self._by_id[group.id] = group
        latest = self._latest.get(group.channel)
        if latest is None or group.opened_at >= latest.opened_at:
            self._latest[group.channel] = group

    def discard(self, group: Group) -> None:
        self._by_id.pop(group.id, None)
        if self._latest.get(group.channel) is group:
            del self._latest[group.channel]

    def mode(self, channel: str, now: float) -> Grouping:
        recent = self._recent.get(channel)
        if recent is not None:
            while recent and recent[0] <= now - self._policy.group_window:
                recent.popleft()
        latest = self._latest.get(channel)
        return group_mode(
            len(recent) if recent else 0,
            latest.opened_at if latest is not None else None,
            now,
            self._policy,
        )

    def note_fire(self, channel: str, now: float) -> None:
        self._recent.setdefault(channel, deque()).append(now)

    def join(self, channel: str, now: float, key: AlertKey, severity: str, new_id: str) -> Group:
        """Add an alert to the channel's open group, opening one (named `new_id`) if
        there is none."""
        group = self._latest.get(channel)
        if group is None or not group.is_open(now, self._policy):
            group = Group(id=new_id, channel=channel, opened_at=now, reminded_at=now)
            self.add(group)
        group.members.add(key)
        group.total += 1
        if _worse(severity, group.severity):
            group.severity = severity
        group.dirty = True
        self.note_fire(channel, now)
        return group


def _worse(a: str, b: str) -> bool:
    order = {"critical": 0, "warning": 1, "info": 2}
    return order.get(a, 3) < order.get(b, 3)
