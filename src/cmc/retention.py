"""Data retention: ``cmc prune --before DATE`` removes what CMC no longer needs, in small batches.

Pruned: outbox messages that reached an end state (sent, delivered, failed, bounced, dead,
suppressed) before the date with their attempts, CFS events and scans older than it, merchant API
idempotency keys stored before it and failed-login windows that started before it; each owner module
says what of its tables may go. Transactions, profiles, short links (with their scan counters), rule
firings, marketing versions and their audit trail are kept: a rule's lift follows its firings and its
customers' transactions; so is the analytics roll-up, which counts those rows. Each batch is its own
short transaction, so the tender path never waits on a long delete.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Column, ColumnElement, Connection, Table, delete, select

from cmc import cfs_feed, links, signouts, throttle
from cmc.merchant import idempotency
from cmc.outbox import queue
from cmc.store.database import Database

Key = Column[Any]


@dataclass
class PruneReport:
    """Rows deleted, per table."""

    deleted: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the CLI."""
        return "pruned: " + ", ".join(f"{n} {table}" for table, n in self.deleted.items())


def targets(before: datetime) -> Iterator[tuple[Table, Key, ColumnElement[bool]]]:
    """(table, key column, condition) of everything older than ``before`` that may go, per owner."""
    for key, condition in (
        *queue.prune_targets(before),
        *cfs_feed.prune_targets(before),
        *links.prune_targets(before),
        *idempotency.prune_targets(before),
        *throttle.prune_targets(before),
        *signouts.prune_targets(before),
    ):
        assert isinstance(key.table, Table)
        yield key.table, key, condition


def delete_batch(
    conn: Connection, table: Table, key: Key, condition: ColumnElement[bool], *, size: int
) -> int:
    """Delete up to ``size`` rows of ``table`` matching ``condition``; returns how many went."""
    doomed = select(key).where(condition).limit(size).scalar_subquery()
    return conn.execute(delete(table).where(key.in_(doomed))).rowcount


async def prune(db: Database, *, before: datetime, batch: int = 1000) -> PruneReport:
    """Delete everything ``targets`` names, ``batch`` rows per transaction."""
    report = PruneReport()
    for table, key, condition in targets(before):
        total = 0
        while True:
            gone = await db.write(delete_batch, table, key, condition, size=batch)
            total += gone
            if gone < batch:
                break
        report.deleted[table.name] = total
    return report
