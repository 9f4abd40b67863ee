"""A sale being recorded, and what marketing did with it: the values the tender use case passes on.

``Sale`` is built once per transaction (real or dry run) by ``cmc.tender``; ``cmc.marketing``
reacts to it with a ``Reaction``. The helpers here say what a request means (reversal, instant,
sales person's name); they are pure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from cmc.profiles import Claim, ProfileState
from cmc.registry import Company, Location, PosSystem
from cmc.store.driver import Tx
from cmc_client import wire

REVERSAL_TYPES = frozenset({"refund", "return", "void"})


@dataclass(frozen=True)
class Place:
    """Where a sale happens: the POS system, the merchant account and its store."""

    pos: PosSystem
    company: Company
    location: Location


@dataclass(frozen=True)
class Sale:
    """A transaction being recorded, as marketing sees it."""

    id: str
    request: wire.TransactionRequest
    place: Place
    claim: Claim
    profile: ProfileState | None
    is_reversal: bool
    occurred_at: datetime
    now: datetime

    @property
    def pos(self) -> PosSystem:
        """The POS system the sale came through."""
        return self.place.pos

    @property
    def company(self) -> Company:
        """The merchant account."""
        return self.place.company

    @property
    def location(self) -> Location:
        """The store."""
        return self.place.location


@dataclass(frozen=True)
class Reaction:
    """What marketing did with a sale: the response's widget, template and message id."""

    qr_widget: wire.QrCodeWidget | None = None
    cfs_template: wire.CfsTemplate | None = None
    notification_message_id: str | None = None
    effects: list[wire.Effect] = field(default_factory=list)


React = Callable[[Tx, Sale], Awaitable[Reaction]]
"""Reacts to a sale inside its database transaction (``cmc.marketing.react`` plugs in here)."""


async def no_reaction(tx: Tx, sale: Sale) -> Reaction:
    """No marketing: every transaction gets empty marketing fields."""
    return Reaction()


def is_reversal(request: wire.TransactionRequest) -> bool:
    """Refunds, returns, voids and negative amounts reverse a sale; they never trigger marketing."""
    kind = (request.transactionType or "").strip().lower()
    return kind in REVERSAL_TYPES or (request.transactionAmount is not None and request.transactionAmount < 0)


def occurred_at(request: wire.TransactionRequest, location: Location, *, now: datetime) -> datetime:
    """The sale's instant: a date-time without offset is wall-clock time at the location."""
    if request.transactionDate is None:
        return now
    if request.transactionDate.tzinfo is None:
        return request.transactionDate.replace(tzinfo=location.timezone)
    return request.transactionDate


def sales_person_name(person: wire.SalesPerson | None) -> str | None:
    """``First Last`` of the sales person, else their id."""
    if person is None:
        return None
    name = " ".join(part.strip() for part in (person.firstName, person.lastName) if part and part.strip())
    return name or person.id
