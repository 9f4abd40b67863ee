"""The notification outbox: every statement on ``messages`` and ``message_attempts``.

``enqueue`` writes a sale's messages inside the sale's transaction (marketing calls it); the
dispatcher's state transitions are each one short database transaction of their own:

    queued ──claim──► sending ──► sent ──provider's report──► delivered | failed   (SMS)
      ▲                  │ ├────► queued (temporary failure, later next_attempt_at)
      │                  │ ├────► bounced (the address was refused for good: a 5xx SMTP reply)
      │                  │ └────► dead    (any other permanent failure, or the attempts ran out)
      └── quiet hours ◄──┘ (an SMS claimed inside them waits, no attempt spent)
    queued ──► suppressed (reason: opted-out, quiet-hours or holdout; never sent)

What each state means, per channel:

- ``sent``: the provider took the message: the SMTP relay accepted the email (250 after DATA), the
  SMS API accepted the SMS (a 2xx, whose ``sid`` is kept as ``provider_id``); with no provider
  configured, the log sender "sends" it. Email ends here: SMTP reports no delivery.
- ``delivered`` / ``failed`` (SMS): the provider's delivery report said delivered, or undelivered
  or failed (``reason``: its error code, ``provider-30003``). Reports arrive in any order and more
  than once: a message in delivered or failed never moves again, and a report about one still
  queued, sending or dead (the provider got it though CMC saw a timeout) moves it, which also
  keeps it from being sent again.
- ``bounced``: a permanent refusal of the recipient or content by the SMTP relay (5xx to RCPT or
  DATA); ``reason`` is the reply (``smtp-550``). Not retried.
- ``dead``: not sent, for good: a permanent failure that is not the address's (an SMS API 4xx, no
  sender for the channel, a message that cannot be built) or the last of ``CMC_OUTBOX_MAX_ATTEMPTS``
  temporary failures; ``reason`` is the last error's code (``http-400``, ``smtp-451``, ``lease-lost``).
- ``suppressed``: CMC decided it must not go. ``opted-out``: the recipient opted out after it was
  queued (a contact already opted out gets no row at all); ``quiet-hours``: an SMS that could only
  go out more than ``quiet_hours.MAX_DELAY`` (12 hours) after its sale, at queueing or when quiet
  hours would push a retry that far (a thank-you the next afternoon is stale); ``holdout``: the
  customer is in the rule's holdout (what the treatment would have got, recorded, never sent).

``claim`` takes due rows with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so any number of workers
share one outbox without taking the same row; on SQLite the single writer (``BEGIN IMMEDIATE``)
serialises claimers. A claimed row carries a lease: if its worker dies mid-send, the row becomes
due again when the lease runs out (the lost attempt counts, so a message that kills its worker
cannot loop forever). ``lease_until`` doubles as the claim token: a worker whose lease was taken
over finds its update matches no row and leaves the row to the new owner.
"""

from __future__ import annotations

import functools
import secrets
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec
from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    union_all,
    update,
)

from cmc.ids import new_id
from cmc.outbox import optouts
from cmc.outbox.senders import Outgoing
from cmc.outbox.status import Report
from cmc.quiet_hours import DEFAULT_WINDOW, MAX_DELAY, QuietHours, next_allowed, parse_window
from cmc.registry import store as registry_store
from cmc.store import buckets, tables
from cmc.store.buckets import Span
from cmc.store.driver import Tx
from cmc.store.statements import Statement
from cmc.store.tables import of_company
from cmc.web import stored_look

if TYPE_CHECKING:
    from cmc.sale import Sale

LEASE_LOST = "lease expired: the worker sending it stopped before recording the outcome"
DONE = ("sent", "delivered", "failed", "bounced", "dead", "suppressed")
"""States no dispatcher acts on: what ``prune`` may delete (a late report on a pruned one is ignored)."""
REPORTED = ("delivered", "failed")
"""The provider's final word: a delivery report never moves a message out of these."""

_m = tables.messages
_a = tables.message_attempts
_COLUMNS = [c.name for c in _m.columns]


@functools.cache
def _enqueue_query(count: int) -> Statement[str]:
    """``count`` messages in one statement, each unless its recipient opted out: the ids written.

    The opt-out check is part of the insert (one round trip, not two), and runs in the sale's
    transaction like a separate read would: an opt-out committed after it does not stop the row,
    which the dispatcher then suppresses before sending.
    """
    merchant = (
        bindparam("pos", type_=_m.c.pos_system_id.type),
        bindparam("company", type_=_m.c.company_id.type),
    )
    rows = []
    for n in range(count):
        values = {name: bindparam(f"{name}{n}", type_=_m.c[name].type) for name in _COLUMNS}
        values["pos_system_id"], values["company_id"] = merchant
        opted_out = optouts.opted_out_clause(*merchant, values["channel"], values["recipient"])
        rows.append(select(*values.values()).where(~opted_out))
    chosen = rows[0] if count == 1 else union_all(*rows)
    return Statement(
        insert(_m).from_select(_COLUMNS, chosen).returning(_m.c.id),
        name=f"outbox.enqueue[{count}]",
        into=lambda message_id: message_id,
    )


class Rendered(msgspec.Struct, frozen=True, rename="camel"):
    """An email or SMS as a rule's template made it for one recipient: what is queued, what the
    merchant's message log shows."""

    rule: str
    template_id: str
    channel: str
    recipient: str
    subject: str | None
    body: str


class NewMessage(Rendered, frozen=True):
    """A rendered message a sale asks for; ``due`` is when it may go (quiet hours applied)."""

    due: datetime
    suppressed: str | None = None
    """Why it must not go (``holdout``, ``quiet-hours``): recorded as suppressed, never sent."""


async def enqueue(tx: Tx, sale: Sale, messages: Sequence[NewMessage], *, base_url: str) -> list[str | None]:
    """Queue the sale's ``messages`` in its transaction, each with its own opt-out link.

    Returns each message's id, or None where its recipient opted out of the merchant's channel
    (no row: an opted-out contact gets nothing, not even a suppressed message). A message with a
    ``suppressed`` reason is written as suppressed (for the record) and never sent.
    """
    if not messages:
        return []
    scope = {"location_id": sale.location.id, "transaction_id": sale.id}
    now = sale.now
    params: dict[str, Any] = {"pos": sale.pos.id, "company": sale.company.id}
    ids = []
    for n, message in enumerate(messages):
        # Time-ordered prefix, random tail (96 bits): unguessable, and new tokens land at the end of
        # their unique index instead of on a random page of it.
        token = new_id().replace("-", "") + secrets.token_urlsafe(12)
        reason = message.suppressed
        row = {
            **scope,
            **{name: getattr(message, name) for name in Rendered.__struct_fields__},
            "id": new_id(),
            "body": f"{message.body}\n\nNo more messages: {base_url}/u/{token}",
            "optout_token": token,
            "status": "suppressed" if reason else "queued",
            "reason": reason,
            "attempts": 0,
            "next_attempt_at": message.due,
            "lease_until": None,
            "last_error": None,
            "created_at": now,
            "sent_at": None,
            "provider_id": None,
            "reported_at": None,
        }
        ids.append(row["id"])
        params.update({f"{name}{n}": value for name, value in row.items()})
    written = set(await tx.all(_enqueue_query(len(messages)), params))
    return [message_id if message_id in written else None for message_id in ids]


def contact_of(conn: Connection, token: str) -> optouts.Contact | None:
    """Who the message carrying opt-out ``token`` went to, and from which merchant."""
    row = conn.execute(
        select(_m.c.pos_system_id, _m.c.company_id, _m.c.channel, _m.c.recipient).where(
            _m.c.optout_token == token
        )
    ).first()
    return None if row is None else optouts.Contact(*row)


def count(conn: Connection) -> int:
    """Messages in the outbox, in any state."""
    return int(conn.execute(select(func.count()).select_from(_m)).scalar_one())


def prune_targets(before: datetime) -> list[tuple[Column[Any], ColumnElement[bool]]]:
    """What ``cmc prune`` deletes here: finished messages created before ``before``, attempts first."""
    old = select(_m.c.id).where(_m.c.status.in_(DONE), _m.c.created_at < before)
    return [
        (_a.c.id, _a.c.message_id.in_(old)),
        (_m.c.id, _m.c.status.in_(DONE) & (_m.c.created_at < before)),
    ]


@dataclass(frozen=True)
class Claimed:
    """A message this worker now holds, until ``lease_until``."""

    message: Outgoing
    """What the sender delivers."""
    attempts: int
    """Attempts including the one now starting."""
    lease_until: datetime
    tz: zoneinfo.ZoneInfo
    quiet: QuietHours
    created_at: datetime
    """When its sale queued it (how late quiet hours may push it: ``stale``)."""

    def stale(self, at: datetime) -> bool:
        """Going out at ``at`` would be too late after the sale (suppress it instead)."""
        return at - self.created_at > MAX_DELAY

    @property
    def id(self) -> str:
        """The message id."""
        return self.message.id

    @property
    def channel(self) -> str:
        """``email`` or ``sms``."""
        return self.message.channel


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


def claim(
    conn: Connection, *, now: datetime, limit: int, lease: timedelta, max_attempts: int, base_url: str
) -> Claim:
    """Take up to ``limit`` due messages (queued and due, or sending with an expired lease).

    ``base_url`` builds each message's opt-out link (``CMC_PUBLIC_URL``).
    """
    m = tables.messages
    rows = _due(conn, now, limit)
    settled: dict[tuple[str, str], list[str]] = {}  # rows settled without sending, by (status, reason)
    claimed: list[Claimed] = []
    deferred = 0
    lease_until = now + lease
    for row in rows:
        if row.opted_out:
            settled.setdefault(("suppressed", "opted-out"), []).append(row.id)
            continue
        if row.status == "sending":
            _record(conn, row.id, now=now, ok=False, error=LEASE_LOST)
            if row.attempts >= max_attempts:
                settled.setdefault(("dead", "lease-lost"), []).append(row.id)
                continue
        tz, quiet = location_window(row.timezone, row.quiet_hours)
        allowed = next_allowed(now, tz, quiet) if row.channel == "sms" else now
        if allowed > now and allowed - row.created_at > MAX_DELAY:
            settled.setdefault(("suppressed", "quiet-hours"), []).append(row.id)
            continue
        if allowed > now:
            conn.execute(
                update(m)
                .where(m.c.id == row.id)
                .values(status="queued", next_attempt_at=allowed, lease_until=None)
            )
            deferred += 1
            continue
        outgoing = Outgoing(
            row.id,
            row.channel,
            row.recipient,
            row.subject,
            row.body,
            f"{base_url}/u/{row.optout_token}",
            look=stored_look(row.company_name, row.branding),
        )
        claimed.append(Claimed(outgoing, row.attempts + 1, lease_until, tz, quiet, row.created_at))
    for (status, reason), ids in settled.items():
        error = {"last_error": LEASE_LOST} if reason == "lease-lost" else {}
        conn.execute(
            update(m).where(m.c.id.in_(ids)).values(status=status, reason=reason, lease_until=None, **error)
        )
    if claimed:
        conn.execute(
            update(m)
            .where(m.c.id.in_([c.id for c in claimed]))
            .values(status="sending", attempts=m.c.attempts + 1, lease_until=lease_until)
        )
    count = {status: sum(len(ids) for (kind, _), ids in settled.items() if kind == status) for status in DONE}
    return Claim(claimed, suppressed=count["suppressed"], deferred=deferred, dead=count["dead"])


def mark_sent(conn: Connection, message: Claimed, *, now: datetime) -> bool:
    """Record a delivered message; False if the lease was lost (another worker owns it now)."""
    return mark_all_sent(conn, [message], now=now) == [True]


def mark_all_sent(
    conn: Connection,
    messages: list[Claimed],
    *,
    now: datetime,
    provider_ids: dict[str, str] | None = None,
    again: bool = False,
) -> list[bool]:
    """Record a pass's delivered messages in one transaction; for each, whether it was still ours.

    A message is ours while it holds the lease we claimed it with: ``sending``, or already
    ``delivered`` / ``failed`` by a report that outran this write (it keeps that state). A worker
    whose lease ran out and was taken over settles nothing. ``provider_ids``: the provider's id of
    each message that has one (Twilio's ``sid``). ``again``: this very write may have committed
    already, its answer lost with the connection (``_committed_before``).
    """
    if again and _committed_before(conn, messages, now=now):
        done = select(_m.c.id).where(
            _m.c.id.in_([m.id for m in messages]), _m.c.sent_at == now, _m.c.lease_until.is_(None)
        )
        settled_before = set(conn.execute(done).scalars())
        return [m.id in settled_before for m in messages]
    conn.execute(
        insert(_a), [{"message_id": m.id, "attempted_at": now, "ok": True, "error": None} for m in messages]
    )
    ours: set[str] = set()
    for lease in {m.lease_until for m in messages}:
        ids = [m.id for m in messages if m.lease_until == lease]
        settled = conn.execute(
            update(_m)
            .where(_m.c.id.in_(ids), _m.c.status.in_(("sending", *REPORTED)), _m.c.lease_until == lease)
            .values(
                status=case((_m.c.status == "sending", "sent"), else_=_m.c.status),
                sent_at=now,
                last_error=None,
                lease_until=None,
            )
            .returning(_m.c.id)
        )
        ours.update(settled.scalars())
    if known := [{"mid": m, "pid": p} for m, p in (provider_ids or {}).items() if m in ours]:
        conn.execute(
            update(_m).where(_m.c.id == bindparam("mid")).values(provider_id=bindparam("pid")), known
        )
    return [m.id in ours for m in messages]


def mark_failed(
    conn: Connection,
    message: Claimed,
    *,
    now: datetime,
    error: str,
    retry_at: datetime | None,
    final: str = "dead",
    reason: str | None = None,
    again: bool = False,
) -> bool:
    """Record a failed attempt: back in the queue until ``retry_at``; without one, ``final``.

    ``final`` is ``dead``, ``bounced`` or ``suppressed``, and ``reason`` says why (an error code,
    ``quiet-hours``). ``again``: as ``mark_all_sent``'s.
    """
    if again and _committed_before(conn, [message], now=now):
        done = select(_m.c.id).where(
            _m.c.id == message.id,
            _m.c.lease_until.is_(None),
            or_(_m.c.last_error == error, _m.c.status.in_(REPORTED)),
        )
        return conn.execute(done).first() is not None
    _record(conn, message.id, now=now, ok=False, error=error)
    if retry_at is None:
        settled = _settle(conn, message, status=final, reason=reason, last_error=error)
    else:
        settled = _settle(conn, message, status="queued", next_attempt_at=retry_at, last_error=error)
    return settled or _reported(conn, message)


def report_delivery(conn: Connection, message_id: str, report: Report, *, now: datetime) -> str | None:
    """Apply an SMS provider's delivery report; the message's state after it (None: no such SMS).

    Only a final report moves a message, and never out of delivered or failed (reports come late,
    twice, out of order); one naming another provider id than the message's is ignored.
    """
    # Locked: two reports at once (or a report and the dispatcher) take turns on PostgreSQL.
    row = conn.execute(
        select(_m.c.status, _m.c.provider_id)
        .where(_m.c.id == message_id, _m.c.channel == "sms")
        .with_for_update()
    ).first()
    if row is None:
        return None
    status, provider_id = row
    if report.state is None or status in REPORTED or provider_id not in (None, report.provider_id):
        return str(status)
    conn.execute(
        update(_m)
        .where(_m.c.id == message_id)
        .values(status=report.state, reason=report.reason, provider_id=report.provider_id, reported_at=now)
    )
    return report.state


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
    m = tables.messages
    zone, quiet_hours = registry_store.location_window_columns(m.c.pos_system_id, m.c.location_id)
    company_name, branding = registry_store.company_look_columns(m.c.pos_system_id, m.c.company_id)
    return select(
        m.c.id,
        m.c.status,
        m.c.channel,
        m.c.recipient,
        m.c.subject,
        m.c.body,
        m.c.optout_token,
        m.c.attempts,
        m.c.created_at,
        optouts.opted_out_clause(m.c.pos_system_id, m.c.company_id, m.c.channel, m.c.recipient).label(
            "opted_out"
        ),
        zone.label("timezone"),
        quiet_hours.label("quiet_hours"),
        company_name.label("company_name"),
        branding.label("branding"),
    ).with_for_update(skip_locked=True, of=m)


def _settle(conn: Connection, message: Claimed, **values: Any) -> bool:
    m = tables.messages
    result = conn.execute(
        update(m)
        .where(m.c.id == message.id, m.c.status == "sending", m.c.lease_until == message.lease_until)
        .values(lease_until=None, **values)
    )
    return result.rowcount == 1


def _reported(conn: Connection, message: Claimed) -> bool:
    """Still ours, but the provider reported on it already (it got the SMS though we saw a failure)."""
    m = tables.messages
    result = conn.execute(
        update(m)
        .where(m.c.id == message.id, m.c.status.in_(REPORTED), m.c.lease_until == message.lease_until)
        .values(lease_until=None)
    )
    return result.rowcount == 1


def _committed_before(conn: Connection, messages: list[Claimed], *, now: datetime) -> bool:
    """Whether a recording of ``messages`` at ``now`` committed already: its attempt rows are there.

    A recording is one transaction, so its attempt rows and its settling commit together. Retried
    after a lost connection, a recording that had committed must not add its attempts twice, nor
    take its own settling for another worker's (``lease lost``).
    """
    found = select(_a.c.message_id).where(
        _a.c.message_id.in_([m.id for m in messages]), _a.c.attempted_at == now.astimezone(UTC)
    )
    return conn.execute(found.limit(1)).first() is not None


def _record(conn: Connection, message_id: str, *, now: datetime, ok: bool, error: str | None) -> None:
    conn.execute(
        insert(tables.message_attempts).values(
            message_id=message_id, attempted_at=now.astimezone(UTC), ok=ok, error=error
        )
    )


class StateCount(NamedTuple):
    """How many of a rule's messages are in one state (with one reason)."""

    rule: str
    channel: str
    status: str
    reason: str | None
    messages: int


def state_counts(
    conn: Connection, *, pos_system_id: str, company_id: str, since: datetime, until: datetime
) -> list[StateCount]:
    """The merchant's messages queued in ``[since, until)``, per rule, channel, state and reason.

    Reads the whole window (the outbox is pruned, so it stays small; no index serves this).
    """
    query = (
        select(_m.c.rule, _m.c.channel, _m.c.status, _m.c.reason, func.count())
        .where(
            of_company(_m, pos_system_id, company_id),
            _m.c.created_at >= since,
            _m.c.created_at < until,
        )
        .group_by(_m.c.rule, _m.c.channel, _m.c.status, _m.c.reason)
        .order_by(_m.c.rule, _m.c.channel, _m.c.status)
    )
    return [StateCount(*row) for row in conn.execute(query)]


# --- analytics: the merchant's message log, counts and the retry of a dead message -------------------


class Logged(Rendered, frozen=True):
    """A message as the merchant's message log shows it: its text, state and why (``reason``: why
    it is suppressed, failed, bounced or dead)."""

    id: str
    created_at: datetime
    state: str
    reason: str | None
    last_error: str | None
    attempts: int
    sent_at: datetime | None
    reported_at: datetime | None
    transaction_id: str
    location_id: str


_LOGGED = [_m.c.status if name == "state" else _m.c[name] for name in Logged.__struct_fields__]
"""The columns a ``Logged`` is made of, in its order (``state`` is the status column)."""


def state_totals(conn: Connection, span: Span) -> dict[str, int]:
    """The merchant's messages queued in the span, per state (``ix_messages_company_state`` alone)."""
    query = select(_m.c.status, func.count()).where(*span.where(_m, "created_at")).group_by(_m.c.status)
    return {status: int(n) for status, n in conn.execute(query)}


def message_buckets(
    conn: Connection, span: Span, bucket: str, rule: str | None = None
) -> dict[datetime, int]:
    """Messages queued per UTC ``bucket`` in the span (every state), of one rule or all."""
    return buckets.counts(
        conn, _m, "created_at", span, bucket, *([] if rule is None else [_m.c.rule == rule])
    )


def log_page(
    conn: Connection,
    *,
    pos_system_id: str,
    company_id: str,
    state: str | None,
    channel: str | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[Logged]:
    """The merchant's messages newest first, after the (created_at, id) ``before`` of a previous page.

    ``ix_messages_company_time`` walks them in order; with a state, ``ix_messages_company_state``.
    """
    where = [of_company(_m, pos_system_id, company_id)]
    if state is not None:
        where.append(_m.c.status == state)
    if channel is not None:
        where.append(_m.c.channel == channel)
    if before is not None:
        at, last = before
        where.append(or_(_m.c.created_at < at, and_(_m.c.created_at == at, _m.c.id < last)))
    query = select(*_LOGGED).where(*where).order_by(_m.c.created_at.desc(), _m.c.id.desc()).limit(limit)
    return [Logged(*row) for row in conn.execute(query)]


def of_sales(conn: Connection, sales: Select[tuple[str]], *, limit: int) -> list[Logged]:
    """The messages of the sales ``sales`` selects, newest first (``ix_messages_transaction``)."""
    query = (
        select(*_LOGGED)
        .where(_m.c.transaction_id.in_(sales))
        .order_by(_m.c.created_at.desc(), _m.c.id.desc())
        .limit(limit)
    )
    return [Logged(*row) for row in conn.execute(query)]


def logged(conn: Connection, *, pos_system_id: str, company_id: str, message_id: str) -> Logged | None:
    """One of the merchant's messages (None: no such message, or another merchant's)."""
    return tables.company_row(conn, Logged, _LOGGED, pos_system_id, company_id, message_id)


def requeue_dead(
    conn: Connection, *, pos_system_id: str, company_id: str, message_id: str, now: datetime
) -> bool:
    """A dead message of the merchant back in the queue, due ``now`` with a fresh set of attempts.

    False when it is not dead (or not the merchant's). Its attempts stay in ``message_attempts``.
    """
    result = conn.execute(
        update(_m)
        .where(of_company(_m, pos_system_id, company_id), _m.c.id == message_id, _m.c.status == "dead")
        .values(status="queued", attempts=0, next_attempt_at=now, lease_until=None, reason=None)
    )
    return result.rowcount == 1
