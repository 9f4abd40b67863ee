"""What one transaction offers to the rules, with derived values computed once."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TypeAlias

# --------------------------------------------------------------------------- facts


@dataclass(frozen=True, slots=True)
class ProductLine:
    """One basket line; ``None`` where the POS sent nothing."""

    product_id: str | None = None
    product_category: str | None = None
    manufacturer: str | None = None
    quantity: Decimal = Decimal(1)


@dataclass(frozen=True, slots=True)
class CustomerFacts:
    """What CMC knows about the customer; ``visit_count`` includes this visit."""

    is_new: bool
    visit_count: int
    has_email: bool = False
    has_phone: bool = False
    has_loyalty_card: bool = False
    lifetime_spend: Decimal = Decimal(0)
    birth_date: date | None = None


_Line: TypeAlias = tuple["str | None", "str | None", "str | None", Decimal]


@dataclass(frozen=True, slots=True)
class Facts:
    """What one transaction offers to the rules. ``local_time`` is aware (location tz), ``now`` aware UTC.

    Derived values (lower-cased strings, basket total, local clock) are computed once here, not per rule.
    """

    location_id: str
    terminal_id: str
    transaction_type: str
    amount: Decimal | None
    local_time: datetime
    now: datetime
    is_reversal: bool = False
    products: tuple[ProductLine, ...] = ()
    customer: CustomerFacts | None = None
    _type: str = field(init=False, repr=False, compare=False)
    _lines: tuple[_Line, ...] = field(init=False, repr=False, compare=False)
    _quantity: Decimal = field(init=False, repr=False, compare=False)
    _date: date = field(init=False, repr=False, compare=False)
    _wall: datetime = field(init=False, repr=False, compare=False)
    _seconds: int = field(init=False, repr=False, compare=False)
    _weekday: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.local_time.tzinfo is None or self.now.tzinfo is None:
            raise ValueError("Facts.local_time and Facts.now must be timezone-aware")
        put = object.__setattr__
        put(self, "_type", self.transaction_type.lower())
        put(
            self,
            "_lines",
            tuple(
                (_lower(p.product_id), _lower(p.product_category), _lower(p.manufacturer), p.quantity)
                for p in self.products
            ),
        )
        put(self, "_quantity", sum((p.quantity for p in self.products), Decimal(0)))
        t = self.local_time
        put(self, "_date", t.date())
        put(self, "_wall", t.replace(tzinfo=None))
        put(self, "_seconds", t.hour * 3600 + t.minute * 60 + t.second)
        put(self, "_weekday", t.weekday())


def _lower(s: str | None) -> str | None:
    return None if s is None else s.lower()
