"""The outbox: notifications accepted but not yet delivered, as the store keeps them.

A `Job` is one delivery (an alert's fire, reminder, escalation or resolution; or a
group's post or edit). It is written to the store's outbox before Slack is called and
deleted only after the record that remembers the delivery (its message ts, its
`delivered` mark) is saved, so a restart resends what was not sent and nothing else.

Each alert job carries a snapshot of its record as admitted. If the process died after
writing the job but before writing the record, `replay` puts the record back, so the same
health after the restart does not fire the alert a second time.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from monitor.errors import StoreError
from monitor.model import AlertRecord
from monitor.notify.catalog import Action, Notification
from monitor.store.codec import decode_alert, encode_alert

AlertKey = tuple[str, str]  # (connection_id, alert)


class JobKind(StrEnum):
    ALERT = "alert"
    GROUP = "group"


@dataclass(slots=True)
class Job:
    key: str
    kind: JobKind
    channel: str
    notification: Notification | None = None
    record: AlertRecord | None = None  # the alert's record as admitted
    group_id: str = ""
    reply: Action | None = None  # a group job's thread reply (reminder, resolution)

    @property
    def alert_key(self) -> AlertKey | None:
        n = self.notification
        return (n.connection_id, n.alert.value) if n is not None else None


def encode(job: Job) -> str:
    doc: dict[str, Any] = {"kind": job.kind.value, "channel": job.channel}
    if job.notification is not None:
        doc["notification"] = job.notification.to_json()
    if job.record is not None:
        doc["record"] = encode_alert(job.record)
    if job.group_id:
        doc["group"] = job.group_id
    if job.reply is not None:
        doc["reply"] = job.reply.value
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


def decode(key: str, payload: str) -> Job:
    """Raises ValueError on a payload that is not a job (a newer or broken writer)."""
    try:
        doc = json.loads(payload)
        kind = JobKind(doc["kind"])
        note = doc.get("notification")
        record = doc.get("record")
        reply = doc.get("reply")
        job = Job(
            key=key,
            kind=kind,
            channel=str(doc.get("channel", "")),
            notification=Notification.from_json(note) if note is not None else None,
            record=decode_alert(record, what=f"outbox job {key}") if record else None,
            group_id=str(doc.get("group", "")),
            reply=Action(reply) if reply is not None else None,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"outbox job {key} is not a job: {type(exc).__name__}") from None
    except (ValueError, StoreError) as exc:
        raise ValueError(f"outbox job {key} is not a job: {exc}") from None
    if kind is JobKind.ALERT and job.notification is None:
        raise ValueError(f"outbox job {key} is not a job: alert job without notification")
    if kind is JobKind.GROUP and not job.group_id:
        raise ValueError(f"outbox job {key} is not a job: group job without group")
    return job


def revision(record: AlertRecord) -> tuple[float, int]:
    """Orders the versions of one alert's record: incarnation first, then edits."""
    try:
        rev = int(record.extra.get("rev", "0"))
    except ValueError:
        rev = 0
    return record.firing_since, rev


def bump(record: AlertRecord) -> AlertRecord:
    return replace(record, extra={**record.extra, "rev": str(revision(record)[1] + 1)})


def replay(records: dict[AlertKey, AlertRecord], jobs: Iterable[Job]) -> list[Job]:
    """Bring `records` up to the newest snapshot of each alert job, in outbox order, and
    answer the jobs still to deliver: those whose record is live and not yet marked as
    delivered by this job or a later one."""
    ordered = sorted(jobs, key=lambda j: j.key)
    for job in ordered:
        key = job.alert_key
        snapshot = job.record
        if key is None or snapshot is None:
            continue
        stored = records.get(key)
        if stored is None or revision(snapshot) > revision(stored):
            records[key] = snapshot
    live = []
    for job in ordered:
        key, note = job.alert_key, job.notification
        if key is None or note is None:
            live.append(job)  # group jobs are checked against their group
            continue
        record = records.get(key)
        if record is None or record.firing_since != note.firing_since:
            continue  # a later incarnation, or gone
        if record.extra.get("delivered", "") >= job.key:
            continue  # sent just before the restart: the mark was saved, the delete was not
        live.append(job)
    return live


class Keys:
    """Outbox keys that sort in admission order, across restarts (seeded with every key
    seen at start) and unique across the replicas sharing a store (a random suffix)."""

    def __init__(self) -> None:
        self._seq = 0
        self._suffix = secrets.token_hex(3)

    def seen(self, key: str) -> None:
        head = key.split(".", 1)[0]
        if head.isdigit():
            self._seq = max(self._seq, int(head))

    def next(self) -> str:
        self._seq += 1
        return f"{self._seq:012d}.{self._suffix}"
