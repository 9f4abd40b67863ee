"""The roll-up: what analytics counts, per merchant and UTC hour, for the hours that no longer change.

A busy company sells a million times a year; counting those rows again for every summary of the year
took a second. The roll-up (table ``rollups``, every statement on it here) keeps, per merchant, UTC
hour, metric, rule and variant, a count and an amount: tenders and identified tenders (by the sale's
time), firings per rule and variant and the influenced revenue (by when they were recorded), short
links made. A window is then read in pieces (``Plan``): the roll-up for its whole hours, the rows
themselves for the rest (``cmc.analytics``). Scans, messages (whose states move on) and opt-outs are
fewer and are always counted from their rows.

What the roll-up holds is its ``Coverage``, one ``meta`` value:

- **rows stamped with the server's clock** (firings, links): those of every hour before
  ``closed_before``. An hour is rolled up ``SETTLE`` after it ends, when no write that read its clock
  in that hour is still open.
- **sales**, which count by their own time (``transactionDate``) and may arrive days late from a
  POS's offline outbox: those whose id sorts below ``sales_before``. A sale's id is its session's,
  which begins with the session's issue time (``cmc.sessions.first_id_at``), and a session is
  accepted for ``session_ttl`` only: once that and ``SETTLE`` have passed since an instant, every
  sale of a session issued before it is stored, and a sale stored later has a later id. So an old
  hour's count may still grow, and the sales above the mark, the last half hour's or so, are counted
  from the table by a range of its primary key (``transactions.unrolled_counts``).

Rolling up is a background loop of ``cmc serve`` (``Rollups``, every ``CMC_ROLLUP_SECONDS``), in
steps of bounded size, each one short write transaction; on PostgreSQL the coverage row is locked for
the step, so processes rolling up at once take turns and never count a row twice. A roll-up that fell
behind (the loop turned off, a long outage) is only slower to read: ``Plan`` counts what it lacks
from the rows. Roll-ups are kept like the rows they count: ``cmc prune`` removes neither.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import Connection, func, select
from sqlalchemy.dialects import postgresql, sqlite

from cmc import background, firings, links, sessions, transactions
from cmc.clock import Clock
from cmc.registry import store as registry_store
from cmc.store import buckets, meta, tables
from cmc.store.buckets import Span
from cmc.store.database import Database

log = structlog.get_logger(__name__)
_r = tables.rollups
KEY = "rollup_coverage"
SETTLE = timedelta(minutes=5)
"""How long after an hour ends (or a session expires) CMC takes its rows to be all written."""
SALES_PER_STEP = 5_000
"""Sales rolled up in one write transaction: some 60 ms on SQLite, where sales wait for it."""
HOURS_PER_STEP = timedelta(days=1)
"""Server-stamped hours rolled up in one write transaction (a day of a busy company's firings)."""
MAX_LAG = timedelta(hours=2)
"""A roll-up of sales further behind than this is not read: its tail would cost more than the rows."""
MICROS = Decimal(1_000_000)
_KEY_COLUMNS = ("pos_system_id", "company_id", "metric", "hour", "rule", "variant")
Row = tuple[str, str, str, datetime, str, str]
"""A roll-up row's key, in ``_KEY_COLUMNS`` order."""
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Coverage:
    """What the roll-up holds (module docstring)."""

    closed_before: datetime | None = None
    """Server-stamped rows before this hour; None: none yet."""
    sales_before: str = ""
    """Sales whose id sorts below this; "": none yet."""

    @staticmethod
    def parse(text: str | None) -> Coverage:
        if not text:
            return Coverage()
        value = json.loads(text)
        closed = value.get("closedBefore")
        return Coverage(datetime.fromisoformat(closed) if closed else None, str(value.get("salesBefore", "")))

    def text(self) -> str:
        closed = None if self.closed_before is None else self.closed_before.isoformat()
        return json.dumps({"closedBefore": closed, "salesBefore": self.sales_before})


def coverage(conn: Connection) -> Coverage:
    """What the roll-up holds now."""
    return Coverage.parse(meta.get(conn, KEY))


def floor_hour(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(at: datetime) -> datetime:
    start = floor_hour(at)
    return start if start == at else start + HOUR


# --- reading: which piece of a window comes from where ----------------------------------------------


@dataclass(frozen=True)
class Plan:
    """A window in pieces: ``rolled`` (whole hours) from the roll-up, ``live`` from the rows.

    For sales, ``tail`` is the mark above which the rolled hours' sales are still in the rows only
    (``transactions.unrolled_counts``); None for the other metrics, whose rolled hours are complete.
    """

    rolled: Span | None
    live: list[Span]
    tail: str | None = None


def stamped_plan(span: Span, cover: Coverage) -> Plan:
    """The pieces of ``span`` for firings and links."""
    if cover.closed_before is None:
        return Plan(None, [span])
    return _plan(span, min(floor_hour(span.until), cover.closed_before))


def sales_plan(span: Span, cover: Coverage, *, now: datetime) -> Plan:
    """The pieces of ``span`` for tenders: whole hours from the roll-up plus the sales above its mark."""
    if not cover.sales_before or cover.sales_before < sessions.first_id_at(now - MAX_LAG):
        return Plan(None, [span])
    plan = _plan(span, floor_hour(span.until))
    return Plan(plan.rolled, plan.live, cover.sales_before) if plan.rolled else plan


def _plan(span: Span, rolled_until: datetime) -> Plan:
    start = ceil_hour(span.since)
    if start >= rolled_until:
        return Plan(None, [span])
    edges = (span.part(span.since, start), span.part(rolled_until, span.until))
    return Plan(span.part(start, rolled_until), [edge for edge in edges if edge is not None])


def totals(conn: Connection, span: Span, metric: str) -> dict[tuple[str, str], tuple[int, Decimal]]:
    """The roll-up's (count, amount) of ``metric`` in the span's hours, per (rule, variant)."""
    query = (
        select(_r.c.rule, _r.c.variant, func.sum(_r.c.count), func.sum(_r.c.micros))
        .where(*span.where(_r, "hour"), _r.c.metric == metric)
        .group_by(_r.c.rule, _r.c.variant)
    )
    return {
        (rule, variant): (int(count), Decimal(int(micros)) / MICROS)
        for rule, variant, count, micros in conn.execute(query)
    }


def series(
    conn: Connection, span: Span, metric: str, bucket: str, rule: str | None = None
) -> dict[datetime, int]:
    """The roll-up's count of ``metric`` per UTC ``bucket`` in the span's hours, of one rule or all."""
    label = buckets.bucket_of(_r.c.hour, bucket)
    where = [_r.c.metric == metric, *([] if rule is None else [_r.c.rule == rule])]
    query = select(label, func.sum(_r.c.count)).where(*span.where(_r, "hour"), *where).group_by(label)
    return {buckets.instant(text, bucket): int(n) for text, n in conn.execute(query)}


# --- writing: one bounded step -----------------------------------------------------------------------


def step(conn: Connection, *, now: datetime, session_ttl: timedelta) -> bool:
    """Roll up a bounded part of what is due, in the caller's write transaction; True if more is due."""
    meta.get_or_create(conn, KEY, Coverage().text())
    cover = Coverage.parse(meta.get(conn, KEY, lock=True))
    tallies: Counter[Row] = Counter()
    amounts: Counter[Row] = Counter()
    closed, more_stamped = _stamped(conn, cover.closed_before, floor_hour(now - SETTLE), tallies, amounts)
    mark = sessions.first_id_at(now - session_ttl - SETTLE - sessions.CLOCK_SKEW)
    sales_before, more_sales = _sales(conn, cover.sales_before, mark, tallies)
    _add(conn, tallies, amounts)
    moved = Coverage(closed, sales_before)
    if moved != cover:  # an idle round writes nothing
        meta.put(conn, KEY, moved.text())
    return more_stamped or more_sales


def _stamped(
    conn: Connection,
    start: datetime | None,
    due: datetime,
    tallies: Counter[Row],
    amounts: Counter[Row],
) -> tuple[datetime, bool]:
    companies = registry_store.company_keys(conn)
    if start is None:  # the first step: from the first row of any company
        firsts = [
            found
            for pos, company in companies
            for found in (
                firings.earliest(conn, pos_system_id=pos, company_id=company),
                links.earliest(conn, pos_system_id=pos, company_id=company),
            )
            if found is not None
        ]
        start = min((floor_hour(first) for first in firsts), default=due)
    end = min(due, start + HOURS_PER_STEP)
    if start >= end:
        return start, False
    for pos, company in companies:
        span = Span(pos, company, start, end)
        for (hour, rule, variant), n in firings.by_hour(conn, span).items():
            tallies[(pos, company, "firings", hour, rule, variant)] += n
        for hour, amount in firings.influenced_by_hour(conn, span).items():
            key = (pos, company, "influenced", hour, "", "treatment")
            tallies[key] += 0  # an amount only
            amounts[key] += int(amount * MICROS)
        for hour, n in links.made_by_hour(conn, span).items():
            tallies[(pos, company, "links", hour, "", "")] += n
    return end, end < due


def _sales(conn: Connection, start: str, due: str, tallies: Counter[Row]) -> tuple[str, bool]:
    if start >= due:
        return start, False
    stop = transactions.id_after(conn, start, skip=SALES_PER_STEP)
    end = due if stop is None or stop >= due else stop
    for sold in transactions.sales_by_hour(conn, after=start, before=end):
        tallies[(sold.pos_system_id, sold.company_id, "tenders", sold.hour, "", "")] += sold.tenders
        tallies[(sold.pos_system_id, sold.company_id, "identified", sold.hour, "", "")] += sold.identified
    return end, end < due


def _add(
    conn: Connection,
    tallies: Mapping[Row, int],
    amounts: Mapping[Row, int],
) -> None:
    """Add to the roll-up's rows (a late sale adds to an hour already rolled up)."""
    rows = [
        {**dict(zip(_KEY_COLUMNS, key, strict=True)), "count": n, "micros": amounts.get(key, 0)}
        for key, n in tallies.items()
        if n or amounts.get(key)
    ]
    if not rows:
        return
    dialect: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    for start in range(0, len(rows), 1000):
        upsert = dialect.insert(_r).values(rows[start : start + 1000])
        conn.execute(
            upsert.on_conflict_do_update(
                index_elements=list(_KEY_COLUMNS),
                set_={
                    "count": _r.c.count + upsert.excluded.count,
                    "micros": _r.c.micros + upsert.excluded.micros,
                },
            )
        )


async def catch_up(db: Database, *, now: datetime, session_ttl: timedelta) -> int:
    """Roll up everything due at ``now``, a step per write transaction; returns the steps taken."""
    steps = 1
    while await db.write(step, now=now, session_ttl=session_ttl):
        steps += 1
    return steps


class Rollups(background.Loop):
    """The background loop of one ``cmc serve`` process: ``catch_up`` every ``every``."""

    name = "cmc-rollups"

    def __init__(self, db: Database, *, clock: Clock, session_ttl: timedelta, every: timedelta) -> None:
        super().__init__()
        self._db, self._clock, self._ttl, self._every = db, clock, session_ttl, every.total_seconds()

    async def run(self) -> None:
        while True:
            try:
                await catch_up(self._db, now=self._clock(), session_ttl=self._ttl)
            except Exception:  # a database outage: the next round tries again
                log.warning("rollup_failed", exc_info=True)
            await asyncio.sleep(self._every)


def summed(parts: Iterable[Mapping[Any, int]]) -> Counter[Any]:
    """Counts of several pieces, added key by key."""
    total: Counter[Any] = Counter()
    for part in parts:
        total.update(part)
    return total
