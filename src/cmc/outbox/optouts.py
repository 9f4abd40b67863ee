"""Opt-outs: a contact that unsubscribed gets no more messages from that merchant on that channel.

An opt-out covers one (POS system, company, channel, recipient): the merchant whose message carried
the link, on the channel it came by. ``opted_out_clause`` is checked twice: by the outbox's insert
(an opted-out contact gets no message at all) and by the dispatcher just before sending, so a
message queued before the click is suppressed rather than sent. Every statement on ``opt_outs`` is here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import msgspec
from sqlalchemy import ColumnElement, Connection, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite

from cmc.outbox import queue
from cmc.store import buckets, tables
from cmc.store.buckets import Span

_o = tables.opt_outs


@dataclass(frozen=True)
class Contact:
    """Who a message went to, and from which merchant."""

    pos_system_id: str
    company_id: str
    channel: str
    recipient: str


def unsubscribe(conn: Connection, token: str, *, now: datetime) -> Contact | None:
    """Opt out the recipient of the message carrying ``token`` (idempotent); None for an unknown token."""
    contact = queue.contact_of(conn, token)
    if contact is None:
        return None
    values = {**vars(contact), "created_at": now}
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(_o).values(values).on_conflict_do_nothing())
    return contact


def opt_out(conn: Connection, token: str, *, now: datetime) -> bool:
    """``unsubscribe``, saying only whether the token was known."""
    return unsubscribe(conn, token, now=now) is not None


def is_opted_out(
    conn: Connection, *, pos_system_id: str, company_id: str, channel: str, recipient: str
) -> bool:
    """The recipient asked this company for no more messages on this channel."""
    query = select(_o.c.created_at).where(
        _o.c.pos_system_id == pos_system_id,
        _o.c.company_id == company_id,
        _o.c.channel == channel,
        _o.c.recipient == recipient,
    )
    return conn.execute(query).first() is not None


def opted_out_clause(
    pos_system_id: ColumnElement[str],
    company_id: ColumnElement[str],
    channel: ColumnElement[str],
    recipient: ColumnElement[str],
) -> ColumnElement[bool]:
    """``EXISTS`` an opt-out for the message these columns describe (for use inside a query)."""
    return exists().where(
        _o.c.pos_system_id == pos_system_id,
        _o.c.company_id == company_id,
        _o.c.channel == channel,
        _o.c.recipient == recipient,
    )


# --- analytics: a merchant's opt-outs in a window, a customer's -----------------------------------------


def count(conn: Connection, span: Span) -> int:
    """Opt-outs asked in the span (the merchant's rows by primary key; they are few)."""
    return int(conn.execute(select(func.count()).where(*span.where(_o, "created_at"))).scalar_one())


def optout_buckets(conn: Connection, span: Span, bucket: str) -> dict[datetime, int]:
    """Opt-outs per UTC ``bucket`` in the span."""
    return buckets.counts(conn, _o, "created_at", span, bucket)


class OptOut(msgspec.Struct, frozen=True, rename="camel"):
    """A contact that asked the merchant for no more messages on a channel."""

    channel: str
    recipient: str
    created_at: datetime


def latest(conn: Connection, span: Span, *, limit: int) -> list[OptOut]:
    """The span's opt-outs, newest first, at most ``limit`` (the merchant console's list)."""
    query = select(_o.c.channel, _o.c.recipient, _o.c.created_at).where(*span.where(_o, "created_at"))
    return [OptOut(*row) for row in conn.execute(query.order_by(_o.c.created_at.desc()).limit(limit))]


def of_recipients(
    conn: Connection, *, pos_system_id: str, company_id: str, recipients: list[str]
) -> list[OptOut]:
    """The merchant's opt-outs of these contacts (a customer's email and phone), newest first."""
    if not recipients:
        return []
    query = (
        select(_o.c.channel, _o.c.recipient, _o.c.created_at)
        .where(
            _o.c.pos_system_id == pos_system_id, _o.c.company_id == company_id, _o.c.recipient.in_(recipients)
        )
        .order_by(_o.c.created_at.desc())
    )
    return [OptOut(*row) for row in conn.execute(query)]
