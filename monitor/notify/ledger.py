"""The alert ledger: alert records, groups and outbox jobs in memory, and their writes.

Everything alerting knows lives here between two writes; `persist` writes the changes in
the order that keeps a crash harmless at every step:
1. new outbox jobs (with their record snapshots): once Slack might hear of it, a restart
   must know;
2. changed records (with message ts and `delivered` marks);
3. outbox deletes of finished jobs, only after the marks of step 2 are saved;
4. record deletes, only after their jobs are gone from the outbox.
A failed write keeps its changes for the next try; nothing here waits on Slack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace

from monitor.model import AlertRecord
from monitor.notify.groups import GROUP_OWNER, Group, Groups
from monitor.notify.outbox import AlertKey, Job, JobKind, Keys, decode, encode, replay, revision
from monitor.notify.rules import AlertPolicy
from monitor.store import Store

log = logging.getLogger("snowmon.notify")


class Ledger:
    def __init__(self, store: Store, policy: AlertPolicy) -> None:
        self._store = store
        self.records: dict[str, dict[str, AlertRecord]] = {}  # connection → alert → record
        self.groups = Groups(policy)
        self.queue: deque[Job] = deque()
        self.keys = Keys()
        self._dirty: dict[AlertKey, AlertRecord | None] = {}
        self._unsaved: dict[str, Job] = {}
        self._done: list[str] = []
        self._persisting = asyncio.Lock()

    # -- reading -------------------------------------------------------------------------

    def get(self, key: AlertKey) -> AlertRecord | None:
        return self.records.get(key[0], {}).get(key[1])

    def of(self, connection_id: str) -> Mapping[str, AlertRecord]:
        return self.records.get(connection_id, {})

    def all_records(self) -> list[AlertRecord]:
        return [r for by_alert in self.records.values() for r in by_alert.values()]

    @property
    def pending_writes(self) -> bool:
        return bool(self._dirty or self._unsaved or self._done)

    # -- changing ------------------------------------------------------------------------

    def write(self, key: AlertKey, record: AlertRecord | None) -> AlertRecord | None:
        """Set (or delete, with None) one alert's record; the stored revision grows by
        one on every write, so `outbox.replay` can tell old snapshots from new ones."""
        current = self.get(key)
        if record is None:
            if current is None:
                return None
            del self.records[key[0]][key[1]]
            if not self.records[key[0]]:
                del self.records[key[0]]
            self._dirty[key] = None
            group = self.groups.get(current.extra.get("group", ""))
            if group is not None and key in group.members:
                group.members.discard(key)
                group.dirty = True
            return None
        base = max(revision(record)[1], revision(current)[1] if current else 0)
        stamped = replace(record, extra={**record.extra, "rev": str(base + 1)})
        self.records.setdefault(key[0], {})[key[1]] = stamped
        self._dirty[key] = stamped
        return stamped

    def mark(self, key: AlertKey, firing_since: float, **extra: str) -> None:
        """Merge `extra` into a live record of the same incarnation (after a delivery)."""
        record = self.get(key)
        if record is not None and record.firing_since == firing_since:
            ts = extra.pop("message_ts", None)
            changed = replace(record, extra={**record.extra, **extra})
            if ts is not None:
                changed = replace(changed, message_ts=ts)
            self.write(key, changed)

    def write_group(self, group: Group) -> None:
        self._dirty[group.key] = group.to_record()

    def drop_group(self, group: Group) -> None:
        self.groups.discard(group)
        self._dirty[group.key] = None
        for key in list(group.members):
            self.write(key, None)

    def enqueue(self, job: Job) -> None:
        self.queue.append(job)
        self._unsaved[job.key] = job

    def finish(self, job: Job) -> None:
        """A job is over (delivered, refused for good, or no longer needed)."""
        with contextlib.suppress(ValueError):
            self.queue.remove(job)
        if self._unsaved.pop(job.key, None) is None:
            self._done.append(job.key)

    def forget(self, connection_ids: Iterable[str]) -> None:
        """Drop these connections' records from memory only: another replica owns them
        now, and the store keeps them for it. Writes not yet persisted stay queued."""
        for cid in connection_ids:
            self.records.pop(cid, None)

    # -- the store -----------------------------------------------------------------------

    async def adopt(self, connection_ids: Collection[str]) -> None:
        """Take these connections' records as the store holds them now: their previous
        owner may have fired, reminded or resolved since `load`. This process's own
        unsaved writes go first, so the store is the whole truth. Raises `StoreError`."""
        if self.pending_writes:
            await self.persist()
        fresh: dict[str, dict[str, AlertRecord]] = {}
        for record in await self._store.load_alerts_for(connection_ids):
            fresh.setdefault(record.connection_id, {})[record.alert] = record
            self.keys.seen(record.extra.get("delivered", ""))
        for cid in connection_ids:
            # A write made while the store was read (a late delivery's mark) is newer.
            mine = self.records.pop(cid, {})
            merged = {a: r for a, r in fresh.get(cid, {}).items() if (cid, a) not in self._dirty}
            merged.update({a: r for a, r in mine.items() if (cid, a) in self._dirty})
            if merged:
                self.records[cid] = merged
            for alert, record in merged.items():
                group = self.groups.get(record.extra.get("group", ""))
                if group is not None:
                    group.members.add((cid, alert))

    async def load(self) -> None:
        """Read records and outbox, repair what a crash between two writes left behind,
        and queue the jobs still to deliver."""
        stored: dict[AlertKey, AlertRecord] = {}
        groups: list[AlertRecord] = []
        for record in await self._store.load_alerts():
            if record.connection_id == GROUP_OWNER:
                groups.append(record)
            else:
                stored[(record.connection_id, record.alert)] = record
            self.keys.seen(record.extra.get("delivered", ""))
        jobs: list[Job] = []
        for key, payload in await self._store.outbox_all():
            self.keys.seen(key)
            try:
                jobs.append(decode(key, payload))
            except ValueError as exc:
                log.warning("slack.outbox_unreadable", extra={"key": key, "error": str(exc)})
                self._done.append(key)
        live = replay(stored, jobs)
        live_keys = {job.key for job in live}
        self._done.extend(job.key for job in jobs if job.key not in live_keys)
        self.records = {}
        for (cid, alert), record in stored.items():
            self.records.setdefault(cid, {})[alert] = record
        for record in groups:
            self.groups.add(Group.from_record(record))
        for (cid, alert), record in stored.items():
            group = self.groups.get(record.extra.get("group", ""))
            if group is not None:
                group.members.add((cid, alert))
                group.dirty = group.dirty or record.resolved_at is not None
        waiting = {j.alert_key for j in live if j.kind is JobKind.ALERT}
        for job in live:
            group = self.groups.get(job.group_id)
            if job.kind is JobKind.GROUP and (group is None or group.queued):
                self._done.append(job.key)
                continue
            if group is not None:
                group.queued = True
            self.queue.append(job)
        for alert_key, record in stored.items():
            in_group = self.groups.get(record.extra.get("group", "")) is not None
            if record.resolved_at is not None and alert_key not in waiting and not in_group:
                # Its resolution was delivered (or given up) just before the restart.
                self.write(alert_key, None)

    async def persist(self) -> None:
        """Write what changed, in crash-safe order. Raises `StoreError` (or TimeoutError
        from the caller's deadline); whatever was not written is kept for the next try."""
        async with self._persisting:  # the loop's writes and an adoption's, one at a time
            await self._persist()

    async def _persist(self) -> None:
        for job in list(self._unsaved.values()):
            await self._store.outbox_put(job.key, encode(job))
            self._unsaved.pop(job.key, None)
        dirty, self._dirty = self._dirty, {}
        try:
            saves = [r for r in dirty.values() if r is not None]
            if saves:
                await self._store.save_alerts(saves)
            while self._done:
                await self._store.outbox_delete(self._done[0])
                self._done.pop(0)
            deletes = [k for k, r in dirty.items() if r is None]
            if deletes:
                await self._store.delete_alerts(deletes)
        except BaseException:
            # Newer changes made meanwhile win; the rest is written again next time.
            for key, value in dirty.items():
                self._dirty.setdefault(key, value)
            raise
