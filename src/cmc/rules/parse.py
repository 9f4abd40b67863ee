"""Parse a company's ``rules:`` data into validated Rule structs; RuleError names each problem.

``parse_rules`` raises the first problem; given a ``problems`` list it records every problem instead
(each independent part of a rule, each item of an ``all``/``any`` list) and returns the rules that
had none, so an API can answer every problem of a document at once.

Whatever the data holds, a problem is a RuleError and nothing else: drafts come from merchants (and
anyone holding a merchant token), and any other exception would be the API's 500. So the values
quoted in messages are shortened, conditions nest at most ``MAX_DEPTH`` deep, and numbers are
bounded before they reach ``timedelta`` or ``str``.
"""

from __future__ import annotations

import functools
import re
import reprlib
import unicodedata
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import NoReturn, TypeVar

from cmc.rules import model as m

# --------------------------------------------------------------------------- parsing

_DAY_NAMES = {
    **{d.lower(): i for i, d in enumerate(m.DAYS)},
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
_RULE_FIELDS = (
    "name", "priority", "locations", "when", "then", "limit", "stop", "validFrom", "validUntil",
    "holdoutPercent",
)  # fmt: skip
MAX_HOLDOUT = 50
"""At most half of a rule's customers may be held out."""
MAX_DURATION_DAYS = 3650
"""A limit's window is at most ten years: longer is the same as "once ever" for any shop, and the
limit is counted from ``now - per``, which must stay a date (``timedelta`` itself ends at 999,999,999
days)."""
MAX_DEPTH = 32
"""Conditions nest at most this deep (``when`` itself is 1): real rules use 3 or 4, and parsing,
compiling and evaluating each recurse once per level, far within Python's stack at 32."""
MAX_INTEGER = 2**53 - 1
"""Integers are kept within what every JSON reader holds exactly (RFC 7493, I-JSON): a document goes
back to browsers and to other languages' clients."""
MAX_NAME = 200
"""A rule name is stored with each firing and short link (``rule``, a 200-character column)."""
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
T = TypeVar("T")


class _Shown(reprlib.Repr):
    """Values as messages quote them: short, and for any value (a list nested 100,000 deep, an integer
    of 5,000 digits, which ``repr`` refuses); the message goes back to whoever sent the value."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxstring = 60
        self.maxother = 60

    def repr_int(self, x: int, level: int) -> str:
        if abs(x) > MAX_INTEGER:  # repr() of more than 4,300 digits raises ValueError
            return "a huge integer"
        return super().repr_int(x, level)


_shown = _Shown().repr


def parse_rules(
    raw: object,
    *,
    locations: Collection[str],
    widgets: Collection[int],
    cfs_templates: Collection[int],
    message_templates: Collection[str],
    path: str = "rules",
    problems: list[m.RuleError] | None = None,
) -> list[m.Rule]:
    """Validate a company's ``rules:`` list (``None`` is no rules).

    Ids are checked against the company's ``locations``, ``widgets``, ``cfs_templates`` and
    ``message_templates``; ``path`` prefixes the field paths in errors. Without ``problems`` the
    first problem is raised as a RuleError; with it, every problem is appended there and the rules
    without any are returned.
    """
    found: list[m.RuleError] = [] if problems is None else problems
    before = len(found)
    rules = _parse_all(raw, _Known(frozenset(locations), frozenset(widgets), frozenset(cfs_templates),
                                   message_templates), path, found)  # fmt: skip
    if problems is None and len(found) > before:
        raise found[before]
    return rules


def _parse_all(raw: object, known: _Known, path: str, problems: list[m.RuleError]) -> list[m.Rule]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append(m.RuleError("must be a list of rules", rule=None, field=path))
        return []
    rules: list[m.Rule] = []
    names: set[str] = set()
    for i, item in enumerate(raw):
        rule = _Parser(known, f"{path}[{i}]", problems).rule(item)
        if rule is None:
            continue
        if rule.name in names:
            problems.append(
                m.RuleError("duplicate rule name in this company", rule=rule.name, field=f"{path}[{i}].name")
            )
            continue
        names.add(rule.name)
        rules.append(rule)
    return rules


@dataclass(frozen=True)
class _Known:
    locations: frozenset[str]
    widgets: frozenset[int]
    cfs_templates: frozenset[int]
    message_templates: Collection[str]


class _Reported(Exception):
    """A part failed and its problems are already recorded: the enclosing part fails too, silently."""


class _Parser:
    """Validates one rule; remembers its name so that every error can name it.

    ``fail`` stops the part being parsed; ``gather`` runs an independent part, records what failed
    in it and carries on with the next, so one rule reports each of its broken parts.
    """

    def __init__(self, known: _Known, path: str, problems: list[m.RuleError]) -> None:
        self.known = known
        self.path = path
        self.name: str | None = None
        self.problems = problems
        self.failed = False
        self.depth = 0  # of the condition being parsed: `when` is 1

    def fail(self, path: str, message: str) -> NoReturn:
        raise m.RuleError(message, rule=self.name, field=path)

    def record(self, path: str, message: str) -> None:
        """Note a problem and go on (the rule will not be returned)."""
        self.problems.append(m.RuleError(message, rule=self.name, field=path))
        self.failed = True

    def gather(self, parse: Callable[[], T]) -> T | None:
        """``parse()``, or None when it failed (its problem recorded, this rule marked failed)."""
        try:
            return parse()
        except m.RuleError as exc:
            self.problems.append(exc)
        except _Reported:
            pass
        self.failed = True
        return None

    def rule(self, raw: object) -> m.Rule | None:
        """The rule, or None when any part of it is wrong (each wrong part recorded)."""
        p = self.path
        if isinstance(raw, Mapping) and isinstance(raw.get("name"), str) and raw["name"].strip():
            self.name = raw["name"][: MAX_NAME + 1]  # every message names it: not a megabyte of it
        found = self.gather(lambda: self.fields(raw, p))
        if found is None:
            return None
        spec: Mapping[str, object] = found

        def part(key: str, parse: Callable[[object, str], T]) -> T | None:
            return self.gather(lambda: parse(spec[key], f"{p}.{key}")) if key in spec else None

        name = part("name", self.rule_name)
        valid_from = part("validFrom", self.moment)
        valid_until = part("validUntil", self.moment)
        if valid_from is not None and valid_until is not None and _after(valid_from, valid_until):
            self.record(f"{p}.validUntil", f"{valid_until.isoformat()} is before validFrom")
        then = part("then", self.actions)
        priority = self.gather(lambda: self.integer(spec.get("priority", 0), f"{p}.priority"))
        locations = part("locations", self.location_ids)
        when = part("when", self.condition)
        limit = part("limit", self.limit)
        stop = self.gather(lambda: self.boolean(spec.get("stop", False), f"{p}.stop"))
        holdout = self.gather(lambda: self.percent(spec.get("holdoutPercent", 0), f"{p}.holdoutPercent"))
        if self.failed or name is None or then is None or priority is None or stop is None or holdout is None:
            return None
        return m.Rule(
            name=name,
            then=then,
            priority=priority,
            locations=locations,
            when=when,
            limit=limit,
            stop=stop,
            valid_from=valid_from,
            valid_until=valid_until,
            holdout_percent=holdout,
        )

    def fields(self, raw: object, path: str) -> Mapping[str, object]:
        """A rule's mapping: each unknown and each missing field is recorded; the rest can still be read."""
        if not isinstance(raw, Mapping):
            self.fail(path, f"must be a mapping with keys {', '.join(_RULE_FIELDS)}")
        for key in raw:
            if key not in _RULE_FIELDS:
                self.record(f"{path}.{key}", f"unknown field; expected one of {', '.join(_RULE_FIELDS)}")
        for key in ("name", "then"):
            if key not in raw:
                self.record(f"{path}.{key}", "is required")
        return raw

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

    def rule_name(self, raw: object, path: str) -> str:
        """A name the lift's URL (``.../rules/{name}/lift``) can carry and a firing can store."""
        name = self.text(raw, path)
        if len(name) > MAX_NAME:
            self.fail(path, f"must be at most {MAX_NAME} characters")
        # A router splits the path at a "/" even when it came as %2F, and clients resolve the dot
        # segments "." and ".." away (browsers even their %2E forms): such a rule's lift is unreachable.
        if "/" in name:
            self.fail(path, 'must not contain "/"')
        if name in (".", ".."):
            self.fail(path, 'must not be "." or ".."')
        # Cc: NUL (which PostgreSQL refuses in text), newlines, tabs, DEL, C1; Cs: a lone surrogate
        # (JSON's "\ud800"), which no UTF-8 can store.
        if any(unicodedata.category(c) in ("Cc", "Cs") for c in name):
            self.fail(path, "must not contain control characters")
        return name

    def texts(self, raw: object, path: str) -> tuple[str, ...]:
        """A string or a non-empty list of strings."""
        if isinstance(raw, str):
            return (self.text(raw, path),)
        if not isinstance(raw, list) or not raw:
            self.fail(path, "must be a string or a non-empty list of strings")
        return tuple(self.text(item, f"{path}[{i}]") for i, item in enumerate(raw))

    def integer(self, raw: object, path: str, *, minimum: int | None = None) -> int:
        if not isinstance(raw, int) or isinstance(raw, bool):
            self.fail(path, f"must be an integer, not {_shown(raw)}")
        if minimum is not None and raw < minimum:
            self.fail(path, f"must be at least {minimum}")
        if abs(raw) > MAX_INTEGER:
            self.fail(path, f"must be between -{MAX_INTEGER} and {MAX_INTEGER}")
        return raw

    def percent(self, raw: object, path: str) -> int:
        value = self.integer(raw, path, minimum=0)
        if value > MAX_HOLDOUT:
            self.fail(path, f"must be at most {MAX_HOLDOUT} (a holdout larger than the treatment)")
        return value

    def boolean(self, raw: object, path: str) -> bool:
        if not isinstance(raw, bool):
            self.fail(path, f"must be true or false, not {_shown(raw)}")
        return raw

    def decimal(self, raw: object, path: str) -> Decimal:
        if isinstance(raw, bool) or not isinstance(raw, int | float | Decimal | str):
            self.fail(path, f"must be a number, not {_shown(raw)}")
        try:
            # An int directly: str() refuses one of more than 4,300 digits; Decimal keeps it exactly.
            value = Decimal(raw) if isinstance(raw, int) else Decimal(str(raw).strip())
        except InvalidOperation:
            self.fail(path, f"must be a number, not {_shown(raw)}")
        if not value.is_finite():
            self.fail(path, "must be a finite number")
        return value

    def range(self, raw: object, path: str, *, integer: bool = False) -> m.Range:
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
        result = m.Range(max(lows) if lows else None, min(highs) if highs else None)
        if result.gte is not None and result.lte is not None and result.gte > result.lte:
            self.fail(path, f"no value is both >= {result.gte} and <= {result.lte}")
        return result

    def duration(self, raw: object, path: str) -> timedelta:
        match = _DURATION.fullmatch(raw.strip()) if isinstance(raw, str) else None
        if match is None:
            self.fail(path, f"must be a duration like 7d, 12h, 30m or 90s, not {_shown(raw)}")
        digits, unit = match[1], match[2]
        # Ten digits of any unit are more than ten years already; int() of thousands of them would fail.
        if len(digits) > 10 or int(digits) * _UNITS[unit] > MAX_DURATION_DAYS * _UNITS["d"]:
            self.fail(path, f"must be at most {MAX_DURATION_DAYS}d (ten years)")
        return timedelta(seconds=int(digits) * _UNITS[unit])

    def moment(self, raw: object, path: str) -> date:
        if isinstance(raw, date):  # YAML gives date or datetime objects
            return raw
        text = raw.strip() if isinstance(raw, str) else ""
        try:
            return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        except ValueError:
            self.fail(path, f"must be an ISO date or datetime, not {_shown(raw)}")

    def clock(self, raw: object, path: str) -> time:
        if isinstance(raw, int) and not isinstance(raw, bool):
            self.fail(path, 'must be a quoted "HH:MM" (YAML reads unquoted 22:00 as the number 1320)')
        match = _HHMM.fullmatch(raw) if isinstance(raw, str) else None
        if match is None:
            self.fail(path, f'must be a time "HH:MM", not {_shown(raw)}')
        return time(int(match[1]), int(match[2]))

    def members(self, raw: object, path: str) -> tuple[str, ...]:
        """``{in: [...]}``."""
        spec = self.mapping(raw, path, ("in",), required=("in",))
        return self.texts(spec["in"], f"{path}.in")

    def location_ids(self, raw: object, path: str) -> tuple[str, ...]:
        ids = self.texts(raw, path)
        for i, loc in enumerate(ids):
            if loc not in self.known.locations:
                self.fail(
                    f"{path}[{i}]" if isinstance(raw, list) else path, f"unknown location {_shown(loc)}"
                )
        return ids

    # -- rule parts

    def actions(self, raw: object, path: str) -> m.Actions:
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
                self.fail(f"{path}.notify[{i}]", f"unknown message template {_shown(message)}")
        if len(set(notify)) != len(notify):
            self.fail(f"{path}.notify", "lists a message template twice")
        return m.Actions(widget, template, notify)

    def limit(self, raw: object, path: str) -> m.Limit:
        spec = self.mapping(raw, path, ("perCustomer", "per", "anonymous"), required=("perCustomer", "per"))
        anonymous = spec.get("anonymous", "skip")
        if anonymous not in ("skip", "fire"):
            self.fail(f"{path}.anonymous", f"must be skip or fire, not {_shown(anonymous)}")
        return m.Limit(
            per_customer=self.integer(spec["perCustomer"], f"{path}.perCustomer", minimum=1),
            per=self.duration(spec["per"], f"{path}.per"),
            anonymous="fire" if anonymous == "fire" else "skip",
        )

    def condition(self, raw: object, path: str) -> m.Condition:
        # Counted here, where all, any and not come back to: each level costs stack (see MAX_DEPTH).
        if self.depth == MAX_DEPTH:
            self.fail(path, f"nests deeper than {MAX_DEPTH} conditions (all, any, not)")
        if not isinstance(raw, Mapping) or len(raw) != 1:
            self.fail(
                path, f"must be a mapping with exactly one of {', '.join(_CONDITIONS)} (combine with all)"
            )
        [(key, value)] = raw.items()
        if key not in _CONDITIONS:
            self.fail(f"{path}.{key}", f"unknown condition; expected one of {', '.join(_CONDITIONS)}")
        self.depth += 1
        try:
            return _CONDITIONS[key](self, value, f"{path}.{key}")
        finally:
            self.depth -= 1

    def all_of(self, raw: object, path: str) -> m.AllOf:
        return m.AllOf(self.conditions(raw, path))

    def any_of(self, raw: object, path: str) -> m.AnyOf:
        return m.AnyOf(self.conditions(raw, path))

    def conditions(self, raw: object, path: str) -> tuple[m.Condition, ...]:
        if not isinstance(raw, list) or not raw:
            self.fail(path, "must be a non-empty list of conditions")

        def item(i: int) -> m.Condition:
            return self.condition(raw[i], f"{path}[{i}]")

        # Each item on its own: a list with two broken conditions reports both.
        items = [self.gather(functools.partial(item, i)) for i in range(len(raw))]
        if any(item is None for item in items):
            raise _Reported
        return tuple(item for item in items if item is not None)

    def not_(self, raw: object, path: str) -> m.Not:
        return m.Not(self.condition(raw, path))

    def amount(self, raw: object, path: str) -> m.Amount:
        return m.Amount(self.range(raw, path))

    def transaction_type(self, raw: object, path: str) -> m.TransactionType:
        return m.TransactionType(self.members(raw, path))

    def products(self, raw: object, path: str) -> m.Products:
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
        return m.Products(
            "any" if mode == "any" else "all",
            field("productId"),
            field("productCategory"),
            field("manufacturer"),
            minimum,
        )

    def basket_quantity(self, raw: object, path: str) -> m.BasketQuantity:
        return m.BasketQuantity(self.range(raw, path))

    def customer(self, raw: object, path: str) -> m.Customer:
        spec = self.mapping(raw, path, _CUSTOMER_FIELDS)
        if not spec:
            self.fail(path, f"needs one of {', '.join(_CUSTOMER_FIELDS)}")

        def flag(key: str) -> bool | None:
            return self.boolean(spec[key], f"{path}.{key}") if key in spec else None

        def span(key: str, *, integer: bool = False) -> m.Range | None:
            return self.range(spec[key], f"{path}.{key}", integer=integer) if key in spec else None

        days = spec.get("birthdayWithinDays")
        return m.Customer(
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

    def location(self, raw: object, path: str) -> m.Location:
        spec = self.mapping(raw, path, ("in",), required=("in",))
        return m.Location(self.location_ids(spec["in"], f"{path}.in"))

    def terminal(self, raw: object, path: str) -> m.Terminal:
        return m.Terminal(self.members(raw, path))

    def day_of_week(self, raw: object, path: str) -> m.DayOfWeek:
        names = self.members(raw, path)
        days = []
        for i, name in enumerate(names):
            day = _DAY_NAMES.get(name.strip().lower())
            if day is None:
                self.fail(f"{path}.in[{i}]", f"unknown day {_shown(name)}; use Mon..Sun or Monday..Sunday")
            days.append(day)
        return m.DayOfWeek(tuple(days))

    def time_of_day(self, raw: object, path: str) -> m.TimeOfDay:
        spec = self.mapping(raw, path, ("between",), required=("between",))
        pair = spec["between"]
        if not isinstance(pair, list) or len(pair) != 2:
            self.fail(f"{path}.between", 'must be a list ["HH:MM", "HH:MM"]')
        start, end = (self.clock(v, f"{path}.between[{i}]") for i, v in enumerate(pair))
        if start == end:
            self.fail(f"{path}.between", "start equals end; omit timeOfDay to mean all day")
        return m.TimeOfDay(start, end)


_CONDITIONS: dict[str, Callable[[_Parser, object, str], m.Condition]] = {
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
