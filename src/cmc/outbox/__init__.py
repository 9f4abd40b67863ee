"""The notification outbox: message rows written with the sale, sent by a dispatcher.

- ``quiet``: quiet hours (pure): ``parse_window``, ``next_allowed``.
- ``optouts``: ``opt_out`` (the ``/u/{token}`` page), ``opted_out`` (marketing) and ``is_opted_out``.
- ``queue``: the rows' state transitions (claim, sent, failed), each one short transaction.
- ``senders``: SMTP, Twilio-style SMS over HTTP, and the log sender.
- ``dispatch``: ``Dispatcher`` (``run_once(now)``, ``start()``/``stop()``), retry delays.
- ``worker``: ``run_worker(settings)`` behind ``cmc worker``.
"""

from __future__ import annotations

from cmc.outbox.dispatch import Dispatcher, retry_delay
from cmc.outbox.optouts import is_opted_out, opt_out
from cmc.outbox.quiet import DEFAULT_WINDOW, QuietHours, next_allowed, parse_window
from cmc.outbox.senders import (
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
    "DEFAULT_WINDOW",
    "DeliveryFailed",
    "Dispatcher",
    "LogSender",
    "Outgoing",
    "PermanentFailure",
    "QuietHours",
    "Sender",
    "SmsSender",
    "SmtpSender",
    "TemporaryFailure",
    "is_opted_out",
    "next_allowed",
    "opt_out",
    "parse_window",
    "retry_delay",
    "run_worker",
]
