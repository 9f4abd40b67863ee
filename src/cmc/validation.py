"""What a SendTransaction body must be beyond its wire type, and its fingerprint (pure)."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from decimal import Decimal

import msgspec

from cmc.errors import ValidationFailed
from cmc_client import wire

MAX_AMOUNT = Decimal("1e12")
MAX_DECIMALS = 6
_SMALLEST = Decimal(1).scaleb(-MAX_DECIMALS)
EARLIEST = datetime(1970, 1, 1)
LATEST = datetime(2200, 1, 1)
"""Sales happen in this range; outside it a date is a POS bug (and would overflow time zone maths)."""

_encode = msgspec.json.Encoder().encode  # Structs encode in field order: the same body, the same bytes


def validate(request: wire.TransactionRequest) -> None:
    """What the wire types cannot say: finite bounded amounts, real dates."""
    errors: dict[str, list[str]] = {}
    if request.transactionAmount is not None and (problem := _amount_problem(request.transactionAmount)):
        errors["transactionAmount"] = [problem]
    for index, product in enumerate(request.products or ()):
        if product.quantity is not None and (problem := _amount_problem(product.quantity)):
            errors[f"products[{index}].quantity"] = [problem]
    when = request.transactionDate
    if when is not None and not EARLIEST <= when.replace(tzinfo=None) <= LATEST:
        errors["transactionDate"] = [f"must be between {EARLIEST.year} and {LATEST.year}"]
    if request.customer and request.customer.birthDate and not _is_date(request.customer.birthDate):
        errors["customer.birthDate"] = ["must be an ISO 8601 date (YYYY-MM-DD) or date-time"]
    if request.purchaseQuantity is not None and (problem := _amount_problem(request.purchaseQuantity)):
        errors["purchaseQuantity"] = [problem]
    if errors:
        raise ValidationFailed(errors=errors)


def encode(request: wire.TransactionRequest) -> tuple[bytes, str]:
    """The body as CMC stores it (JSON), and its fingerprint, sessionId excluded.

    The fingerprint tells a replay from a conflicting reuse of a transactionId. Its bytes are the body
    with an empty ``sessionId`` in front, as every stored fingerprint was computed when ``sessionId``
    was the request's first field (a test pins the vectors). ``sessionId`` is now the last field, so
    both come from one encoding: cut it off the end, put an empty one in front.
    """
    stored = _encode(request)
    cut = stored.rindex(b',"sessionId":')
    return stored, hashlib.sha256(b'{"sessionId":"",' + stored[1:cut] + b"}").hexdigest()


def request_hash(request: wire.TransactionRequest) -> str:
    """The fingerprint alone (see ``encode``)."""
    return encode(request)[1]


def _amount_problem(value: Decimal) -> str | None:
    if not value.is_finite():
        return "must be a finite number"
    # copy_abs, not abs(): arithmetic on 1e999999999 overflows the decimal context.
    if value.copy_abs() >= MAX_AMOUNT:
        return "is too large"
    if value != value.quantize(_SMALLEST):
        return f"has more than {MAX_DECIMALS} decimal places"
    return None


def _is_date(value: str) -> bool:
    """An ISO 8601 date (``1990-04-11``) or date-time (``1990-04-11T00:00:00Z``)."""
    text = value.strip()
    try:
        if len(text) == 10:
            date.fromisoformat(text)
        else:
            datetime.fromisoformat(text)
    except ValueError:
        return False
    return True
