"""What a POS hands to the SDK: a SendTransaction body without the ``sessionId``.

The POS knows the sale; the SDK obtains the session. :class:`~cmc_client.wire.Tender` is
:class:`~cmc_client.wire.TransactionRequest` without ``sessionId`` (the request extends it). The SDK
stores a tender as the exact bytes it encoded once, and builds every SendTransaction body from those
bytes, so a replay after a lost answer sends the identical body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from cmc_client import wire
from cmc_client.wire import Tender

ENCODER = msgspec.json.Encoder(decimal_format="number")
"""Encodes wire bodies: exact decimals go out as JSON numbers, never through float."""


TenderInput = Tender | Mapping[str, Any]
"""What ``post_tender`` accepts: a :class:`Tender` or a mapping of its JSON fields."""


def encode_tender(tender: TenderInput) -> bytes:
    """Validate a tender and encode it once; raise ``msgspec.ValidationError`` when it breaks the contract.

    A mapping may carry a ``sessionId``; it is ignored (the SDK always obtains its own session).
    """
    if isinstance(tender, Tender):
        raw = ENCODER.encode(tender)
    else:
        raw = ENCODER.encode({k: v for k, v in tender.items() if k != "sessionId"})
    # Round-trip through the typed decoder: this checks required fields and length limits, which
    # msgspec does not check when a Struct is constructed in Python.
    return ENCODER.encode(msgspec.json.decode(raw, type=Tender, strict=False))


def decode_tender(body: bytes) -> Tender:
    """Decode tender bytes written by :func:`encode_tender`."""
    return msgspec.json.decode(body, type=Tender)


def transaction_body(tender_body: bytes, session_id: str) -> bytes:
    """Build the SendTransaction body: ``sessionId`` first, then the stored tender bytes unchanged.

    Splicing instead of re-encoding keeps the body byte-identical across replays and SDK versions.
    """
    return b'{"sessionId":' + ENCODER.encode(session_id) + b"," + tender_body[1:]


def to_request(tender: Tender, session_id: str) -> wire.TransactionRequest:
    """The typed :class:`~cmc_client.wire.TransactionRequest` for ``tender`` in session ``session_id``."""
    return wire.TransactionRequest(sessionId=session_id, **msgspec.structs.asdict(tender))


__all__ = [
    "ENCODER",
    "Tender",
    "TenderInput",
    "decode_tender",
    "encode_tender",
    "to_request",
    "transaction_body",
]
