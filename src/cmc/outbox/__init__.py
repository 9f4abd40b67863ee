"""The notification outbox: message rows written with the sale, sent by a dispatcher.

- ``queue``: the messages: ``enqueue`` (marketing, in the sale's transaction) and the dispatcher's
  state transitions (claim, sent, failed), each one short transaction.
- ``optouts``: ``unsubscribe`` (the ``/u/{token}`` page), ``opted_out_clause`` (the outbox's insert
  and claim) and ``is_opted_out``.

Quiet hours (when SMS wait) are a location's, in ``cmc.quiet_hours``.
- ``senders``: SMTP, Twilio-style SMS over HTTP, and the log sender.
- ``status``: the SMS provider's delivery reports: their signature and what they say (pure).
- ``dispatch``: ``Dispatcher`` (``run_once(now)``, ``start()``/``stop()``), retry delays.
- ``worker``: ``run_worker(settings)`` behind ``cmc worker``.
"""

from __future__ import annotations

from cmc.outbox.dispatch import Dispatcher, retry_delay
from cmc.outbox.optouts import is_opted_out, opt_out
from cmc.outbox.senders import (
    Bounced,
    DeliveryFailed,
    LogSender,
    Outgoing,
    PermanentFailure,
    Sender,
    SmsSender,
    SmtpSender,
    TemporaryFailure,
)
from cmc.outbox.worker import run_worker

__all__ = [
    "Bounced",
    "DeliveryFailed",
    "Dispatcher",
    "LogSender",
    "Outgoing",
    "PermanentFailure",
    "Sender",
    "SmsSender",
    "SmtpSender",
    "TemporaryFailure",
    "is_opted_out",
    "opt_out",
    "retry_delay",
    "run_worker",
]
