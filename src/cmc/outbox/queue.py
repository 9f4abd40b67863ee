"""The outbox's state transitions, each one short database transaction (store functions).

    queued ──claim──► sending ──► sent
      ▲                  │ ├────► queued (temporary failure, later next_attempt_at)
      │                  │ └────► dead   (permanent failure or the last attempt failed)
      └── quiet hours ◄──┘ (an SMS claimed inside them waits, no attempt spent)
    queued/sending ──► suppressed (the recipient opted out before the message went)

``claim`` takes due rows with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so any number of workers
share one outbox without taking the same row; on SQLite the single writer (``BEGIN IMMEDIATE``)
serialises claimers. A claimed row carries a lease: if its worker dies mid-send, the row becomes
due again when the lease runs out (the lost attempt counts, so a message that kills its worker
cannot loop forever). ``lease_until`` doubles as the claim token: a worker whose lease was taken
over finds its update matches no row and leaves the row to the new owner.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, select, update

from cmc.outbox.optouts import opted_out_clause
from cmc.outbox.quiet import DEFAULT_WINDOW, QuietHours, next_allowed, parse_window
from cmc.store import tables
from cmc.store.prepared import Prepared
from cmc.store.types import UtcDateTime

LEASE_LOST = "lease expired: the worker sending it stopped before recording the outcome"


@dataclass(frozen=True)
class Claimed:
    """A message this worker now holds, until ``lease_until``."""

    id: str
    channel: str
    recipient: str
    subject: str | None
    body: str
    optout_token: str
    attempts: int
    """Attempts including the one now starting."""
    lease_until: datetime
    tz: zoneinfo.ZoneInfo
    quiet: QuietHours


@dataclass(frozen=True)
class Claim:
    """What one ``claim`` did: messages to send now, and those settled without sending."""

    messages: list[Claimed]
    suppressed: int = 0
    deferred: int = 0
    dead: int = 0

    @property
    def handled(self) -> int:
        """Every message this claim took out of the due set."""
        return len(self.messages) + self.suppressed + self.deferred + self.dead


def claim(conn: Connection, *, now: datetime, limit: int, lease: timedelta, max_attempts: int) -> Claim:
    """Take up to ``limit`` due messages (queued and due, or sending with an expired lease)."""
    m = tables.messages
    rows = _due(conn, now, limit)
    suppressed, dead, claimed = [], [], []
    deferred = 0
    lease_until = now + lease
    for row in rows:
        if row.opted_out:
            suppressed.append(row.id)
            continue
        if row.status == "sending":
            _record(conn, row.id, now=now, ok=False, error=LEASE_LOST)
            if row.attempts >= max_attempts:
                dead.append(row.id)
                continue
        tz, quiet = location_window(row.timezone, row.quiet_hours)
        allowed = next_allowed(now, tz, quiet) if row.channel == "sms" else now
        if allowed > now:
            conn.execute(
                update(m)
                .where(m.c.id == row.id)
                .values(status="queued", next_attempt_at=allowed, lease_until=None)
            )
            deferred += 1
            continue
        claimed.append(_claimed(row, lease_until=lease_until, tz=tz, quiet=quiet))
    if suppressed:
        conn.execute(update(m).where(m.c.id.in_(suppressed)).values(status="suppressed", lease_until=None))
    if dead:
        conn.execute(
            update(m).where(m.c.id.in_(dead)).values(status="dead", lease_until=None, last_error=LEASE_LOST)
        )
    if claimed:
        conn.execute(
            update(m)
            .where(m.c.id.in_([c.id for c in claimed]))
            .values(status="sending", attempts=m.c.attempts + 1, lease_until=lease_until)
        )
    return Claim(claimed, suppressed=len(suppressed), deferred=deferred, dead=len(dead))


_m = tables.messages
_a = tables.message_attempts
# Prepared: a delivered message is recorded once per tender that sends, sharing the writer with it.
_MARK_SENT = Prepared(
    update(_m)
    .where(
        _m.c.id == bindparam("mid"),
        _m.c.status == "sending",
        _m.c.lease_until == bindparam("lease", type_=UtcDateTime),
    )
    .values(status="sent", sent_at=bindparam("now", type_=UtcDateTime), last_error=None, lease_until=None)
)
_RECORD = Prepared(insert(_a), keys=["message_id", "attempted_at", "ok", "error"])


def mark_sent(conn: Connection, message: Claimed, *, now: datetime) -> bool:
    """Record a delivered message; False if the lease was lost (another worker owns it now)."""
    _RECORD.execute(conn, {"message_id": message.id, "attempted_at": now, "ok": True, "error": None})
    return _MARK_SENT.execute(conn, {"mid": message.id, "lease": message.lease_until, "now": now}) == 1


def mark_all_sent(conn: Connection, messages: list[Claimed], *, now: datetime) -> list[bool]:
    """``mark_sent`` for a whole pass in one transaction; for each message, whether it was still ours."""
    _RECORD.execute_many(
        conn, [{"message_id": m.id, "attempted_at": now, "ok": True, "error": None} for m in messages]
    )
    settled = _MARK_SENT.execute_many_count(
        conn, [{"mid": m.id, "lease": m.lease_until, "now": now} for m in messages]
    )
    if settled == len(messages):
        return [True] * len(messages)
    # Some lease was lost to another worker (rare): find out which were still ours.
    m = tables.messages
    ours = set(
        conn.execute(
            select(m.c.id).where(
                m.c.id.in_([x.id for x in messages]), m.c.status == "sent", m.c.sent_at == now
            )
        ).scalars()
    )
    return [x.id in ours for x in messages]


def mark_failed(
    conn: Connection, message: Claimed, *, now: datetime, error: str, retry_at: datetime | None
) -> bool:
    """Record a failed attempt: back in the queue until ``retry_at``, or ``dead`` when it is None."""
    _record(conn, message.id, now=now, ok=False, error=error)
    if retry_at is None:
        return _settle(conn, message, status="dead", last_error=error)
    return _settle(conn, message, status="queued", next_attempt_at=retry_at, last_error=error)


def location_window(timezone: str | None, quiet_hours: str | None) -> tuple[zoneinfo.ZoneInfo, QuietHours]:
    """A location's zone and quiet hours; unknown or broken values fall back to UTC / the default."""
    # The registry validates both on apply; a location deleted since its message was queued has none.
    try:
        tz = zoneinfo.ZoneInfo(timezone or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        tz = zoneinfo.ZoneInfo("UTC")
    try:
        quiet = parse_window(quiet_hours or DEFAULT_WINDOW)
    except ValueError:
        quiet = parse_window(DEFAULT_WINDOW)
    return tz, quiet


def _due(conn: Connection, now: datetime, limit: int) -> list[Any]:
    """Lock up to ``limit`` due rows: expired leases first, then queued rows, oldest due first.

    Two queries rather than one ``OR``: each walks ``ix_messages_due`` (status, next_attempt_at)
    in order and stops at ``limit``, however large the backlog or the table.
    """
    m = tables.messages
    expired = conn.execute(
        _candidates().where(m.c.status == "sending", m.c.lease_until <= now).limit(limit)
    ).all()
    if len(expired) >= limit:
        return list(expired)
    queued = conn.execute(
        _candidates()
        .where(m.c.status == "queued", m.c.next_attempt_at <= now)
        .order_by(m.c.next_attempt_at)
        .limit(limit - len(expired))
    ).all()
    return [*expired, *queued]


def _candidates() -> Any:
    m, loc = tables.messages, tables.locations
    same_location = and_(loc.c.pos_system_id == m.c.pos_system_id, loc.c.id == m.c.location_id)
    return select(
        m.c.id,
        m.c.status,
        m.c.channel,
        m.c.recipient,
        m.c.subject,
        m.c.body,
        m.c.optout_token,
        m.c.attempts,
        opted_out_clause().label("opted_out"),
        select(loc.c.timezone).where(same_location).scalar_subquery().label("timezone"),
        select(loc.c.quiet_hours).where(same_location).scalar_subquery().label("quiet_hours"),
    ).with_for_update(skip_locked=True, of=m)


def _claimed(row: Any, *, lease_until: datetime, tz: zoneinfo.ZoneInfo, quiet: QuietHours) -> Claimed:
    return Claimed(
        id=row.id,
        channel=row.channel,
        recipient=row.recipient,
        subject=row.subject,
        body=row.body,
        optout_token=row.optout_token,
        attempts=row.attempts + 1,
        lease_until=lease_until,
        tz=tz,
        quiet=quiet,
    )


def _settle(conn: Connection, message: Claimed, **values: Any) -> bool:
    m = tables.messages
    result = conn.execute(
        update(m)
        .where(m.c.id == message.id, m.c.status == "sending", m.c.lease_until == message.lease_until)
        .values(lease_until=None, **values)
    )
    return result.rowcount == 1


def _record(conn: Connection, message_id: str, *, now: datetime, ok: bool, error: str | None) -> None:
    conn.execute(
        insert(tables.message_attempts).values(
            message_id=message_id, attempted_at=now.astimezone(UTC), ok=ok, error=error
        )
    )
