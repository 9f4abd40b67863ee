"""What a POS hands to the SDK: a SendTransaction body without the ``sessionId``, and how it is stored.

The POS knows the sale; the SDK obtains the session. :class:`~cmc_client.wire.Tender` is
:class:`~cmc_client.wire.TransactionRequest` without ``sessionId`` (the request extends it). The SDK
stores a tender as the exact bytes it encoded once, and builds every SendTransaction body from those
bytes, so a replay after a lost answer sends the identical body.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import msgspec

from cmc_client._errors import InvalidTenderError
from cmc_client.wire import Tender

ENCODER = msgspec.json.Encoder(decimal_format="number")
"""Encodes wire bodies: exact decimals go out as JSON numbers, never through float."""


TenderInput = Tender | Mapping[str, Any]
"""What ``post_tender`` accepts: a :class:`Tender` or a mapping of its JSON fields."""


def validate_tender(tender: TenderInput) -> Tender:
    """The tender as the contract reads it; raise :class:`~cmc_client.InvalidTenderError` if it breaks it.

    A mapping may carry a ``sessionId``; it is ignored (the SDK always obtains its own session).
    """
    try:
        if isinstance(tender, Tender):
            raw = ENCODER.encode(tender)
        else:
            raw = ENCODER.encode({k: v for k, v in tender.items() if k != "sessionId"})
        # Decoding checks required fields and length limits, which msgspec does not check when a
        # Struct is constructed in Python.
        return msgspec.json.decode(raw, type=Tender, strict=False)
    except (msgspec.ValidationError, TypeError) as exc:
        raise InvalidTenderError(str(exc)) from exc


def sale_time(now: float) -> dt.datetime:
    """The local time at ``now`` (seconds since the epoch) with its UTC offset, as a till shows it."""
    return dt.datetime.fromtimestamp(now, dt.UTC).astimezone()


def dated(sale: Tender, now: float) -> Tender:
    """``sale`` with a ``transactionDate``: the POS's own, or else the local time at ``now``.

    The date is set once, when the sale is posted: a tender delivered hours later still says when it
    was sold (time-of-day rules and per-customer limits depend on it).
    """
    if sale.transactionDate is not None:
        return sale
    return msgspec.structs.replace(sale, transactionDate=sale_time(now))


def encode_tender(sale: Tender) -> bytes:
    """The bytes a tender is stored as (and every SendTransaction body is built from)."""
    return ENCODER.encode(sale)


def decode_tender(body: bytes) -> Tender:
    """Decode tender bytes written by :func:`encode_tender`."""
    return msgspec.json.decode(body, type=Tender)


def is_same_sale(stored: bytes, sale: Tender) -> bool:
    """Whether ``stored`` is ``sale`` as the SDK stored it, allowing for the date the SDK set on it.

    A POS that posts a sale again without a ``transactionDate`` posts the same sale, not a new one.
    """
    if sale.transactionDate is None:
        sale = msgspec.structs.replace(sale, transactionDate=decode_tender(stored).transactionDate)
    return encode_tender(sale) == stored


def transaction_body(tender_body: bytes, session_id: str) -> bytes:
    """Build the SendTransaction body: ``sessionId`` first, then the stored tender bytes unchanged.

    Splicing instead of re-encoding keeps the body byte-identical across replays and SDK versions.
    """
    return b'{"sessionId":' + ENCODER.encode(session_id) + b"," + tender_body[1:]
