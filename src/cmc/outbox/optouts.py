"""Opt-outs: a contact that visited ``/u/{token}`` gets no more messages from that merchant.

An opt-out covers one (POS system, company, channel, recipient): the merchant whose message
carried the link, on the channel it came by. Marketing checks ``opted_out`` before it queues a
message, and the dispatcher checks again just before sending, so a message queued before the
visit is suppressed rather than sent.
"""

from __future__ import annotations

import functools
from datetime import datetime

from sqlalchemy import Connection, bindparam, exists, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql.elements import ColumnElement

from cmc.store import tables
from cmc.store.prepared import Prepared

_o = tables.opt_outs
# Prepared: marketing asks once per queued message, on the tender path.
_OPTED_OUT = Prepared(
    select(_o.c.created_at).where(
        _o.c.pos_system_id == bindparam("pos"),
        _o.c.company_id == bindparam("company"),
        _o.c.channel == bindparam("channel"),
        _o.c.recipient == bindparam("recipient"),
    )
)


@functools.cache
def _opted_out_query(count: int) -> Prepared:
    return Prepared(
        select(_o.c.channel, _o.c.recipient).where(
            _o.c.pos_system_id == bindparam("pos"),
            _o.c.company_id == bindparam("company"),
            _o.c.recipient.in_([bindparam(f"r{n}") for n in range(count)]),
        )
    )


def opted_out(
    conn: Connection, *, pos_system_id: str, company_id: str, recipients: list[str]
) -> set[tuple[str, str]]:
    """The (channel, recipient) pairs among ``recipients`` that opted out of this company's messages."""
    if not recipients:
        return set()
    params = {f"r{n}": recipient for n, recipient in enumerate(recipients)}
    params.update(pos=pos_system_id, company=company_id)
    return {
        (channel, recipient) for channel, recipient in _opted_out_query(len(recipients)).all(conn, params)
    }


def opt_out(conn: Connection, token: str, *, now: datetime) -> bool:
    """Stop messages to the recipient of the message carrying ``token``; False for an unknown token.

    Idempotent: visiting the link again (or from another message) changes nothing.
    """
    m = tables.messages
    row = conn.execute(
        select(m.c.pos_system_id, m.c.company_id, m.c.channel, m.c.recipient).where(m.c.optout_token == token)
    ).first()
    if row is None:
        return False
    values = {
        "pos_system_id": row.pos_system_id,
        "company_id": row.company_id,
        "channel": row.channel,
        "recipient": row.recipient,
        "created_at": now,
    }
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql  # only PostgreSQL deployments pay for the import

        conn.execute(postgresql.insert(tables.opt_outs).values(values).on_conflict_do_nothing())
    else:
        conn.execute(sqlite.insert(tables.opt_outs).values(values).on_conflict_do_nothing())
    return True


def is_opted_out(
    conn: Connection, *, pos_system_id: str, company_id: str, channel: str, recipient: str
) -> bool:
    """The recipient asked this company for no more messages on this channel."""
    params = {"pos": pos_system_id, "company": company_id, "channel": channel, "recipient": recipient}
    return _OPTED_OUT.first(conn, params) is not None


def opted_out_clause() -> ColumnElement[bool]:
    """``EXISTS`` an opt-out for the ``messages`` row in scope (for use inside a query)."""
    o, m = tables.opt_outs, tables.messages
    return exists().where(
        o.c.pos_system_id == m.c.pos_system_id,
        o.c.company_id == m.c.company_id,
        o.c.channel == m.c.channel,
        o.c.recipient == m.c.recipient,
    )
