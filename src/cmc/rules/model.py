"""The rule spec: immutable condition, action and rule structs, and RuleError."""

from __future__ import annotations

from datetime import date, time, timedelta
from decimal import Decimal
from typing import Literal, TypeAlias

import msgspec

from cmc.errors import RegistryError


class RuleError(RegistryError, ValueError):
    """A rule is invalid."""

    def __init__(self, message: str, *, rule: str | None, field: str) -> None:
        self.rule = rule
        self.field = field
        self.message = message
        where = f"rule {rule!r}, {field}" if rule is not None else field
        super().__init__(f"{where}: {message}")


# --------------------------------------------------------------------------- the spec (immutable)


class Range(msgspec.Struct, frozen=True):
    """Inclusive bounds; ``None`` leaves that side open. ``between: [lo, hi]`` is ``gte=lo, lte=hi``."""

    gte: Decimal | None = None
    lte: Decimal | None = None


class AllOf(msgspec.Struct, frozen=True):
    """``all: [...]``: every item holds."""

    items: tuple[Condition, ...]


class AnyOf(msgspec.Struct, frozen=True):
    """``any: [...]``: at least one item holds."""

    items: tuple[Condition, ...]


class Not(msgspec.Struct, frozen=True):
    """``not: {...}``: the item does not hold."""

    item: Condition


class Amount(msgspec.Struct, frozen=True):
    """``amount: {between|gte|lte}``: the transaction amount; fails when the POS sent none."""

    range: Range


class TransactionType(msgspec.Struct, frozen=True):
    """``transactionType: {in: [...]}``, compared case-insensitively."""

    names: tuple[str, ...]


class Products(msgspec.Struct, frozen=True):
    """``products: {any|all: matcher}``; a matcher field is a string or a list, case-insensitive.

    ``any``: the summed quantity of the matching lines reaches ``minQuantity`` (without it, one matching
    line suffices). ``all``: the basket is not empty, every line matches, and the basket's total
    quantity reaches ``minQuantity``. Fields of one matcher must all match (AND); the values listed
    for one field are alternatives (OR).
    """

    mode: Literal["any", "all"]
    product_ids: tuple[str, ...] | None = None
    categories: tuple[str, ...] | None = None
    manufacturers: tuple[str, ...] | None = None
    min_quantity: Decimal | None = None


class BasketQuantity(msgspec.Struct, frozen=True):
    """``basketQuantity: {between|gte|lte}`` on the summed quantity of all lines."""

    range: Range


class Customer(msgspec.Struct, frozen=True):
    """``customer: {...}``: every given field must hold; fails for an anonymous transaction.

    ``visits`` counts this visit; ``birthdayWithinDays: N`` holds when the next birthday (Feb 29 is
    Feb 28 in other years) is 0..N days after the local date.
    """

    new: bool | None = None
    has_email: bool | None = None
    has_phone: bool | None = None
    has_loyalty_card: bool | None = None
    visits: Range | None = None
    lifetime_spend: Range | None = None
    birthday_within_days: int | None = None


class Location(msgspec.Struct, frozen=True):
    """``location: {in: [...]}``: location ids of this company (exact match)."""

    ids: tuple[str, ...]


class Terminal(msgspec.Struct, frozen=True):
    """``terminal: {in: [...]}``: terminal ids (exact match)."""

    ids: tuple[str, ...]


class DayOfWeek(msgspec.Struct, frozen=True):
    """``dayOfWeek: {in: [Mon, ...]}`` in the location's local time; ``days`` are 0=Monday..6=Sunday."""

    days: tuple[int, ...]


class TimeOfDay(msgspec.Struct, frozen=True):
    """``timeOfDay: {between: ["HH:MM", "HH:MM"]}`` local time, ``[start, end)``, wraps past midnight."""

    start: time
    end: time


Condition: TypeAlias = (
    "AllOf | AnyOf | Not | Amount | TransactionType | Products | BasketQuantity | Customer"
    " | Location | Terminal | DayOfWeek | TimeOfDay"
)


class Actions(msgspec.Struct, frozen=True, rename="camel"):
    """``then:``: what a fired rule does; at least one action is set."""

    qr_widget: int | None = None
    cfs_template: int | None = None
    notify: tuple[str, ...] = ()


class Limit(msgspec.Struct, frozen=True):
    """``limit: {perCustomer: N, per: 7d, anonymous: skip|fire}``: at most N times per customer per window.

    An anonymous sale has no customer to count: ``anonymous: skip`` (the default) never fires the rule
    for one, ``fire`` fires it every time (without counting).
    """

    per_customer: int
    per: timedelta
    anonymous: Literal["skip", "fire"] = "skip"


class Rule(msgspec.Struct, frozen=True):
    """One validated rule. ``locations=None`` means every location of the company.

    ``holdout_percent`` (``holdoutPercent``, 0 to 50): the share of its customers the rule holds out
    (``cmc.holdout``): their firing is recorded, nothing is shown or sent.
    """

    name: str
    then: Actions
    priority: int = 0
    locations: tuple[str, ...] | None = None
    when: Condition | None = None
    limit: Limit | None = None
    stop: bool = False
    valid_from: date | None = None  # a date, or a datetime (aware or local wall-clock)
    valid_until: date | None = None
    holdout_percent: int = 0


# DayOfWeek.days index this; parsing, plain data and explanations all name days with it.
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
