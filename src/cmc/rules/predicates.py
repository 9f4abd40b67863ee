"""Compile a condition into a fast predicate and its explaining twin, closures over prebuilt values."""

from __future__ import annotations

import calendar
from collections.abc import Callable, Sequence
from datetime import date
from decimal import Decimal
from typing import TypeAlias

from cmc.rules import model as m
from cmc.rules.data import _condition_to_data, _matcher_to_data
from cmc.rules.facts import CustomerFacts, Facts, _Line

# --------------------------------------------------------------------------- compiling

Pred: TypeAlias = Callable[[Facts], bool]
Failure: TypeAlias = tuple[str, str]  # (path, text)
Explainer: TypeAlias = Callable[[Facts, str], "Failure | None"]


def _compile(cond: m.Condition) -> tuple[Pred, Explainer]:
    """A fast predicate and its explaining twin (called only with explain=True) for one condition."""
    match cond:
        case m.AllOf():
            return _all_of(cond)
        case m.AnyOf():
            return _any_of(cond)
        case m.Not():
            return _not(cond)
        case m.Amount():
            return _amount(cond)
        case m.TransactionType():
            return _transaction_type(cond)
        case m.Products():
            return _products(cond)
        case m.BasketQuantity():
            return _basket_quantity(cond)
        case m.Customer():
            return _customer(cond)
        case m.Location() | m.Terminal():
            return _ids(cond)
        case m.DayOfWeek():
            return _day_of_week(cond)
        case m.TimeOfDay():
            return _time_of_day(cond)


def _leaf(key: str, pred: Pred, why: Callable[[Facts], str]) -> tuple[Pred, Explainer]:
    def explain(f: Facts, path: str) -> Failure | None:
        return None if pred(f) else (f"{path}.{key}", why(f))

    return pred, explain


def _compile_all(items: Sequence[m.Condition]) -> tuple[tuple[Pred, ...], tuple[Explainer, ...]]:
    compiled = [_compile(c) for c in items]
    return tuple(p for p, _ in compiled), tuple(e for _, e in compiled)


def _all_of(cond: m.AllOf) -> tuple[Pred, Explainer]:
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


def _any_of(cond: m.AnyOf) -> tuple[Pred, Explainer]:
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


def _not(cond: m.Not) -> tuple[Pred, Explainer]:
    inner, _ = _compile(cond.item)
    text = _flow(_condition_to_data(cond.item))

    def pred(f: Facts) -> bool:
        return not inner(f)

    return _leaf("not", pred, lambda f: f"matched {text}")


def _range_test(r: m.Range) -> Callable[[Decimal | int], bool]:
    lo, hi = r.gte, r.lte
    if lo is not None and hi is not None:
        return lambda v: lo <= v <= hi
    if lo is not None:
        return lambda v: v >= lo
    assert hi is not None
    return lambda v: v <= hi


def _range_text(r: m.Range) -> str:
    if r.gte is not None and r.lte is not None:
        return f"between {r.gte} and {r.lte}"
    return f">= {r.gte}" if r.gte is not None else f"<= {r.lte}"


def _amount(cond: m.Amount) -> tuple[Pred, Explainer]:
    test, text = _range_test(cond.range), _range_text(cond.range)

    def pred(f: Facts) -> bool:
        return f.amount is not None and test(f.amount)

    return _leaf("amount", pred, lambda f: "no amount" if f.amount is None else f"{f.amount} not {text}")


def _basket_quantity(cond: m.BasketQuantity) -> tuple[Pred, Explainer]:
    test, text = _range_test(cond.range), _range_text(cond.range)
    return _leaf("basketQuantity", lambda f: test(f._quantity), lambda f: f"{f._quantity} not {text}")


def _transaction_type(cond: m.TransactionType) -> tuple[Pred, Explainer]:
    names = frozenset(n.lower() for n in cond.names)
    listed = _flow(cond.names)
    return _leaf(
        "transactionType", lambda f: f._type in names, lambda f: f"{f.transaction_type!r} not in {listed}"
    )


def _ids(cond: m.Location | m.Terminal) -> tuple[Pred, Explainer]:
    ids, listed = frozenset(cond.ids), _flow(cond.ids)
    if isinstance(cond, m.Location):
        return _leaf(
            "location", lambda f: f.location_id in ids, lambda f: f"{f.location_id!r} not in {listed}"
        )
    return _leaf("terminal", lambda f: f.terminal_id in ids, lambda f: f"{f.terminal_id!r} not in {listed}")


def _day_of_week(cond: m.DayOfWeek) -> tuple[Pred, Explainer]:
    days, listed = frozenset(cond.days), _flow([m.DAYS[d] for d in cond.days])
    return _leaf("dayOfWeek", lambda f: f._weekday in days, lambda f: f"{m.DAYS[f._weekday]} not in {listed}")


def _time_of_day(cond: m.TimeOfDay) -> tuple[Pred, Explainer]:
    start = cond.start.hour * 3600 + cond.start.minute * 60
    end = cond.end.hour * 3600 + cond.end.minute * 60
    if start < end:
        pred: Pred = lambda f: start <= f._seconds < end  # noqa: E731
    else:
        pred = lambda f: f._seconds >= start or f._seconds < end  # noqa: E731
    text = f"between {cond.start:%H:%M} and {cond.end:%H:%M}"
    return _leaf("timeOfDay", pred, lambda f: f"{f.local_time:%H:%M} not {text}")


def _products(cond: m.Products) -> tuple[Pred, Explainer]:
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


def _line_matcher(cond: m.Products) -> Callable[[_Line], bool]:
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


def _customer(cond: m.Customer) -> tuple[Pred, Explainer]:
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


def _customer_checks(cond: m.Customer) -> list[_Check]:
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


def _flow(data: object) -> str:
    """Compact YAML-like text for explanations: ``{amount: {between: [15, 50]}}``."""
    if isinstance(data, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in data.items()) + "}"
    if isinstance(data, list | tuple):
        return "[" + ", ".join(_flow(v) for v in data) + "]"
    if isinstance(data, bool):
        return "true" if data else "false"
    return str(data)
