"""The live feed behind customer-facing screens: ``cfs_events`` rows fanned out to open CFS pages.

A sale at a screen writes its ``cfs_events`` row in its own database transaction, on whichever
process handled it. Each process runs ONE poller that reads the rows added since the last round
(``id > last``, starting from the newest row at start-up, so nothing old is replayed) every
``CMC_CFS_POLL_SECONDS`` and hands each event to the subscribers of its screen (posSystemId,
posLocationId, terminalId) in this process. So a CFS page connected to process A sees a sale
handled by process B, on SQLite or PostgreSQL alike, and never a sale of another location.

Ids are not always committed in order: on PostgreSQL a sale that took id 10 may commit after one
that took id 11. A round that skips ids remembers them as gaps and looks them up again for a few
seconds (a rolled-back sale leaves a gap that never fills), so a late commit is still pushed.

``wake()`` starts a round at once: a PostgreSQL ``LISTEN`` callback (or a sale handled in this
process) can call it so the push does not wait for the next tick. A process with no screen
connected ignores it: it has nobody to push to, and the ticks keep its place in the feed (a page
that connects later skips what its first state already shows). Subscriber queues are bounded; a
slow subscriber loses its oldest events instead of holding up the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Column, ColumnElement, Connection, func, select

from cmc import background
from cmc.screens import Screen
from cmc.store import notifications, tables
from cmc.store.database import Database
from cmc.store.driver import Tx
from cmc.store.statements import Write

__all__ = [
    "CfsEvent",
    "CfsFeed",
    "Subscription",
    "events_after",
    "events_with_ids",
    "last_event",
    "latest_id",
    "prune_targets",
    "publish",
]

log = structlog.get_logger(__name__)
MAX_GAP = 1000
"""Skipped ids remembered at most; a larger jump is a sequence restart, not concurrent sales."""


@dataclass(frozen=True)
class CfsEvent:
    """A sale at a screen; ``payload`` holds what the screen shows of it (``cmc.screen_state``)."""

    id: int
    """The feed's sequence: a screen resumes after the last id it showed."""
    screen: Screen
    payload: dict[str, Any]
    created_at: datetime


# --- store --------------------------------------------------------------------------------------

_t = tables.cfs_events
_COLUMNS = [c.name for c in _t.columns if c.name != "id"]
_INSERT = Write.insert(_t, name="cfs_feed.publish", prefix="event_", columns=_COLUMNS)
"""Deferred: the sale's own insert carries it on PostgreSQL."""
_INSERT_AND_WAKE = Write.insert(
    _t,
    name="cfs_feed.publish_and_wake",
    prefix="event_",
    columns=_COLUMNS,
    returning=func.pg_notify(notifications.CFS_CHANNEL, ""),
    only="postgresql",
)
"""PostgreSQL: the row and its NOTIFY (sent at commit), deferred like ``_INSERT``."""


async def publish(
    tx: Tx, screen: Screen, payload: dict[str, Any], *, now: datetime, wake: bool = True
) -> None:
    """Write an event for a screen in the caller's transaction; every process pushes it.

    ``wake`` also NOTIFYs the pollers on PostgreSQL, so the push does not wait for the next poll;
    without it the event goes out within ``CMC_CFS_POLL_SECONDS``. Either way the write is deferred:
    the sale's own insert carries it, NOTIFY included, so a screen event costs no round trip.
    """
    values = {**screen._asdict(), "payload": payload, "created_at": now}
    await tx.defer(_INSERT_AND_WAKE if wake and tx.dialect == "postgresql" else _INSERT, values)


def prune_targets(before: datetime) -> list[tuple[Column[Any], ColumnElement[bool]]]:
    """What ``cmc prune`` deletes here: events older than ``before``, but never the newest one.

    The newest event stays: SQLite would hand its id out again, and the live feeds read ids upward.
    """
    newest = select(func.max(_t.c.id)).scalar_subquery()
    return [(_t.c.id, (_t.c.created_at < before) & (_t.c.id < newest))]


_LATEST_ID = select(func.coalesce(func.max(_t.c.id), 0))


def latest_id(conn: Connection) -> int:
    """The newest event id (0 when there is none)."""
    return int(conn.execute(_LATEST_ID).scalar_one())


def events_after(conn: Connection, after: int, *, limit: int) -> list[CfsEvent]:
    """Events with ``id > after`` in id order."""
    query = select(_t).where(_t.c.id > after).order_by(_t.c.id).limit(limit)
    return [_event(row) for row in conn.execute(query)]


def events_with_ids(conn: Connection, ids: list[int]) -> list[CfsEvent]:
    """The events among ``ids`` that exist (committed) now."""
    if not ids:
        return []
    return [_event(row) for row in conn.execute(select(_t).where(_t.c.id.in_(ids)).order_by(_t.c.id))]


def last_event(conn: Connection, screen: Screen) -> CfsEvent | None:
    """The screen's newest event (one probe of ``ix_cfs_events_screen``)."""
    query = (
        select(_t)
        .where(
            _t.c.pos_system_id == screen.pos_system_id,
            _t.c.location_id == screen.location_id,
            _t.c.terminal_id == screen.terminal_id,
        )
        .order_by(_t.c.id.desc())
        .limit(1)
    )
    row = conn.execute(query).first()
    return None if row is None else _event(row)


def _event(row: Any) -> CfsEvent:
    payload = row.payload if isinstance(row.payload, dict) else {}
    return CfsEvent(
        row.id, Screen(row.pos_system_id, row.location_id, row.terminal_id), payload, row.created_at
    )


# --- fan-out ------------------------------------------------------------------------------------


class Subscription:
    """One open CFS page: a bounded queue of the events of its screen."""

    def __init__(self, screen: Screen, size: int) -> None:
        self.screen = screen
        self.dropped = 0
        self._queue: asyncio.Queue[CfsEvent] = asyncio.Queue(maxsize=size)

    def offer(self, event: CfsEvent) -> None:
        """Queue ``event``; when full, drop the oldest (a screen only cares about the latest)."""
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    async def next(self, idle: float) -> CfsEvent | None:
        """The next event, or ``None`` after ``idle`` seconds without one (time for a keep-alive)."""
        try:
            return await asyncio.wait_for(self._queue.get(), idle)
        except TimeoutError:
            return None


class CfsFeed:
    """The process's one poller over ``cfs_events`` and its in-process subscribers."""

    def __init__(
        self,
        db: Database,
        *,
        poll: timedelta,
        queue_size: int = 16,
        batch: int = 500,
        gap_timeout: timedelta = timedelta(seconds=5),
    ) -> None:
        self._db = db
        self._interval = poll.total_seconds()
        self._queue_size = queue_size
        self._batch = batch
        self._gap_timeout = gap_timeout.total_seconds()
        self._gaps: dict[int, float] = {}
        """Skipped ids (maybe still uncommitted) → when to stop looking for them (loop time)."""
        self._subscribers: dict[Screen, set[Subscription]] = {}
        self._wake = asyncio.Event()
        self._polling = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.last_id = 0

    async def start(self) -> None:
        """Start polling after the newest existing event (no replay of old ones)."""
        self.last_id = await self._db.read(latest_id)
        self._task = asyncio.create_task(self._run(), name="cmc-cfs-feed")

    async def stop(self) -> None:
        """Stop polling."""
        await background.cancel(self._task)
        self._task = None

    def wake(self) -> None:
        """Poll now rather than at the next tick (e.g. on a PostgreSQL NOTIFY), if a screen listens here.

        Every QR sale of every process NOTIFYs; without this check each process with no screen
        would read the feed's newest id once per such sale, only to skip it.
        """
        if self._subscribers:
            self._wake.set()

    @contextlib.contextmanager
    def subscribe(self, screen: Screen) -> Iterator[Subscription]:
        """Receive the screen's events while the ``with`` block runs."""
        subscription = Subscription(screen, self._queue_size)
        self._subscribers.setdefault(screen, set()).add(subscription)
        try:
            yield subscription
        finally:
            subscribers = self._subscribers.get(screen, set())
            subscribers.discard(subscription)
            if not subscribers:
                self._subscribers.pop(screen, None)

    @property
    def subscriber_count(self) -> int:
        """Open subscriptions in this process."""
        return sum(len(s) for s in self._subscribers.values())

    def publish(self, event: CfsEvent) -> int:
        """Hand ``event`` to its screen's subscribers; returns how many got it."""
        subscribers = self._subscribers.get(event.screen, ())
        for subscription in subscribers:
            subscription.offer(event)
        return len(subscribers)

    async def poll(self) -> int:
        """One round: publish every event committed since the last one; returns how many."""
        async with self._polling:  # rounds never overlap, so no event goes out twice
            return await self._poll()

    async def _poll(self) -> int:
        if not self._subscribers:
            # No screen is connected to this process: skip what it would have read, cheaply.
            self._gaps.clear()
            newest = await self._db.read(latest_id)
            if not self._subscribers:
                # A page that subscribed during the read may not have seen the newest event yet:
                # then the next round reads from the old place (the page skips what it has shown).
                self.last_id = max(self.last_id, newest)
            return 0
        now = asyncio.get_running_loop().time()
        self._gaps = {i: until for i, until in self._gaps.items() if until > now}
        late = await self._db.read(events_with_ids, sorted(self._gaps)) if self._gaps else []
        for event in late:
            del self._gaps[event.id]
            self.publish(event)
        total = len(late)
        while True:
            events = await self._db.read(events_after, self.last_id, limit=self._batch)
            for event in events:
                self._note_gap(event.id, until=now + self._gap_timeout)
                self.publish(event)
                self.last_id = event.id
            total += len(events)
            if len(events) < self._batch:
                return total

    def _note_gap(self, event_id: int, *, until: float) -> None:
        """Remember the ids skipped before ``event_id`` (at most the last ``MAX_GAP``)."""
        for missing in range(max(self.last_id + 1, event_id - MAX_GAP), event_id):
            self._gaps[missing] = until
        while len(self._gaps) > MAX_GAP:
            del self._gaps[next(iter(self._gaps))]

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.poll()
            except Exception:
                # A database hiccup must not kill the feed; the next round catches up from last_id.
                log.exception("cfs feed poll failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
