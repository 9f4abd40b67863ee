"""Data retention: ``cmc prune --before DATE`` removes what CMC no longer needs, in small batches.

Pruned: interaction sessions that expired before the date, outbox messages that reached an end state
(sent, dead, suppressed) before it with their attempts, and CFS events older than it. Transactions,
profiles, short links and rule firings are kept. Each batch is its own short transaction, so the
tender path never waits on a long delete.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Column, ColumnElement, Connection, Table, delete, func, select

from cmc.store import tables
from cmc.store.database import Database

DONE = ("sent", "dead", "suppressed")
Key = Column[str] | Column[int]


@dataclass
class PruneReport:
    """Rows deleted, per table."""

    deleted: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the CLI."""
        return "pruned: " + ", ".join(f"{n} {table}" for table, n in self.deleted.items())


def targets(before: datetime) -> Iterator[tuple[Table, Key, ColumnElement[bool]]]:
    """(table, key column, condition) of everything older than ``before`` that may go."""
    s, m, a, e = tables.interaction_sessions, tables.messages, tables.message_attempts, tables.cfs_events
    old_messages = select(m.c.id).where(m.c.status.in_(DONE), m.c.created_at < before)
    yield a, a.c.id, a.c.message_id.in_(old_messages)
    yield m, m.c.id, (m.c.status.in_(DONE) & (m.c.created_at < before))
    yield s, s.c.id, s.c.expires_at < before
    # The newest event stays: SQLite would hand its id out again, and the live feeds read ids upward.
    newest = select(func.max(e.c.id)).scalar_subquery()
    yield e, e.c.id, (e.c.created_at < before) & (e.c.id < newest)


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
