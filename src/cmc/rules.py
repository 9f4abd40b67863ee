"""POS rules: parse a company's rule specs, compile them once, evaluate them for each transaction.

Pure: no I/O and no clock. The caller passes the time (``Facts.now``, ``Facts.local_time``) and, for
per-customer limits, a ``usage(rule_name)`` callable that counts earlier firings::

    registry data ──parse_rules──► [Rule] ──compile_rules──► RuleSet ──evaluate(Facts)──► Evaluation
                  ◄──rule_to_data──  (plain data, JSON-safe; parse_rules accepts it again)

Compiling turns each ``when`` tree into nested closures over prebuilt sets and bounds, so evaluation
walks no tree and looks up no keys; rules are sorted by priority and indexed by location once.
Each condition also gets an explaining twin, built at compile time and only called with
``explain=True``, which names the first condition that failed (``when.all[0].amount: 12.00 not
between 15 and 50``).

Semantics chosen where the spec is silent (all documented again on the condition classes):

- ``amount`` fails when the transaction carries no amount; ``customer`` conditions fail for an
  anonymous transaction; a limited rule never fires for an anonymous transaction.
- ``products.any`` sums the quantity of every line that matches and compares it with ``minQuantity``
  (without ``minQuantity``: one matching line suffices); ``products.all`` needs a non-empty basket
  whose every line matches, and its total quantity at least ``minQuantity``.
- ``timeOfDay`` is half-open, ``[start, end)``, and wraps midnight when ``start > end``.
- ``birthdayWithinDays: N`` holds when the next birthday is 0..N days from the local date.
- ``validFrom``/``validUntil`` as a date compare with the local date (both inclusive); as a datetime
  with an offset they compare with ``now``, without one with the location's local wall-clock time.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Literal, NoReturn, TypeAlias

import msgspec

from cmc.errors import RegistryError

__all__ = [
    "Actions",
    "AllOf",
    "Amount",
    "AnyOf",
    "BasketQuantity",
    "Condition",
    "Customer",
    "CustomerFacts",
    "DayOfWeek",
    "Effect",
    "Evaluation",
    "Facts",
    "FiredRule",
    "Limit",
    "Location",
    "Not",
    "ProductLine",
    "Products",
    "Range",
    "Rule",
    "RuleError",
    "RuleSet",
    "RuleTrace",
    "Terminal",
    "TimeOfDay",
    "TransactionType",
    "compile_rules",
    "format_explanation",
    "parse_rules",
    "rule_to_data",
]


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
    """``limit: {perCustomer: N, per: 7d}``: one customer gets the rule at most N times per window."""

    per_customer: int
    per: timedelta


class Rule(msgspec.Struct, frozen=True):
    """One validated rule. ``locations=None`` means every location of the company."""

    name: str
    then: Actions
    priority: int = 0
    locations: tuple[str, ...] | None = None
    when: Condition | None = None
    limit: Limit | None = None
    stop: bool = False
    valid_from: date | None = None  # a date, or a datetime (aware or local wall-clock)
    valid_until: date | None = None


# --------------------------------------------------------------------------- parsing

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_DAY_NAMES = {
    **{d.lower(): i for i, d in enumerate(_DAYS)},
    "monday": 0,
    "tuesday": 1,
    "wednesday": 2,
    "thursday": 3,
    "friday": 4,
    "saturday": 5,
    "sunday": 6,
}
_DURATION = re.compile(r"([1-9][0-9]*)([dhms])")
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_HHMM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_RULE_FIELDS = ("name", "priority", "locations", "when", "then", "limit", "stop", "validFrom", "validUntil")
_CUSTOMER_FIELDS = (
    "new",
    "hasEmail",
    "hasPhone",
    "hasLoyaltyCard",
    "visits",
    "lifetimeSpend",
    "birthdayWithinDays",
)
_MATCHER_FIELDS = ("productId", "productCategory", "manufacturer", "minQuantity")


def parse_rules(
    raw: object,
    *,
    locations: Collection[str],
    widgets: Collection[int],
    cfs_templates: Collection[int],
    message_templates: Collection[str],
    path: str = "rules",
) -> list[Rule]:
    """Validate a company's ``rules:`` list (``None`` is no rules); raise RuleError on the first problem.

    Ids are checked against the company's ``locations``, ``widgets``, ``cfs_templates`` and
    ``message_templates``; ``path`` prefixes the field paths in errors.
    """
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise RuleError("must be a list of rules", rule=None, field=path)
    known = _Known(frozenset(locations), frozenset(widgets), frozenset(cfs_templates), message_templates)
    rules: list[Rule] = []
    names: set[str] = set()
    for i, item in enumerate(raw):
        rule = _Parser(known, f"{path}[{i}]").rule(item)
        if rule.name in names:
            raise RuleError("duplicate rule name in this company", rule=rule.name, field=f"{path}[{i}].name")
        names.add(rule.name)
        rules.append(rule)
    return rules


@dataclass(frozen=True)
class _Known:
    locations: frozenset[str]
    widgets: frozenset[int]
    cfs_templates: frozenset[int]
    message_templates: Collection[str]


class _Parser:
    """Validates one rule; remembers its name so that every error can name it."""

    def __init__(self, known: _Known, path: str) -> None:
        self.known = known
        self.path = path
        self.name: str | None = None

    def fail(self, path: str, message: str) -> NoReturn:
        raise RuleError(message, rule=self.name, field=path)

    def rule(self, raw: object) -> Rule:
        p = self.path
        if isinstance(raw, Mapping) and isinstance(raw.get("name"), str) and raw["name"].strip():
            self.name = raw["name"]
        spec = self.mapping(raw, p, _RULE_FIELDS, required=("name", "then"))
        name = self.text(spec["name"], f"{p}.name")
        valid_from = self.moment(spec["validFrom"], f"{p}.validFrom") if "validFrom" in spec else None
        valid_until = self.moment(spec["validUntil"], f"{p}.validUntil") if "validUntil" in spec else None
        if valid_from is not None and valid_until is not None and _after(valid_from, valid_until):
            self.fail(f"{p}.validUntil", f"{valid_until.isoformat()} is before validFrom")
        return Rule(
            name=name,
            then=self.actions(spec["then"], f"{p}.then"),
            priority=self.integer(spec.get("priority", 0), f"{p}.priority"),
            locations=self.location_ids(spec["locations"], f"{p}.locations") if "locations" in spec else None,
            when=self.condition(spec["when"], f"{p}.when") if "when" in spec else None,
            limit=self.limit(spec["limit"], f"{p}.limit") if "limit" in spec else None,
            stop=self.boolean(spec.get("stop", False), f"{p}.stop"),
            valid_from=valid_from,
            valid_until=valid_until,
        )

    # -- plain values

    def mapping(
        self, raw: object, path: str, allowed: Sequence[str], *, required: Sequence[str] = ()
    ) -> Mapping[str, object]:
        if not isinstance(raw, Mapping):
            self.fail(path, f"must be a mapping with keys {', '.join(allowed)}")
        for key in raw:
            if key not in allowed:
                self.fail(f"{path}.{key}", f"unknown field; expected one of {', '.join(allowed)}")
        for key in required:
            if key not in raw:
                self.fail(f"{path}.{key}", "is required")
        return raw

    def text(self, raw: object, path: str) -> str:
        if not isinstance(raw, str) or not raw.strip():
            self.fail(path, "must be a non-empty string")
        return raw

    def texts(self, raw: object, path: str) -> tuple[str, ...]:
        """A string or a non-empty list of strings."""
        if isinstance(raw, str):
            return (self.text(raw, path),)
        if not isinstance(raw, list) or not raw:
            self.fail(path, "must be a string or a non-empty list of strings")
        return tuple(self.text(item, f"{path}[{i}]") for i, item in enumerate(raw))

    def integer(self, raw: object, path: str, *, minimum: int | None = None) -> int:
        if not isinstance(raw, int) or isinstance(raw, bool):
            self.fail(path, f"must be an integer, not {raw!r}")
        if minimum is not None and raw < minimum:
            self.fail(path, f"must be at least {minimum}")
        return raw

    def boolean(self, raw: object, path: str) -> bool:
        if not isinstance(raw, bool):
            self.fail(path, f"must be true or false, not {raw!r}")
        return raw

    def decimal(self, raw: object, path: str) -> Decimal:
        if isinstance(raw, bool) or not isinstance(raw, int | float | Decimal | str):
            self.fail(path, f"must be a number, not {raw!r}")
        try:
            value = Decimal(str(raw).strip())
        except InvalidOperation:
            self.fail(path, f"must be a number, not {raw!r}")
        if not value.is_finite():
            self.fail(path, "must be a finite number")
        return value

    def range(self, raw: object, path: str, *, integer: bool = False) -> Range:
        spec = self.mapping(raw, path, ("between", "gte", "lte"))
        if not spec:
            self.fail(path, "needs between, gte or lte")
        number = self.integer if integer else self.decimal
        lows: list[Decimal] = []
        highs: list[Decimal] = []
        if "between" in spec:
            pair = spec["between"]
            if not isinstance(pair, list) or len(pair) != 2:
                self.fail(f"{path}.between", "must be a list [low, high]")
            lo, hi = (Decimal(number(v, f"{path}.between[{i}]")) for i, v in enumerate(pair))
            if lo > hi:
                self.fail(f"{path}.between", f"low {lo} is above high {hi}")
            lows.append(lo)
            highs.append(hi)
        if "gte" in spec:
            lows.append(Decimal(number(spec["gte"], f"{path}.gte")))
        if "lte" in spec:
            highs.append(Decimal(number(spec["lte"], f"{path}.lte")))
        result = Range(max(lows) if lows else None, min(highs) if highs else None)
        if result.gte is not None and result.lte is not None and result.gte > result.lte:
            self.fail(path, f"no value is both >= {result.gte} and <= {result.lte}")
        return result

    def duration(self, raw: object, path: str) -> timedelta:
        match = _DURATION.fullmatch(raw.strip()) if isinstance(raw, str) else None
        if match is None:
            self.fail(path, f"must be a duration like 7d, 12h, 30m or 90s, not {raw!r}")
        return timedelta(seconds=int(match[1]) * _UNITS[match[2]])

    def moment(self, raw: object, path: str) -> date:
        if isinstance(raw, date):  # YAML gives date or datetime objects
            return raw
        text = raw.strip() if isinstance(raw, str) else ""
        try:
            return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError:
            self.fail(path, f"must be an ISO date or datetime, not {raw!r}")

    def clock(self, raw: object, path: str) -> time:
        if isinstance(raw, int) and not isinstance(raw, bool):
            self.fail(path, 'must be a quoted "HH:MM" (YAML reads unquoted 22:00 as the number 1320)')
        match = _HHMM.fullmatch(raw) if isinstance(raw, str) else None
        if match is None:
            self.fail(path, f'must be a time "HH:MM", not {raw!r}')
        return time(int(match[1]), int(match[2]))

    def members(self, raw: object, path: str) -> tuple[str, ...]:
        """``{in: [...]}``."""
        spec = self.mapping(raw, path, ("in",), required=("in",))
        return self.texts(spec["in"], f"{path}.in")

    def location_ids(self, raw: object, path: str) -> tuple[str, ...]:
        ids = self.texts(raw, path)
        for i, loc in enumerate(ids):
            if loc not in self.known.locations:
                self.fail(f"{path}[{i}]" if isinstance(raw, list) else path, f"unknown location {loc!r}")
        return ids

    # -- rule parts

    def actions(self, raw: object, path: str) -> Actions:
        spec = self.mapping(raw, path, ("qrWidget", "cfsTemplate", "notify"))
        if not spec:
            self.fail(path, "needs at least one action: qrWidget, cfsTemplate or notify")
        widget = template = None
        if "qrWidget" in spec:
            widget = self.integer(spec["qrWidget"], f"{path}.qrWidget")
            if widget not in self.known.widgets:
                self.fail(f"{path}.qrWidget", f"unknown widget {widget}")
        if "cfsTemplate" in spec:
            template = self.integer(spec["cfsTemplate"], f"{path}.cfsTemplate")
            if template not in self.known.cfs_templates:
                self.fail(f"{path}.cfsTemplate", f"unknown CFS template {template}")
        notify = self.texts(spec["notify"], f"{path}.notify") if "notify" in spec else ()
        for i, message in enumerate(notify):
            if message not in self.known.message_templates:
                self.fail(f"{path}.notify[{i}]", f"unknown message template {message!r}")
        if len(set(notify)) != len(notify):
            self.fail(f"{path}.notify", "lists a message template twice")
        return Actions(widget, template, notify)

    def limit(self, raw: object, path: str) -> Limit:
        spec = self.mapping(raw, path, ("perCustomer", "per"), required=("perCustomer", "per"))
        return Limit(
            per_customer=self.integer(spec["perCustomer"], f"{path}.perCustomer", minimum=1),
            per=self.duration(spec["per"], f"{path}.per"),
        )

    def condition(self, raw: object, path: str) -> Condition:
        if not isinstance(raw, Mapping) or len(raw) != 1:
            self.fail(
                path, f"must be a mapping with exactly one of {', '.join(_CONDITIONS)} (combine with all)"
            )
        [(key, value)] = raw.items()
        if key not in _CONDITIONS:
            self.fail(f"{path}.{key}", f"unknown condition; expected one of {', '.join(_CONDITIONS)}")
        return _CONDITIONS[key](self, value, f"{path}.{key}")

    def all_of(self, raw: object, path: str) -> AllOf:
        return AllOf(self.conditions(raw, path))

    def any_of(self, raw: object, path: str) -> AnyOf:
        return AnyOf(self.conditions(raw, path))

    def conditions(self, raw: object, path: str) -> tuple[Condition, ...]:
        if not isinstance(raw, list) or not raw:
            self.fail(path, "must be a non-empty list of conditions")
        return tuple(self.condition(item, f"{path}[{i}]") for i, item in enumerate(raw))

    def not_(self, raw: object, path: str) -> Not:
        return Not(self.condition(raw, path))

    def amount(self, raw: object, path: str) -> Amount:
        return Amount(self.range(raw, path))

    def transaction_type(self, raw: object, path: str) -> TransactionType:
        return TransactionType(self.members(raw, path))

    def products(self, raw: object, path: str) -> Products:
        spec = self.mapping(raw, path, ("any", "all"))
        if len(spec) != 1:
            self.fail(path, "needs exactly one of any, all")
        [(mode, value)] = spec.items()
        where = f"{path}.{mode}"
        matcher = self.mapping(value, where, _MATCHER_FIELDS)
        if not {"productId", "productCategory", "manufacturer"} & matcher.keys():
            self.fail(where, "needs productId, productCategory or manufacturer")

        def field(key: str) -> tuple[str, ...] | None:
            return self.texts(matcher[key], f"{where}.{key}") if key in matcher else None

        minimum = (
            self.decimal(matcher["minQuantity"], f"{where}.minQuantity") if "minQuantity" in matcher else None
        )
        if minimum is not None and minimum <= 0:
            self.fail(f"{where}.minQuantity", "must be above 0")
        return Products(
            "any" if mode == "any" else "all",
            field("productId"),
            field("productCategory"),
            field("manufacturer"),
            minimum,
        )

    def basket_quantity(self, raw: object, path: str) -> BasketQuantity:
        return BasketQuantity(self.range(raw, path))

    def customer(self, raw: object, path: str) -> Customer:
        spec = self.mapping(raw, path, _CUSTOMER_FIELDS)
        if not spec:
            self.fail(path, f"needs one of {', '.join(_CUSTOMER_FIELDS)}")

        def flag(key: str) -> bool | None:
            return self.boolean(spec[key], f"{path}.{key}") if key in spec else None

        def span(key: str, *, integer: bool = False) -> Range | None:
            return self.range(spec[key], f"{path}.{key}", integer=integer) if key in spec else None

        days = spec.get("birthdayWithinDays")
        return Customer(
            new=flag("new"),
            has_email=flag("hasEmail"),
            has_phone=flag("hasPhone"),
            has_loyalty_card=flag("hasLoyaltyCard"),
            visits=span("visits", integer=True),
            lifetime_spend=span("lifetimeSpend"),
            birthday_within_days=None
            if days is None
            else self.integer(days, f"{path}.birthdayWithinDays", minimum=0),
        )

    def location(self, raw: object, path: str) -> Location:
        spec = self.mapping(raw, path, ("in",), required=("in",))
        return Location(self.location_ids(spec["in"], f"{path}.in"))

    def terminal(self, raw: object, path: str) -> Terminal:
        return Terminal(self.members(raw, path))

    def day_of_week(self, raw: object, path: str) -> DayOfWeek:
        names = self.members(raw, path)
        days = []
        for i, name in enumerate(names):
            day = _DAY_NAMES.get(name.strip().lower())
            if day is None:
                self.fail(f"{path}.in[{i}]", f"unknown day {name!r}; use Mon..Sun or Monday..Sunday")
            days.append(day)
        return DayOfWeek(tuple(days))

    def time_of_day(self, raw: object, path: str) -> TimeOfDay:
        spec = self.mapping(raw, path, ("between",), required=("between",))
        pair = spec["between"]
        if not isinstance(pair, list) or len(pair) != 2:
            self.fail(f"{path}.between", 'must be a list ["HH:MM", "HH:MM"]')
        start, end = (self.clock(v, f"{path}.between[{i}]") for i, v in enumerate(pair))
        if start == end:
            self.fail(f"{path}.between", "start equals end; omit timeOfDay to mean all day")
        return TimeOfDay(start, end)


_CONDITIONS: dict[str, Callable[[_Parser, object, str], Condition]] = {
    "all": _Parser.all_of,
    "any": _Parser.any_of,
    "not": _Parser.not_,
    "amount": _Parser.amount,
    "transactionType": _Parser.transaction_type,
    "products": _Parser.products,
    "basketQuantity": _Parser.basket_quantity,
    "customer": _Parser.customer,
    "location": _Parser.location,
    "terminal": _Parser.terminal,
    "dayOfWeek": _Parser.day_of_week,
    "timeOfDay": _Parser.time_of_day,
}


def _after(a: date, b: date) -> bool:
    """Whether ``a`` is after ``b``; dates count as the start of their day; mixed offsets don't compare."""
    x = a if isinstance(a, datetime) else datetime.combine(a, time())
    y = b if isinstance(b, datetime) else datetime.combine(b, time.max)
    if (x.tzinfo is None) != (y.tzinfo is None):
        return False
    return x > y


# --------------------------------------------------------------------------- back to plain data


def rule_to_data(rule: Rule) -> dict[str, object]:
    """The rule as registry-shaped plain data (JSON-safe: decimals as strings, dates as ISO strings)."""
    data: dict[str, object] = {"name": rule.name, "priority": rule.priority}
    if rule.locations is not None:
        data["locations"] = list(rule.locations)
    if rule.when is not None:
        data["when"] = _condition_to_data(rule.when)
    then: dict[str, object] = {}
    if rule.then.qr_widget is not None:
        then["qrWidget"] = rule.then.qr_widget
    if rule.then.cfs_template is not None:
        then["cfsTemplate"] = rule.then.cfs_template
    if rule.then.notify:
        then["notify"] = list(rule.then.notify)
    data["then"] = then
    if rule.limit is not None:
        data["limit"] = {"perCustomer": rule.limit.per_customer, "per": _duration_text(rule.limit.per)}
    if rule.stop:
        data["stop"] = True
    if rule.valid_from is not None:
        data["validFrom"] = rule.valid_from.isoformat()
    if rule.valid_until is not None:
        data["validUntil"] = rule.valid_until.isoformat()
    return data


def _condition_to_data(cond: Condition) -> dict[str, object]:
    match cond:
        case AllOf() | AnyOf():
            return {"all" if isinstance(cond, AllOf) else "any": [_condition_to_data(c) for c in cond.items]}
        case Not():
            return {"not": _condition_to_data(cond.item)}
        case Amount():
            return {"amount": _range_to_data(cond.range)}
        case BasketQuantity():
            return {"basketQuantity": _range_to_data(cond.range)}
        case TransactionType():
            return {"transactionType": {"in": list(cond.names)}}
        case Location() | Terminal():
            return {"location" if isinstance(cond, Location) else "terminal": {"in": list(cond.ids)}}
        case DayOfWeek():
            return {"dayOfWeek": {"in": [_DAYS[d] for d in cond.days]}}
        case TimeOfDay():
            return {"timeOfDay": {"between": [f"{cond.start:%H:%M}", f"{cond.end:%H:%M}"]}}
        case Products():
            return {"products": {cond.mode: _matcher_to_data(cond)}}
        case Customer():
            return {"customer": _customer_to_data(cond)}


def _range_to_data(r: Range, *, integer: bool = False) -> dict[str, object]:
    def number(d: Decimal) -> object:
        return int(d) if integer else str(d)

    if r.gte is not None and r.lte is not None:
        return {"between": [number(r.gte), number(r.lte)]}
    return {"gte": number(r.gte)} if r.gte is not None else {"lte": number(r.lte or Decimal(0))}


def _matcher_to_data(p: Products) -> dict[str, object]:
    data: dict[str, object] = {}
    for key, values in (("productId", p.product_ids), ("productCategory", p.categories)):
        if values is not None:
            data[key] = list(values)
    if p.manufacturers is not None:
        data["manufacturer"] = list(p.manufacturers)
    if p.min_quantity is not None:
        data["minQuantity"] = str(p.min_quantity)
    return data


def _customer_to_data(c: Customer) -> dict[str, object]:
    data: dict[str, object] = {}
    flags = (("new", c.new), ("hasEmail", c.has_email), ("hasPhone", c.has_phone))
    for key, flag in (*flags, ("hasLoyaltyCard", c.has_loyalty_card)):
        if flag is not None:
            data[key] = flag
    if c.visits is not None:
        data["visits"] = _range_to_data(c.visits, integer=True)
    if c.lifetime_spend is not None:
        data["lifetimeSpend"] = _range_to_data(c.lifetime_spend)
    if c.birthday_within_days is not None:
        data["birthdayWithinDays"] = c.birthday_within_days
    return data


def _duration_text(per: timedelta) -> str:
    seconds = int(per.total_seconds())
    unit = next(u for u, size in _UNITS.items() if seconds % size == 0)
    return f"{seconds // _UNITS[unit]}{unit}"


def _flow(data: object) -> str:
    """Compact YAML-like text for explanations: ``{amount: {between: [15, 50]}}``."""
    if isinstance(data, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in data.items()) + "}"
    if isinstance(data, list | tuple):
        return "[" + ", ".join(_flow(v) for v in data) + "]"
    if isinstance(data, bool):
        return "true" if data else "false"
    return str(data)


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


# --------------------------------------------------------------------------- compiling

Pred: TypeAlias = Callable[[Facts], bool]
Failure: TypeAlias = tuple[str, str]  # (path, text)
Explainer: TypeAlias = Callable[[Facts, str], "Failure | None"]


def _compile(cond: Condition) -> tuple[Pred, Explainer]:
    """A fast predicate and its explaining twin (called only with explain=True) for one condition."""
    match cond:
        case AllOf():
            return _all_of(cond)
        case AnyOf():
            return _any_of(cond)
        case Not():
            return _not(cond)
        case Amount():
            return _amount(cond)
        case TransactionType():
            return _transaction_type(cond)
        case Products():
            return _products(cond)
        case BasketQuantity():
            return _basket_quantity(cond)
        case Customer():
            return _customer(cond)
        case Location() | Terminal():
            return _ids(cond)
        case DayOfWeek():
            return _day_of_week(cond)
        case TimeOfDay():
            return _time_of_day(cond)


def _leaf(key: str, pred: Pred, why: Callable[[Facts], str]) -> tuple[Pred, Explainer]:
    def explain(f: Facts, path: str) -> Failure | None:
        return None if pred(f) else (f"{path}.{key}", why(f))

    return pred, explain


def _compile_all(items: Sequence[Condition]) -> tuple[tuple[Pred, ...], tuple[Explainer, ...]]:
    compiled = [_compile(c) for c in items]
    return tuple(p for p, _ in compiled), tuple(e for _, e in compiled)


def _all_of(cond: AllOf) -> tuple[Pred, Explainer]:
    preds, explainers = _compile_all(cond.items)

    def pred(f: Facts) -> bool:
        for p in preds:  # noqa: SIM110 -- a plain loop beats all()/any() over a generator here
            if not p(f):
                return False
        return True

    def explain(f: Facts, path: str) -> Failure | None:
        for i, e in enumerate(explainers):
            if failure := e(f, f"{path}.all[{i}]"):
                return failure
        return None

    return pred, explain


def _any_of(cond: AnyOf) -> tuple[Pred, Explainer]:
    preds, explainers = _compile_all(cond.items)

    def pred(f: Facts) -> bool:
        for p in preds:  # noqa: SIM110 -- a plain loop beats all()/any() over a generator here
            if p(f):
                return True
        return False

    def explain(f: Facts, path: str) -> Failure | None:
        if pred(f):
            return None
        failures = [e(f, f"{path}.any[{i}]") for i, e in enumerate(explainers)]
        return f"{path}.any", "none matched: " + "; ".join(f"{p}: {t}" for p, t in filter(None, failures))

    return pred, explain


def _not(cond: Not) -> tuple[Pred, Explainer]:
    inner, _ = _compile(cond.item)
    text = _flow(_condition_to_data(cond.item))

    def pred(f: Facts) -> bool:
        return not inner(f)

    return _leaf("not", pred, lambda f: f"matched {text}")


def _range_test(r: Range) -> Callable[[Decimal | int], bool]:
    lo, hi = r.gte, r.lte
    if lo is not None and hi is not None:
        return lambda v: lo <= v <= hi
    if lo is not None:
        return lambda v: v >= lo
    assert hi is not None
    return lambda v: v <= hi


def _range_text(r: Range) -> str:
    if r.gte is not None and r.lte is not None:
        return f"between {r.gte} and {r.lte}"
    return f">= {r.gte}" if r.gte is not None else f"<= {r.lte}"


def _amount(cond: Amount) -> tuple[Pred, Explainer]:
    test, text = _range_test(cond.range), _range_text(cond.range)

    def pred(f: Facts) -> bool:
        return f.amount is not None and test(f.amount)

    return _leaf("amount", pred, lambda f: "no amount" if f.amount is None else f"{f.amount} not {text}")


def _basket_quantity(cond: BasketQuantity) -> tuple[Pred, Explainer]:
    test, text = _range_test(cond.range), _range_text(cond.range)
    return _leaf("basketQuantity", lambda f: test(f._quantity), lambda f: f"{f._quantity} not {text}")


def _transaction_type(cond: TransactionType) -> tuple[Pred, Explainer]:
    names = frozenset(n.lower() for n in cond.names)
    listed = _flow(cond.names)
    return _leaf(
        "transactionType", lambda f: f._type in names, lambda f: f"{f.transaction_type!r} not in {listed}"
    )


def _ids(cond: Location | Terminal) -> tuple[Pred, Explainer]:
    ids, listed = frozenset(cond.ids), _flow(cond.ids)
    if isinstance(cond, Location):
        return _leaf(
            "location", lambda f: f.location_id in ids, lambda f: f"{f.location_id!r} not in {listed}"
        )
    return _leaf("terminal", lambda f: f.terminal_id in ids, lambda f: f"{f.terminal_id!r} not in {listed}")


def _day_of_week(cond: DayOfWeek) -> tuple[Pred, Explainer]:
    days, listed = frozenset(cond.days), _flow([_DAYS[d] for d in cond.days])
    return _leaf("dayOfWeek", lambda f: f._weekday in days, lambda f: f"{_DAYS[f._weekday]} not in {listed}")


def _time_of_day(cond: TimeOfDay) -> tuple[Pred, Explainer]:
    start = cond.start.hour * 3600 + cond.start.minute * 60
    end = cond.end.hour * 3600 + cond.end.minute * 60
    if start < end:
        pred: Pred = lambda f: start <= f._seconds < end  # noqa: E731
    else:
        pred = lambda f: f._seconds >= start or f._seconds < end  # noqa: E731
    text = f"between {cond.start:%H:%M} and {cond.end:%H:%M}"
    return _leaf("timeOfDay", pred, lambda f: f"{f.local_time:%H:%M} not {text}")


def _products(cond: Products) -> tuple[Pred, Explainer]:
    match = _line_matcher(cond)
    need = cond.min_quantity
    described = _flow(_matcher_to_data(cond))

    def matching(f: Facts) -> Decimal | None:
        """Summed quantity of the matching lines, None if no line matches."""
        total: Decimal | None = None
        for line in f._lines:
            if match(line):
                total = line[3] if total is None else total + line[3]
        return total

    if cond.mode == "any":

        def pred(f: Facts) -> bool:
            total = matching(f)
            return total is not None and (need is None or total >= need)

        def why(f: Facts) -> str:
            total = matching(f)
            return f"no line matches {described}" if total is None else f"matching quantity {total} < {need}"

        return _leaf("products.any", pred, why)

    def pred_all(f: Facts) -> bool:
        lines = f._lines
        if not lines:
            return False
        for line in lines:
            if not match(line):
                return False
        return need is None or f._quantity >= need

    def why_all(f: Facts) -> str:
        if not f._lines:
            return "basket is empty"
        for i, line in enumerate(f._lines):
            if not match(line):
                return f"line {i + 1} (productId {f.products[i].product_id}) does not match {described}"
        return f"basket quantity {f._quantity} < {need}"

    return _leaf("products.all", pred_all, why_all)


def _line_matcher(cond: Products) -> Callable[[_Line], bool]:
    checks = tuple(
        (i, frozenset(v.lower() for v in values))
        for i, values in enumerate((cond.product_ids, cond.categories, cond.manufacturers))
        if values is not None
    )
    if len(checks) == 1:
        [(index, allowed)] = checks
        return lambda line: line[index] in allowed

    def match(line: _Line) -> bool:
        for index, allowed in checks:  # noqa: SIM110 -- hot path, see _all_of
            if line[index] not in allowed:
                return False
        return True

    return match


_Check: TypeAlias = tuple[str, Callable[[CustomerFacts, Facts], bool], Callable[[CustomerFacts, Facts], str]]


def _customer(cond: Customer) -> tuple[Pred, Explainer]:
    checks = _customer_checks(cond)
    tests = tuple(test for _, test, _ in checks)

    def pred(f: Facts) -> bool:
        c = f.customer
        if c is None:
            return False
        for test in tests:  # noqa: SIM110 -- hot path, see _all_of
            if not test(c, f):
                return False
        return True

    def explain(f: Facts, path: str) -> Failure | None:
        c = f.customer
        if c is None:
            return f"{path}.customer", "anonymous transaction (no customer)"
        for key, test, why in checks:
            if not test(c, f):
                return f"{path}.customer.{key}", why(c, f)
        return None

    return pred, explain


def _customer_checks(cond: Customer) -> list[_Check]:
    checks: list[_Check] = []
    if (new := cond.new) is not None:
        checks.append(("new", lambda c, f: c.is_new is new, lambda c, f: f"is_new is {c.is_new}"))
    if (email := cond.has_email) is not None:
        checks.append(
            ("hasEmail", lambda c, f: c.has_email is email, lambda c, f: f"has_email is {c.has_email}")
        )
    if (phone := cond.has_phone) is not None:
        checks.append(
            ("hasPhone", lambda c, f: c.has_phone is phone, lambda c, f: f"has_phone is {c.has_phone}")
        )
    if (card := cond.has_loyalty_card) is not None:
        checks.append(
            (
                "hasLoyaltyCard",
                lambda c, f: c.has_loyalty_card is card,
                lambda c, f: f"has_loyalty_card is {c.has_loyalty_card}",
            )
        )
    if cond.visits is not None:
        visits, vtext = _range_test(cond.visits), _range_text(cond.visits)
        checks.append(
            ("visits", lambda c, f: visits(c.visit_count), lambda c, f: f"{c.visit_count} not {vtext}")
        )
    if cond.lifetime_spend is not None:
        spend, stext = _range_test(cond.lifetime_spend), _range_text(cond.lifetime_spend)
        checks.append(
            (
                "lifetimeSpend",
                lambda c, f: spend(c.lifetime_spend),
                lambda c, f: f"{c.lifetime_spend} not {stext}",
            )
        )
    if (days := cond.birthday_within_days) is not None:
        checks.append(("birthdayWithinDays", lambda c, f: _birthday_soon(c, f._date, days), _birthday_why))
    return checks


def _birthday_soon(c: CustomerFacts, today: date, days: int) -> bool:
    return c.birth_date is not None and _days_until_birthday(c.birth_date, today) <= days


def _birthday_why(c: CustomerFacts, f: Facts) -> str:
    if c.birth_date is None:
        return "no birth date"
    return f"next birthday is {_days_until_birthday(c.birth_date, f._date)} days away"


def _days_until_birthday(born: date, today: date) -> int:
    """Days from ``today`` to the next birthday (0 = today); Feb 29 counts as Feb 28 in other years."""
    for year in (today.year, today.year + 1):
        day = 28 if (born.month, born.day) == (2, 29) and not calendar.isleap(year) else born.day
        birthday = date(year, born.month, day)
        if birthday >= today:
            return (birthday - today).days
    raise AssertionError("unreachable: next year's birthday is always ahead")


# --------------------------------------------------------------------------- rule sets

Outcome: TypeAlias = Literal[
    "fired", "failed", "limited", "not-valid-yet", "expired", "skipped-after-stop", "reversal"
]
EffectKind: TypeAlias = Literal["qrWidget", "cfsTemplate", "notify"]


class Effect(msgspec.Struct, frozen=True):
    """One thing to do, named by the rule that asked for it; ``target`` is the widget/template id."""

    rule: str
    kind: EffectKind
    target: str


class FiredRule(msgspec.Struct, frozen=True):
    """A rule that fired, with its actions."""

    rule: str
    actions: Actions


class RuleTrace(msgspec.Struct, frozen=True):
    """Why one rule did or did not fire; ``path`` names the condition or field (``when.all[0].amount``)."""

    rule: str
    outcome: Outcome
    path: str | None = None
    detail: str = ""


class Evaluation(msgspec.Struct):
    """The result of one evaluation: fired rules and their effects, in priority order."""

    fired: list[FiredRule] = msgspec.field(default_factory=list)
    effects: list[Effect] = msgspec.field(default_factory=list)
    explanation: list[RuleTrace] | None = None

    @property
    def qr_widget(self) -> Effect | None:
        """The QR widget of the highest-priority rule that produced one."""
        return next((e for e in self.effects if e.kind == "qrWidget"), None)

    @property
    def cfs_template(self) -> Effect | None:
        """The CFS template of the highest-priority rule that produced one."""
        return next((e for e in self.effects if e.kind == "cfsTemplate"), None)

    @property
    def notifications(self) -> list[Effect]:
        """Every ``notify`` effect, in priority order."""
        return [e for e in self.effects if e.kind == "notify"]


Window: TypeAlias = Callable[[Facts], "tuple[Outcome, str] | None"]


@dataclass(frozen=True, slots=True)
class _Compiled:
    name: str
    pred: Pred | None  # None: no `when`, always true
    explain: Explainer | None
    window: Window | None
    per_customer: int | None
    limit_text: str
    stop: bool
    fired: FiredRule
    effects: tuple[Effect, ...]
    actions_text: str


def _no_usage(rule: str) -> int:
    return 0


class RuleSet:
    """A company's compiled rules, sorted by priority and indexed by location. Build with compile_rules."""

    def __init__(self, by_location: Mapping[str, tuple[_Compiled, ...]], rules: Mapping[str, Rule]) -> None:
        self._compiled = dict(by_location)
        self._rules = {loc: tuple(rules[c.name] for c in cs) for loc, cs in by_location.items()}

    def for_location(self, location_id: str) -> tuple[Rule, ...]:
        """The rules that apply at ``location_id``, highest priority first (empty if unknown)."""
        return self._rules.get(location_id, ())

    def evaluate(
        self, facts: Facts, *, usage: Callable[[str], int] = _no_usage, explain: bool = False
    ) -> Evaluation:
        """Run the location's rules against ``facts``.

        ``usage(rule_name)`` says how often this customer got that rule within its limit window; it is
        called only for a limited rule whose conditions hold. A reversal fires nothing.
        """
        compiled = self._compiled.get(facts.location_id, ())
        traces: list[RuleTrace] | None = [] if explain else None
        if facts.is_reversal:
            if traces is not None:
                traces += [
                    RuleTrace(c.name, "reversal", None, "reversals never trigger rules") for c in compiled
                ]
            return Evaluation(explanation=traces)
        fired: list[FiredRule] = []
        effects: list[Effect] = []
        for i, c in enumerate(compiled):
            if c.window is not None and (closed := c.window(facts)) is not None:
                if traces is not None:
                    traces.append(
                        RuleTrace(
                            c.name,
                            closed[0],
                            "validFrom" if closed[0] == "not-valid-yet" else "validUntil",
                            closed[1],
                        )
                    )
                continue
            if c.pred is not None and not c.pred(facts):
                if traces is not None and c.explain is not None:
                    path, text = c.explain(facts, "when") or ("when", "failed")
                    traces.append(RuleTrace(c.name, "failed", path, text))
                continue
            if c.per_customer is not None:
                if facts.customer is None:
                    if traces is not None:
                        traces.append(
                            RuleTrace(
                                c.name, "limited", "limit", "anonymous customer; limited rules need one"
                            )
                        )
                    continue
                used = usage(c.name)
                if used >= c.per_customer:
                    if traces is not None:
                        traces.append(
                            RuleTrace(c.name, "limited", "limit", f"already fired {used}x {c.limit_text}")
                        )
                    continue
            fired.append(c.fired)
            effects += c.effects
            if traces is not None:
                traces.append(RuleTrace(c.name, "fired", None, c.actions_text))
            if c.stop:
                if traces is not None:
                    traces += [
                        RuleTrace(later.name, "skipped-after-stop", None, f"{c.name!r} fired with stop: true")
                        for later in compiled[i + 1 :]
                    ]
                break
        return Evaluation(fired=fired, effects=effects, explanation=traces)


def compile_rules(rules: Sequence[Rule], *, company_locations: Collection[str]) -> RuleSet:
    """Compile each rule once, sort by priority (ties keep list order), index by location."""
    names: set[str] = set()
    compiled: list[tuple[Rule, _Compiled]] = []
    for i, rule in enumerate(rules):
        if rule.name in names:
            raise RuleError("duplicate rule name in this company", rule=rule.name, field=f"rules[{i}].name")
        names.add(rule.name)
        for loc in rule.locations or ():
            if loc not in company_locations:
                raise RuleError(f"unknown location {loc!r}", rule=rule.name, field=f"rules[{i}].locations")
        compiled.append((rule, _compile_rule(rule)))
    compiled.sort(key=lambda pair: -pair[0].priority)  # stable: ties keep list order
    by_location = {
        loc: tuple(c for rule, c in compiled if rule.locations is None or loc in rule.locations)
        for loc in company_locations
    }
    return RuleSet(by_location, {rule.name: rule for rule in rules})


def _compile_rule(rule: Rule) -> _Compiled:
    pred, explain = _compile(rule.when) if rule.when is not None else (None, None)
    then = rule.then
    effects = [Effect(rule.name, "qrWidget", str(then.qr_widget))] if then.qr_widget is not None else []
    if then.cfs_template is not None:
        effects.append(Effect(rule.name, "cfsTemplate", str(then.cfs_template)))
    effects += [Effect(rule.name, "notify", message) for message in then.notify]
    limit = rule.limit
    return _Compiled(
        name=rule.name,
        pred=pred,
        explain=explain,
        window=_window(rule.valid_from, rule.valid_until),
        per_customer=limit.per_customer if limit else None,
        limit_text=f"(limit {limit.per_customer} per {_duration_text(limit.per)})" if limit else "",
        stop=rule.stop,
        fired=FiredRule(rule.name, then),
        effects=tuple(effects),
        actions_text=", ".join(f"{e.kind} {e.target}" for e in effects) + ("; stop" if rule.stop else ""),
    )


def _window(valid_from: date | None, valid_until: date | None) -> Window | None:
    if valid_from is None and valid_until is None:
        return None
    started = _moment_test(valid_from, after=True) if valid_from is not None else None
    ongoing = _moment_test(valid_until, after=False) if valid_until is not None else None
    early: tuple[Outcome, str] = (
        "not-valid-yet",
        f"valid from {valid_from.isoformat() if valid_from else ''}",
    )
    late: tuple[Outcome, str] = ("expired", f"valid until {valid_until.isoformat() if valid_until else ''}")

    def window(f: Facts) -> tuple[Outcome, str] | None:
        if started is not None and not started(f):
            return early
        if ongoing is not None and not ongoing(f):
            return late
        return None

    return window


def _moment_test(moment: date, *, after: bool) -> Pred:
    """Whether the facts' time is at/after (``after``) or at/before ``moment``."""
    if isinstance(moment, datetime) and moment.tzinfo is not None:
        return (lambda f: f.now >= moment) if after else (lambda f: f.now <= moment)
    if isinstance(moment, datetime):
        return (lambda f: f._wall >= moment) if after else (lambda f: f._wall <= moment)
    return (lambda f: f._date >= moment) if after else (lambda f: f._date <= moment)


def format_explanation(evaluation: Evaluation) -> str:
    """Human-readable text of an evaluation, for ``cmc rules test``."""
    lines = []
    for trace in evaluation.explanation or ():
        where = f"{trace.path}: " if trace.path else ""
        lines.append(f"{trace.outcome.upper():<18} {trace.rule}: {where}{trace.detail}")
    if evaluation.explanation == []:
        lines.append("no rules apply at this location")
    if evaluation.effects:
        lines.append("effects:")
        lines += [f"  {e.kind} {e.target}  (rule {e.rule!r})" for e in evaluation.effects]
    else:
        lines.append("effects: none")
    return "\n".join(lines)
