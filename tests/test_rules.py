"""Rules engine: parsing and its errors, every condition kind, priority/stop/limit, windows, explanations."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cmc.errors import RegistryError
from cmc.rules import (
    CustomerFacts,
    Evaluation,
    Facts,
    ProductLine,
    Rule,
    RuleError,
    RuleSet,
    compile_rules,
    format_explanation,
    parse_rules,
    rule_to_data,
)

LOCATIONS = ["loc5", "loc6", "loc7"]
KNOWN: dict[str, Any] = {
    "locations": LOCATIONS,
    "widgets": [1, 2, 3],
    "cfs_templates": [7, 8],
    "message_templates": ["thanks-sms", "thanks-email"],
}
DENVER = ZoneInfo("America/Denver")
NOW = datetime(2024, 6, 5, 18, 30, tzinfo=UTC)  # Wednesday 12:30 in Denver

ISSUE_YAML = """
rules:
  - name: mid-basket coupon
    priority: 10
    locations: [loc5]          # omitted = every location of this company
    when: {all: [{amount: {between: [15, 50]}}, {transactionType: {in: [Sale, Undefined]}}]}
    then: {qrWidget: 1, cfsTemplate: 7, notify: [thanks-sms, thanks-email]}
    limit: {perCustomer: 1, per: 7d}
  - name: edibles fan
    priority: 5
    when: {products: {any: {productCategory: Edibles, minQuantity: 2}}}
    then: {qrWidget: 2}
    stop: true
"""

KNOWN_CUSTOMER = CustomerFacts(is_new=False, visit_count=3, has_email=True, lifetime_spend=Decimal("120.50"))


def facts(
    *,
    now: datetime = NOW,
    tz: ZoneInfo = DENVER,
    location: str = "loc5",
    terminal: str = "t1",
    type_: str = "Sale",
    amount: str | None = "20.00",
    products: tuple[ProductLine, ...] = (),
    customer: CustomerFacts | None = KNOWN_CUSTOMER,
    reversal: bool = False,
) -> Facts:
    return Facts(
        location_id=location,
        terminal_id=terminal,
        transaction_type=type_,
        amount=None if amount is None else Decimal(amount),
        local_time=now.astimezone(tz),
        now=now,
        is_reversal=reversal,
        products=products,
        customer=customer,
    )


def rule(name: str = "r", when: object = None, **fields: object) -> dict[str, object]:
    data: dict[str, object] = {"name": name, "then": {"qrWidget": 1}, **fields}
    if when is not None:
        data["when"] = when
    return data


def ruleset(*raw: dict[str, object]) -> RuleSet:
    return compile_rules(parse_rules(list(raw), **KNOWN), company_locations=LOCATIONS)


def fires(when: object, f: Facts) -> bool:
    """Evaluate one rule both ways; the fast and the explaining path must agree."""
    rules = ruleset(rule(when=when))
    fast = rules.evaluate(f)
    slow = rules.evaluate(f, explain=True)
    assert fast.fired == slow.fired
    assert fast.effects == slow.effects
    assert fast.explanation is None
    (trace,) = slow.explanation or []
    assert trace.outcome == ("fired" if fast.fired else "failed")
    if not fast.fired:
        assert trace.path is not None
        assert trace.path.startswith("when.")
    return bool(fast.fired)


def why(when: object, f: Facts) -> str:
    """The failure path and text for one rule that must fail."""
    (trace,) = ruleset(rule(when=when)).evaluate(f, explain=True).explanation or []
    assert trace.outcome == "failed"
    return f"{trace.path}: {trace.detail}"


def line(pid: str, category: str | None = None, maker: str | None = None, qty: str = "1") -> ProductLine:
    return ProductLine(product_id=pid, product_category=category, manufacturer=maker, quantity=Decimal(qty))


# --------------------------------------------------------------------------- the issue's example


def issue_rules() -> list[Rule]:
    return parse_rules(yaml.safe_load(ISSUE_YAML)["rules"], **KNOWN)


def test_issue_example_parses_unchanged() -> None:
    coupon, fan = issue_rules()
    assert coupon.name == "mid-basket coupon"
    assert coupon.priority == 10
    assert coupon.locations == ("loc5",)
    assert coupon.then.qr_widget == 1
    assert coupon.then.cfs_template == 7
    assert coupon.then.notify == ("thanks-sms", "thanks-email")
    assert coupon.limit is not None
    assert coupon.limit.per_customer == 1
    assert coupon.limit.per == timedelta(days=7)
    assert not coupon.stop
    assert fan.priority == 5
    assert fan.locations is None
    assert fan.stop
    assert fan.limit is None


def test_issue_example_evaluates() -> None:
    rules = compile_rules(issue_rules(), company_locations=LOCATIONS)
    edibles = (line("gummy", "edibles", qty="1"), line("choc", "EDIBLES", qty="1"))
    result = rules.evaluate(facts(amount="20.00", products=edibles))
    assert [f.rule for f in result.fired] == ["mid-basket coupon", "edibles fan"]
    assert [(e.rule, e.kind, e.target) for e in result.effects] == [
        ("mid-basket coupon", "qrWidget", "1"),
        ("mid-basket coupon", "cfsTemplate", "7"),
        ("mid-basket coupon", "notify", "thanks-sms"),
        ("mid-basket coupon", "notify", "thanks-email"),
        ("edibles fan", "qrWidget", "2"),
    ]
    assert result.qr_widget is not None
    assert (result.qr_widget.rule, result.qr_widget.target) == ("mid-basket coupon", "1")
    assert result.cfs_template is not None
    assert result.cfs_template.target == "7"
    assert [n.target for n in result.notifications] == ["thanks-sms", "thanks-email"]


def test_issue_example_explains_the_failed_amount() -> None:
    rules = compile_rules(issue_rules(), company_locations=LOCATIONS)
    result = rules.evaluate(facts(amount="12.00"), explain=True)
    assert result.fired == []
    coupon, fan = result.explanation or []
    assert (coupon.rule, coupon.outcome, coupon.path) == ("mid-basket coupon", "failed", "when.all[0].amount")
    assert coupon.detail == "12.00 not between 15 and 50"
    assert (fan.outcome, fan.path, fan.detail) == (
        "failed",
        "when.products.any",
        "no line matches {productCategory: [Edibles], minQuantity: 2}",
    )
    text = format_explanation(result)
    assert "mid-basket coupon: when.all[0].amount: 12.00 not between 15 and 50" in text
    assert "effects: none" in text


# --------------------------------------------------------------------------- conditions


def test_when_omitted_is_always_true() -> None:
    assert fires(None, facts(amount=None, customer=None))


@pytest.mark.parametrize(
    ("spec", "amount", "expected"),
    [
        ({"between": [15, 50]}, "15", True),
        ({"between": [15, 50]}, "50.00", True),
        ({"between": [15, 50]}, "14.99", False),
        ({"between": [15, 50]}, "50.01", False),
        ({"gte": 15}, "15", True),
        ({"gte": 15}, "14.99", False),
        ({"lte": 9.99}, "9.99", True),  # YAML float goes through str, not binary float
        ({"lte": 9.99}, "9.991", False),
        ({"between": [0, 100], "gte": 20, "lte": 30}, "25", True),
        ({"between": [0, 100], "gte": 20, "lte": 30}, "31", False),
        ({"between": [0, 100], "gte": 20}, "19", False),
        ({"gte": "10.5"}, "10.50", True),  # string numbers, as rule_to_data writes them
        ({"gte": 0}, None, False),  # no amount sent
    ],
)
def test_amount(spec: dict[str, object], amount: str | None, expected: bool) -> None:
    assert fires({"amount": spec}, facts(amount=amount)) is expected


bounds = st.decimals(min_value=-1000, max_value=1000, places=2, allow_nan=False, allow_infinity=False)


@given(lo=bounds, hi=bounds, amount=bounds, kind=st.sampled_from(["between", "gte", "lte", "both"]))
def test_amount_property(lo: Decimal, hi: Decimal, amount: Decimal, kind: str) -> None:
    lo, hi = min(lo, hi), max(lo, hi)
    spec: dict[str, object] = {
        "between": {"between": [str(lo), str(hi)]},
        "gte": {"gte": str(lo)},
        "lte": {"lte": str(hi)},
        "both": {"gte": str(lo), "lte": str(hi)},
    }[kind]
    expected = (kind == "lte" or amount >= lo) and (kind == "gte" or amount <= hi)
    rules = ruleset(rule(when={"amount": spec}))
    assert bool(rules.evaluate(facts(amount=str(amount))).fired) is expected
    # and the stored form compiles to the same decision
    stored = json.loads(
        json.dumps([rule_to_data(r) for r in parse_rules([rule(when={"amount": spec})], **KNOWN)])
    )
    again = compile_rules(parse_rules(stored, **KNOWN), company_locations=LOCATIONS)
    assert bool(again.evaluate(facts(amount=str(amount))).fired) is expected


@given(lo=bounds, hi=bounds)
def test_amount_between_with_low_above_high_is_refused(lo: Decimal, hi: Decimal) -> None:
    if lo <= hi:
        assert parse_rules([rule(when={"amount": {"between": [str(lo), str(hi)]}})], **KNOWN)
    else:
        with pytest.raises(RuleError) as err:
            parse_rules([rule(when={"amount": {"between": [str(lo), str(hi)]}})], **KNOWN)
        assert err.value.field == "rules[0].when.amount.between"


@pytest.mark.parametrize(
    ("type_", "expected"), [("Sale", True), ("sale", True), ("UNDEFINED", True), ("Refund", False)]
)
def test_transaction_type_is_case_insensitive(type_: str, expected: bool) -> None:
    assert fires({"transactionType": {"in": ["Sale", "Undefined"]}}, facts(type_=type_)) is expected


BASKET = (
    line("gummy-1", "Edibles", "Acme", "1"),
    line("choc-2", "edibles", "Bliss", "1"),
    line("flower-9", "Flower", "ACME", "3.5"),
    line("mystery", None, None, "1"),
)


@pytest.mark.parametrize(
    ("matcher", "expected"),
    [
        ({"productCategory": "Edibles", "minQuantity": 2}, True),  # 1 + 1 across two lines
        ({"productCategory": "Edibles", "minQuantity": 3}, False),
        ({"productCategory": "EDIBLES"}, True),
        ({"productId": ["nope", "CHOC-2"]}, True),  # list = alternatives, case-insensitive
        ({"productId": "nope"}, False),
        ({"manufacturer": "acme", "minQuantity": 4.5}, True),  # 1 + 3.5
        ({"manufacturer": "acme", "minQuantity": 4.6}, False),
        ({"manufacturer": "acme", "productCategory": "Flower"}, True),  # fields AND
        ({"manufacturer": "bliss", "productCategory": "Flower"}, False),
    ],
)
def test_products_any(matcher: dict[str, object], expected: bool) -> None:
    assert fires({"products": {"any": matcher}}, facts(products=BASKET)) is expected


@pytest.mark.parametrize(
    ("basket", "matcher", "expected"),
    [
        (BASKET[:2], {"productCategory": "edibles"}, True),
        (BASKET[:3], {"productCategory": "edibles"}, False),
        (BASKET[:2], {"productCategory": ["edibles", "flower"], "minQuantity": 2}, True),
        (BASKET[:2], {"productCategory": "edibles", "minQuantity": 3}, False),
        (BASKET[:3], {"productCategory": ["edibles", "flower"]}, True),
        (BASKET, {"productCategory": ["edibles", "flower"]}, False),  # a line without category
        ((), {"productCategory": "edibles"}, False),  # an empty basket is not "all edibles"
    ],
)
def test_products_all(basket: tuple[ProductLine, ...], matcher: dict[str, object], expected: bool) -> None:
    assert fires({"products": {"all": matcher}}, facts(products=basket)) is expected


def test_products_explanations() -> None:
    f = facts(products=BASKET)
    assert why({"products": {"any": {"productCategory": "edibles", "minQuantity": 3}}}, f) == (
        "when.products.any: matching quantity 2 < 3"
    )
    assert why({"products": {"all": {"productCategory": "edibles"}}}, f) == (
        "when.products.all: line 3 (productId flower-9) does not match {productCategory: [edibles]}"
    )
    assert why({"products": {"all": {"productId": "x"}}}, facts()) == "when.products.all: basket is empty"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [({"gte": 6.5}, True), ({"gte": 6.6}, False), ({"between": [1, 6.5]}, True), ({"lte": 6}, False)],
)
def test_basket_quantity(spec: dict[str, object], expected: bool) -> None:
    assert fires({"basketQuantity": spec}, facts(products=BASKET)) is expected  # 1 + 1 + 3.5 + 1


NEWBIE = CustomerFacts(is_new=True, visit_count=1, has_phone=True, has_loyalty_card=True)


@pytest.mark.parametrize(
    ("spec", "customer", "expected"),
    [
        ({"new": True}, NEWBIE, True),
        ({"new": True}, KNOWN_CUSTOMER, False),
        ({"new": False}, KNOWN_CUSTOMER, True),
        ({"hasEmail": True}, KNOWN_CUSTOMER, True),
        ({"hasEmail": True}, NEWBIE, False),
        ({"hasEmail": False}, NEWBIE, True),
        ({"hasPhone": True}, NEWBIE, True),
        ({"hasPhone": True}, KNOWN_CUSTOMER, False),
        ({"hasLoyaltyCard": True}, NEWBIE, True),
        ({"hasLoyaltyCard": False}, NEWBIE, False),
        ({"visits": {"gte": 3}}, KNOWN_CUSTOMER, True),
        ({"visits": {"gte": 4}}, KNOWN_CUSTOMER, False),
        ({"visits": {"between": [1, 2]}}, NEWBIE, True),
        ({"lifetimeSpend": {"gte": "120.50"}}, KNOWN_CUSTOMER, True),
        ({"lifetimeSpend": {"gte": 120.51}}, KNOWN_CUSTOMER, False),
        ({"lifetimeSpend": {"lte": 0}}, NEWBIE, True),
        ({"new": True, "hasPhone": True, "visits": {"lte": 1}}, NEWBIE, True),  # fields AND
        ({"new": True, "hasEmail": True}, NEWBIE, False),
        ({"new": True}, None, False),  # anonymous
        ({"hasEmail": False}, None, False),  # anonymous: nothing is known, nothing holds
    ],
)
def test_customer(spec: dict[str, object], customer: CustomerFacts | None, expected: bool) -> None:
    assert fires({"customer": spec}, facts(customer=customer)) is expected


def test_customer_explanations() -> None:
    assert why({"customer": {"new": True}}, facts(customer=None)) == (
        "when.customer: anonymous transaction (no customer)"
    )
    assert (
        why({"customer": {"new": False, "visits": {"gte": 5}}}, facts()) == "when.customer.visits: 3 not >= 5"
    )


def born(month: int, day: int, year: int = 1990) -> CustomerFacts:
    return CustomerFacts(is_new=False, visit_count=2, birth_date=date(year, month, day))


def at_local(year: int, month: int, day: int, hour: int = 12, minute: int = 0) -> datetime:
    """A UTC ``now`` whose Denver local time is the given wall-clock time."""
    return datetime(year, month, day, hour, minute, tzinfo=DENVER).astimezone(UTC)


@pytest.mark.parametrize(
    ("customer", "today", "days", "expected"),
    [
        (born(6, 5), date(2024, 6, 5), 0, True),  # today counts
        (born(6, 12), date(2024, 6, 5), 7, True),
        (born(6, 13), date(2024, 6, 5), 7, False),
        (born(6, 4), date(2024, 6, 5), 7, False),  # yesterday: next one is a year away
        (born(1, 2), date(2024, 12, 30), 3, True),  # across the new year
        (born(1, 2), date(2024, 12, 30), 2, False),
        (born(2, 29, 1992), date(2023, 2, 28), 0, True),  # Feb 29 is Feb 28 in a non-leap year
        (born(2, 29, 1992), date(2024, 2, 28), 0, False),  # ... but Feb 29 in a leap year
        (born(2, 29, 1992), date(2024, 2, 28), 1, True),
        (CustomerFacts(is_new=False, visit_count=2), date(2024, 6, 5), 365, False),  # no birth date
    ],
)
def test_birthday_within_days(customer: CustomerFacts, today: date, days: int, expected: bool) -> None:
    f = facts(now=at_local(today.year, today.month, today.day), customer=customer)
    assert f.local_time.date() == today
    assert fires({"customer": {"birthdayWithinDays": days}}, f) is expected


def test_birthday_uses_the_local_date_not_utc() -> None:
    late_evening = at_local(2024, 6, 4, 22, 0)  # already June 5 in UTC
    assert late_evening.date() == date(2024, 6, 5)
    assert not fires({"customer": {"birthdayWithinDays": 0}}, facts(now=late_evening, customer=born(6, 5)))
    assert fires({"customer": {"birthdayWithinDays": 0}}, facts(now=late_evening, customer=born(6, 4)))


@pytest.mark.parametrize(("location", "expected"), [("loc6", True), ("loc7", True), ("loc5", False)])
def test_location_condition(location: str, expected: bool) -> None:
    assert fires({"location": {"in": ["loc6", "loc7"]}}, facts(location=location)) is expected


@pytest.mark.parametrize(("terminal", "expected"), [("front-1", True), ("back", False), ("FRONT-1", False)])
def test_terminal_condition(terminal: str, expected: bool) -> None:
    assert fires({"terminal": {"in": ["front-1", "front-2"]}}, facts(terminal=terminal)) is expected


@pytest.mark.parametrize(
    ("days", "expected"),
    [(["Wed"], True), (["wednesday"], True), (["MON", "Tuesday", "wEd"], True), (["Thu", "Sun"], False)],
)
def test_day_of_week(days: list[str], expected: bool) -> None:
    assert fires({"dayOfWeek": {"in": days}}, facts()) is expected  # NOW is a Wednesday in Denver


def test_day_of_week_uses_local_time() -> None:
    f = facts(now=at_local(2024, 6, 4, 21, 0))  # Tuesday 21:00 in Denver, Wednesday 03:00 UTC
    assert f.now.weekday() == 2
    assert fires({"dayOfWeek": {"in": ["Tue"]}}, f)
    assert why({"dayOfWeek": {"in": ["Wed"]}}, f) == "when.dayOfWeek: Tue not in [Wed]"


@pytest.mark.parametrize(
    ("window", "hour", "minute", "expected"),
    [
        (["09:00", "17:00"], 9, 0, True),  # start included
        (["09:00", "17:00"], 16, 59, True),
        (["09:00", "17:00"], 17, 0, False),  # end excluded
        (["09:00", "17:00"], 8, 59, False),
        (["22:00", "02:00"], 23, 0, True),  # wraps midnight
        (["22:00", "02:00"], 0, 30, True),
        (["22:00", "02:00"], 1, 59, True),
        (["22:00", "02:00"], 2, 0, False),
        (["22:00", "02:00"], 21, 59, False),
        (["22:00", "02:00"], 12, 0, False),
    ],
)
def test_time_of_day(window: list[str], hour: int, minute: int, expected: bool) -> None:
    assert (
        fires({"timeOfDay": {"between": window}}, facts(now=at_local(2024, 6, 5, hour, minute))) is expected
    )


def test_time_of_day_explanation_uses_local_time() -> None:
    assert why({"timeOfDay": {"between": ["09:00", "12:00"]}}, facts()) == (
        "when.timeOfDay: 12:30 not between 09:00 and 12:00"
    )


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ({"all": [{"amount": {"gte": 10}}, {"transactionType": {"in": ["sale"]}}]}, True),
        ({"all": [{"amount": {"gte": 10}}, {"transactionType": {"in": ["refund"]}}]}, False),
        ({"any": [{"amount": {"gte": 100}}, {"transactionType": {"in": ["sale"]}}]}, True),
        ({"any": [{"amount": {"gte": 100}}, {"transactionType": {"in": ["refund"]}}]}, False),
        ({"not": {"amount": {"gte": 100}}}, True),
        ({"not": {"amount": {"gte": 10}}}, False),
        ({"all": [{"not": {"any": [{"terminal": {"in": ["x"]}}, {"location": {"in": ["loc6"]}}]}}]}, True),
    ],
)
def test_all_any_not(when: object, expected: bool) -> None:
    assert fires(when, facts()) is expected


def test_combinator_explanations() -> None:
    f = facts(amount="12.00", type_="Refund")
    assert why({"all": [{"transactionType": {"in": ["Sale"]}}, {"amount": {"gte": 15}}]}, f) == (
        "when.all[0].transactionType: 'Refund' not in [Sale]"
    )
    assert why({"any": [{"amount": {"gte": 15}}, {"not": {"amount": {"lte": 20}}}]}, f) == (
        "when.any: none matched: when.any[0].amount: 12.00 not >= 15; "
        "when.any[1].not: matched {amount: {lte: 20}}"
    )
    nested = {"all": [{"amount": {"gte": 1}}, {"any": [{"customer": {"new": True}}]}]}
    assert why(nested, f) == (
        "when.all[1].any: none matched: when.all[1].any[0].customer.new: is_new is False"
    )


# --------------------------------------------------------------------------- rule fields


def test_priority_orders_rules_and_ties_keep_file_order() -> None:
    rules = ruleset(
        rule("low", priority=1),
        rule("high-z", priority=10, then={"qrWidget": 2, "cfsTemplate": 8}),
        rule("default"),
        rule("mid", priority=5, then={"cfsTemplate": 7}),
        rule("high-b", priority=10, then={"qrWidget": 3}),
        rule("negative", priority=-3),
    )
    order = ["high-z", "high-b", "mid", "low", "default", "negative"]
    assert [r.name for r in rules.for_location("loc5")] == order
    result = rules.evaluate(facts())
    assert [f.rule for f in result.fired] == order
    assert result.qr_widget is not None
    assert (result.qr_widget.rule, result.qr_widget.target) == ("high-z", "2")
    assert result.cfs_template is not None
    assert (result.cfs_template.rule, result.cfs_template.target) == ("high-z", "8")


def test_stop_on_a_fired_rule_ends_evaluation() -> None:
    rules = ruleset(
        rule("first", priority=9, when={"amount": {"gte": 1000}}, stop=True),  # fails: does not stop
        rule("stopper", priority=5, stop=True, then={"qrWidget": 2}),
        rule("after", priority=1, then={"cfsTemplate": 7}),
    )
    result = rules.evaluate(facts(), explain=True)
    assert [f.rule for f in result.fired] == ["stopper"]
    assert [e.kind for e in result.effects] == ["qrWidget"]
    outcomes = [(t.rule, t.outcome) for t in result.explanation or []]
    assert outcomes == [("first", "failed"), ("stopper", "fired"), ("after", "skipped-after-stop")]
    assert rules.evaluate(facts()).fired == result.fired


class Usage:
    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts
        self.calls: list[str] = []

    def __call__(self, name: str) -> int:
        self.calls.append(name)
        return self.counts.get(name, 0)


def test_limit_uses_the_usage_count() -> None:
    rules = ruleset(
        rule("once a week", limit={"perCustomer": 1, "per": "7d"}),
        rule("three a day", limit={"perCustomer": 3, "per": "12h"}, then={"cfsTemplate": 7}),
        rule("unlimited", when={"amount": {"gte": 1}}, then={"notify": "thanks-sms"}),
        rule("limited but failing", when={"amount": {"gte": 1000}}, limit={"perCustomer": 1, "per": "1d"}),
    )
    usage = Usage({"once a week": 1, "three a day": 2})
    result = rules.evaluate(facts(), usage=usage)
    assert [f.rule for f in result.fired] == ["three a day", "unlimited"]
    assert usage.calls == ["once a week", "three a day"]  # only limited rules whose conditions held
    usage = Usage({"three a day": 3})
    result = rules.evaluate(facts(), usage=usage, explain=True)
    assert [f.rule for f in result.fired] == ["once a week", "unlimited"]
    traces = {t.rule: t for t in result.explanation or []}
    assert traces["three a day"].outcome == "limited"
    assert traces["three a day"].detail == "already fired 3x (limit 3 per 12h)"
    assert traces["limited but failing"].outcome == "failed"


def test_a_limited_rule_skips_anonymous_sales_by_default() -> None:
    rules = ruleset(
        rule("limited", limit={"perCustomer": 5, "per": "30m"}), rule("open", then={"qrWidget": 2})
    )
    usage = Usage({})
    result = rules.evaluate(facts(customer=None), usage=usage, explain=True)
    assert [f.rule for f in result.fired] == ["open"]
    assert usage.calls == []
    trace = (result.explanation or [])[0]
    assert (trace.outcome, trace.path) == ("limited", "limit.anonymous")
    assert trace.detail == "anonymous sale: a per-customer limit skips it (anonymous: skip, the default)"
    assert "LIMITED" in format_explanation(result) and "anonymous: skip" in format_explanation(result)


def test_a_limited_rule_may_fire_for_anonymous_sales() -> None:
    rules = ruleset(
        rule("walk-ins too", limit={"perCustomer": 1, "per": "7d", "anonymous": "fire"}),
        rule("skips", limit={"perCustomer": 1, "per": "7d", "anonymous": "skip"}, then={"cfsTemplate": 7}),
    )
    usage = Usage({"walk-ins too": 1, "skips": 1})
    anonymous = rules.evaluate(facts(customer=None), usage=usage, explain=True)
    assert [f.rule for f in anonymous.fired] == ["walk-ins too"]
    assert usage.calls == []  # nobody to count: fired every time
    fired = (anonymous.explanation or [])[0]
    assert (
        fired.outcome == "fired"
        and "anonymous sale: fired without counting (limit anonymous: fire)" in fired.detail
    )
    # A known customer is still counted and limited.
    assert rules.evaluate(facts(), usage=usage).fired == []
    assert usage.calls == ["walk-ins too", "skips"]


def test_the_anonymous_choice_round_trips_and_is_checked() -> None:
    (parsed,) = parse_rules([rule(limit={"perCustomer": 2, "per": "1d", "anonymous": "fire"})], **KNOWN)
    assert parsed.limit is not None and parsed.limit.anonymous == "fire"
    assert rule_to_data(parsed)["limit"] == {"perCustomer": 2, "per": "1d", "anonymous": "fire"}
    assert parse_rules([rule_to_data(parsed)], **KNOWN) == [parsed]
    with pytest.raises(RuleError) as bad:
        parse_rules([rule(limit={"perCustomer": 2, "per": "1d", "anonymous": "sometimes"})], **KNOWN)
    assert bad.value.field == "rules[0].limit.anonymous"
    assert "must be skip or fire" in bad.value.message


def test_one_qr_widget_and_one_template_per_sale_the_others_say_why() -> None:
    rules = ruleset(
        rule("coupon", priority=10, then={"qrWidget": 1, "cfsTemplate": 7, "notify": ["thanks-sms"]}),
        rule("review", priority=5, then={"qrWidget": 2, "notify": ["thanks-sms"]}),
        rule("tie", priority=5, then={"cfsTemplate": 8}),
    )
    result = rules.evaluate(facts(), explain=True)
    assert [(e.rule, e.kind, e.target, e.shown) for e in result.effects] == [
        ("coupon", "qrWidget", "1", True),
        ("coupon", "cfsTemplate", "7", True),
        ("coupon", "notify", "thanks-sms", True),  # messages are not one per sale
        ("review", "qrWidget", "2", False),
        ("review", "notify", "thanks-sms", True),
        ("tie", "cfsTemplate", "8", False),
    ]
    assert result.effects[3].reason == "one QR widget per sale: rule 'coupon' comes first by priority"
    assert result.effects[5].reason == "one CFS template per sale: rule 'coupon' comes first by priority"
    assert (result.qr_widget, result.cfs_template) == (result.effects[0], result.effects[1])
    text = format_explanation(result)
    assert "qrWidget 2  (rule 'review')  not shown: one QR widget per sale" in text
    assert rules.evaluate(facts()).effects == result.effects  # the fast path marks them too


@pytest.mark.parametrize(
    ("per", "expected"),
    [
        ("7d", timedelta(days=7)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("90s", timedelta(seconds=90)),
    ],
)
def test_limit_durations(per: str, expected: timedelta) -> None:
    (parsed,) = parse_rules([rule(limit={"perCustomer": 2, "per": per})], **KNOWN)
    assert parsed.limit is not None
    assert (parsed.limit.per_customer, parsed.limit.per) == (2, expected)
    assert rule_to_data(parsed)["limit"] == {"perCustomer": 2, "per": per}


def test_reversal_fires_nothing() -> None:
    rules = ruleset(rule("a"), rule("b", then={"notify": ["thanks-sms"]}))
    assert rules.evaluate(facts(reversal=True)) == Evaluation()
    result = rules.evaluate(facts(reversal=True), explain=True)
    assert result.fired == []
    assert result.effects == []
    assert [(t.rule, t.outcome) for t in result.explanation or []] == [("a", "reversal"), ("b", "reversal")]
    assert "reversals never trigger rules" in format_explanation(result)


@pytest.mark.parametrize(
    ("window", "now", "outcome"),
    [
        ({"validFrom": date(2024, 6, 5)}, at_local(2024, 6, 5, 0, 0), "fired"),  # local date, inclusive
        ({"validFrom": date(2024, 6, 5)}, at_local(2024, 6, 4, 23, 59), "not-valid-yet"),  # June 5 in UTC
        ({"validUntil": "2024-06-05"}, at_local(2024, 6, 5, 23, 59), "fired"),  # the whole last day
        ({"validUntil": "2024-06-05"}, at_local(2024, 6, 6, 0, 0), "expired"),
        (
            {"validFrom": "2024-06-05T12:00:00+00:00"},
            datetime(2024, 6, 5, 11, 59, tzinfo=UTC),
            "not-valid-yet",
        ),
        ({"validFrom": "2024-06-05T12:00:00+00:00"}, datetime(2024, 6, 5, 12, 0, tzinfo=UTC), "fired"),
        (
            {"validUntil": datetime(2024, 6, 5, 12, 0, tzinfo=UTC)},
            datetime(2024, 6, 5, 12, 1, tzinfo=UTC),
            "expired",
        ),
        ({"validFrom": "2024-06-05T09:00"}, at_local(2024, 6, 5, 8, 59), "not-valid-yet"),  # naive: local
        ({"validFrom": "2024-06-05T09:00"}, at_local(2024, 6, 5, 9, 0), "fired"),
        ({"validFrom": "2024-06-01", "validUntil": "2024-06-30"}, at_local(2024, 6, 15), "fired"),
        ({"validFrom": "2024-06-01", "validUntil": "2024-06-30"}, at_local(2024, 7, 1), "expired"),
    ],
)
def test_valid_from_and_until(window: dict[str, object], now: datetime, outcome: str) -> None:
    rules = ruleset(rule("seasonal", **window))
    result = rules.evaluate(facts(now=now), explain=True)
    (trace,) = result.explanation or []
    assert trace.outcome == outcome
    assert bool(rules.evaluate(facts(now=now)).fired) is (outcome == "fired")
    if outcome != "fired":
        assert trace.path == ("validFrom" if outcome == "not-valid-yet" else "validUntil")


def test_rules_are_indexed_by_location() -> None:
    rules = ruleset(
        rule("everywhere"),
        rule("five only", locations=["loc5"], priority=3),
        rule("six and seven", locations=["loc6", "loc7"], priority=2),
    )
    assert [r.name for r in rules.for_location("loc5")] == ["five only", "everywhere"]
    assert [r.name for r in rules.for_location("loc6")] == ["six and seven", "everywhere"]
    assert rules.for_location("loc6") is rules.for_location("loc6")  # precomputed, not rebuilt
    assert rules.for_location("elsewhere") == ()
    assert [f.rule for f in rules.evaluate(facts(location="loc7")).fired] == ["six and seven", "everywhere"]
    assert rules.evaluate(facts(location="other-company")).fired == []
    assert format_explanation(rules.evaluate(facts(location="x"), explain=True)).startswith("no rules apply")


def test_compile_refuses_a_location_outside_the_company() -> None:
    rules = parse_rules([rule("five", locations=["loc5"])], **KNOWN)
    with pytest.raises(RuleError, match="unknown location 'loc5'"):
        compile_rules(rules, company_locations=["loc6"])


def test_compile_refuses_duplicate_names() -> None:
    (one,) = parse_rules([rule("same")], **KNOWN)
    with pytest.raises(RuleError, match="duplicate"):
        compile_rules([one, one], company_locations=LOCATIONS)


def test_no_rules() -> None:
    assert parse_rules(None, **KNOWN) == []
    assert compile_rules([], company_locations=LOCATIONS).evaluate(facts()) == Evaluation()


# --------------------------------------------------------------------------- storage round trip

EVERYTHING = rule(
    "everything",
    priority=-2,
    locations=["loc5", "loc7"],
    when={
        "all": [
            {"amount": {"between": [15, 50.5]}},
            {"any": [{"transactionType": {"in": ["Sale", "undefined"]}}, {"terminal": {"in": ["t1"]}}]},
            {"not": {"location": {"in": ["loc6"]}}},
            {"products": {"any": {"productId": ["a", "b"], "manufacturer": "Acme", "minQuantity": 1.5}}},
            {"products": {"all": {"productCategory": "Edibles"}}},
            {"basketQuantity": {"lte": 10}},
            {
                "customer": {
                    "new": False,
                    "hasEmail": True,
                    "hasPhone": False,
                    "hasLoyaltyCard": True,
                    "visits": {"between": [2, 9]},
                    "lifetimeSpend": {"gte": "99.99"},
                    "birthdayWithinDays": 7,
                }
            },
            {"dayOfWeek": {"in": ["Mon", "friday"]}},
            {"timeOfDay": {"between": ["22:00", "02:00"]}},
        ]
    },
    then={"qrWidget": 3, "cfsTemplate": 8, "notify": ["thanks-email"]},
    limit={"perCustomer": 2, "per": "12h"},
    stop=True,
    validFrom=date(2024, 1, 1),
    validUntil="2024-12-31T23:00:00+01:00",
)


def test_rule_to_data_round_trips_through_json() -> None:
    (parsed,) = parse_rules([EVERYTHING], **KNOWN)
    stored = json.loads(json.dumps(rule_to_data(parsed)))
    (again,) = parse_rules([stored], **KNOWN)
    assert again == parsed
    assert stored["when"]["all"][0] == {"amount": {"between": ["15", "50.5"]}}
    assert stored["when"]["all"][7] == {"dayOfWeek": {"in": ["Mon", "Fri"]}}
    assert stored["validFrom"] == "2024-01-01"
    assert stored["validUntil"] == "2024-12-31T23:00:00+01:00"


def test_issue_example_round_trips() -> None:
    rules = issue_rules()
    stored = json.loads(json.dumps([rule_to_data(r) for r in rules]))
    assert parse_rules(stored, **KNOWN) == rules


# --------------------------------------------------------------------------- parse errors


@pytest.mark.parametrize(
    ("raw", "rule_name", "field", "message"),
    [
        ({"rules": "nope"}, None, "rules", "must be a list"),
        ([rule(when={"amout": {"gte": 1}})], "r", "rules[0].when.amout", "unknown condition"),
        ([rule(when={"amount": {"gte": 1}, "terminal": {"in": ["t"]}})], "r", "rules[0].when", "exactly one"),
        ([rule(colour="red")], "r", "rules[0].colour", "unknown field"),
        ([{"then": {"qrWidget": 1}}], None, "rules[0].name", "is required"),
        ([{"name": "x"}], "x", "rules[0].then", "is required"),
        ([rule(then={})], "r", "rules[0].then", "at least one action"),
        ([rule(priority="high")], "r", "rules[0].priority", "integer"),
        ([rule(priority=True)], "r", "rules[0].priority", "integer"),
        ([rule(stop="yes")], "r", "rules[0].stop", "true or false"),
        ([rule(locations=["loc5", "loc9"])], "r", "rules[0].locations[1]", "unknown location 'loc9'"),
        ([rule(locations=[])], "r", "rules[0].locations", "non-empty list"),
        ([rule(then={"qrWidget": 9})], "r", "rules[0].then.qrWidget", "unknown widget 9"),
        ([rule(then={"cfsTemplate": 1})], "r", "rules[0].then.cfsTemplate", "unknown CFS template 1"),
        ([rule(then={"notify": ["thanks-sms", "bye"]})], "r", "rules[0].then.notify[1]", "unknown message"),
        ([rule(then={"notify": ["thanks-sms"] * 2})], "r", "rules[0].then.notify", "twice"),
        ([rule("a"), rule("b"), rule("a")], "a", "rules[2].name", "duplicate"),
        ([rule(limit={"perCustomer": 1, "per": "7 days"})], "r", "rules[0].limit.per", "duration"),
        ([rule(limit={"perCustomer": 1, "per": "0d"})], "r", "rules[0].limit.per", "duration"),
        ([rule(limit={"perCustomer": 1, "per": 7})], "r", "rules[0].limit.per", "duration"),
        ([rule(limit={"perCustomer": 0, "per": "1d"})], "r", "rules[0].limit.perCustomer", "at least 1"),
        ([rule(limit={"per": "1d"})], "r", "rules[0].limit.perCustomer", "is required"),
        ([rule(when={"amount": {"between": [50, 15]}})], "r", "rules[0].when.amount.between", "above high"),
        ([rule(when={"amount": {"between": [15]}})], "r", "rules[0].when.amount.between", "[low, high]"),
        ([rule(when={"amount": {"between": [15, 50], "gte": 60}})], "r", "rules[0].when.amount", "no value"),
        ([rule(when={"amount": {}})], "r", "rules[0].when.amount", "needs between"),
        ([rule(when={"amount": {"gte": "lots"}})], "r", "rules[0].when.amount.gte", "number"),
        ([rule(when={"amount": {"gte": True}})], "r", "rules[0].when.amount.gte", "number"),
        ([rule(when={"amount": {"gte": "NaN"}})], "r", "rules[0].when.amount.gte", "finite"),
        ([rule(when={"amount": {"over": 5}})], "r", "rules[0].when.amount.over", "unknown field"),
        ([rule(when={"all": []})], "r", "rules[0].when.all", "non-empty list"),
        (
            [rule(when={"all": [{"amount": {"gte": 1}}, {"any": [{"colour": "red"}]}]})],
            "r",
            "rules[0].when.all[1].any[0].colour",
            "unknown condition",
        ),
        ([rule(when={"not": [{"amount": {"gte": 1}}]})], "r", "rules[0].when.not", "exactly one"),
        ([rule(when={"transactionType": ["Sale"]})], "r", "rules[0].when.transactionType", "mapping"),
        ([rule(when={"transactionType": {"in": []}})], "r", "rules[0].when.transactionType.in", "non-empty"),
        ([rule(when={"products": {"any": {"minQuantity": 2}}})], "r", "rules[0].when.products.any", "needs"),
        ([rule(when={"products": {"any": {"sku": "x"}}})], "r", "rules[0].when.products.any.sku", "unknown"),
        (
            [rule(when={"products": {"any": {"productId": "x"}, "all": {"productId": "y"}}})],
            "r",
            "rules[0].when.products",
            "exactly one",
        ),
        (
            [rule(when={"products": {"any": {"productId": "x", "minQuantity": 0}}})],
            "r",
            "rules[0].when.products.any.minQuantity",
            "above 0",
        ),
        ([rule(when={"customer": {}})], "r", "rules[0].when.customer", "needs one of"),
        ([rule(when={"customer": {"new": "yes"}})], "r", "rules[0].when.customer.new", "true or false"),
        (
            [rule(when={"customer": {"visits": {"gte": 1.5}}})],
            "r",
            "rules[0].when.customer.visits.gte",
            "integer",
        ),
        (
            [rule(when={"customer": {"birthdayWithinDays": -1}})],
            "r",
            "rules[0].when.customer.birthdayWithinDays",
            "at least 0",
        ),
        (
            [rule(when={"location": {"in": ["loc9"]}})],
            "r",
            "rules[0].when.location.in[0]",
            "unknown location",
        ),
        ([rule(when={"dayOfWeek": {"in": ["Funday"]}})], "r", "rules[0].when.dayOfWeek.in[0]", "unknown day"),
        (
            [rule(when={"timeOfDay": {"between": [1320, "02:00"]}})],
            "r",
            "rules[0].when.timeOfDay.between[0]",
            "quoted",
        ),
        (
            [rule(when={"timeOfDay": {"between": ["9:00", "17:00"]}})],
            "r",
            "rules[0].when.timeOfDay.between[0]",
            "HH:MM",
        ),
        (
            [rule(when={"timeOfDay": {"between": ["24:00", "17:00"]}})],
            "r",
            "rules[0].when.timeOfDay.between[0]",
            "HH:MM",
        ),
        (
            [rule(when={"timeOfDay": {"between": ["09:00", "09:00"]}})],
            "r",
            "rules[0].when.timeOfDay.between",
            "all day",
        ),
        ([rule(validFrom="June")], "r", "rules[0].validFrom", "ISO date"),
        (
            [rule(validFrom="2024-06-10", validUntil="2024-06-01")],
            "r",
            "rules[0].validUntil",
            "before validFrom",
        ),
        ([rule(name="")], None, "rules[0].name", "non-empty string"),
        (["just a string"], None, "rules[0]", "mapping"),
    ],
)
def test_parse_errors_name_the_rule_and_field(
    raw: object, rule_name: str | None, field: str, message: str
) -> None:
    if isinstance(raw, dict):
        raw = raw["rules"]
    with pytest.raises(RuleError) as caught:
        parse_rules(raw, **KNOWN)
    err = caught.value
    assert err.field == field
    assert err.rule == rule_name
    assert message in str(err)
    assert field in str(err)
    if rule_name is not None:
        assert repr(rule_name) in str(err)
    assert isinstance(err, ValueError)
    assert isinstance(err, RegistryError)


def test_parse_error_path_prefix_is_configurable() -> None:
    with pytest.raises(RuleError) as caught:
        parse_rules([rule(priority="x")], **KNOWN, path="companies[2].rules")
    assert caught.value.field == "companies[2].rules[0].priority"


def test_a_valid_window_with_mixed_offsets_is_accepted() -> None:
    (parsed,) = parse_rules([rule(validFrom="2024-06-01", validUntil="2024-06-30T12:00:00+00:00")], **KNOWN)
    assert parsed.valid_until == datetime(2024, 6, 30, 12, tzinfo=UTC)


# --------------------------------------------------------------------------- facts


def test_facts_need_aware_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        replace(facts(), now=datetime(2024, 6, 5, 12, 0))


def test_format_explanation_lists_every_rule_and_effect() -> None:
    rules = ruleset(
        rule("big", priority=3, when={"amount": {"gte": 100}}),
        rule("any sale", priority=2, then={"qrWidget": 2, "notify": ["thanks-sms"]}),
        rule("late", priority=1, validFrom="2030-01-01"),
    )
    text = format_explanation(rules.evaluate(facts(), explain=True))
    assert text.splitlines() == [
        "FAILED             big: when.amount: 20.00 not >= 100",
        "FIRED              any sale: qrWidget 2, notify thanks-sms",
        "NOT-VALID-YET      late: validFrom: valid from 2030-01-01",
        "effects:",
        "  qrWidget 2  (rule 'any sale')",
        "  notify thanks-sms  (rule 'any sale')",
    ]


# --------------------------------------------------------------------------- hostile input
# Whatever a draft holds, parsing ends in RuleErrors or rules: never another exception (the merchant
# API would answer it 500). With a problems list nothing is raised at all.


def problems_of(raw: object) -> list[RuleError]:
    problems: list[RuleError] = []
    assert parse_rules(raw, **KNOWN, problems=problems) == []
    return problems


@pytest.mark.parametrize("holdout", [51, -1, "abc", True, 2.5, None])
def test_a_bad_holdout_is_gathered_with_the_other_problems(holdout: object) -> None:
    problems = problems_of([rule(holdoutPercent=holdout, priority="high")])
    assert [p.field for p in problems] == ["rules[0].priority", "rules[0].holdoutPercent"]
    assert all(p.rule == "r" for p in problems)


@pytest.mark.parametrize("per", ["3651d", "87601h", "5256001m", "315360001s", "99999999999d", "9" * 30 + "s",
                                 "9" * 5000 + "h"])  # fmt: skip
def test_a_limit_window_longer_than_ten_years_is_refused(per: str) -> None:
    (problem,) = problems_of([rule(limit={"perCustomer": 1, "per": per})])
    assert (problem.field, problem.message) == ("rules[0].limit.per", "must be at most 3650d (ten years)")


@pytest.mark.parametrize("per", ["3650d", "87600h", "5256000m", "315360000s"])
def test_a_limit_window_of_ten_years_is_accepted(per: str) -> None:
    (parsed,) = parse_rules([rule(limit={"perCustomer": 1, "per": per})], **KNOWN)
    assert parsed.limit is not None
    assert parsed.limit.per == timedelta(days=3650)
    assert ruleset(rule_to_data(parsed)).evaluate(facts(), usage=lambda _: 0).fired


def nested(levels: int, kind: str) -> dict[str, object]:
    """A condition ``levels`` deep: ``kind`` (all, any or not) around ``kind`` ... around an amount."""
    condition: dict[str, object] = {"amount": {"gte": 1}}
    for _ in range(levels - 1):
        condition = {kind: condition if kind == "not" else [condition]}
    return condition


@pytest.mark.parametrize("kind", ["all", "any", "not"])
def test_conditions_nest_at_most_32_deep(kind: str) -> None:
    deepest = rule(when=nested(32, kind))
    (parsed,) = parse_rules([deepest], **KNOWN)
    assert parse_rules([json.loads(json.dumps(rule_to_data(parsed)))], **KNOWN) == [parsed]
    assert fires(deepest["when"], facts()) == (kind != "not")  # 31 nots around a true amount
    step = ".not" if kind == "not" else f".{kind}[0]"
    for levels in (33, 200, 5000):
        (problem,) = problems_of([rule(when=nested(levels, kind))])
        assert problem.field == "rules[0].when" + step * 32, levels
        assert problem.message == "nests deeper than 32 conditions (all, any, not)"


def test_a_too_deep_item_of_a_list_is_reported_with_its_siblings() -> None:
    when = {"any": [nested(40, "not"), {"colour": "red"}, nested(3, "all")]}
    fields = [p.field for p in problems_of([rule(when=when)])]
    assert fields == ["rules[0].when.any[0]" + ".not" * 31, "rules[0].when.any[1].colour"]


TIME_FROM = "rules[0].when.timeOfDay.between[0]"
CUSTOMER = "rules[0].when.customer"


def deep_list(levels: int) -> object:
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


DEEP = deep_list(100_000)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"priority": DEEP}, "rules[0].priority"),
        ({"stop": {"a": DEEP}}, "rules[0].stop"),
        ({"validFrom": DEEP}, "rules[0].validFrom"),
        ({"limit": {"perCustomer": 1, "per": DEEP}}, "rules[0].limit.per"),
        ({"limit": {"perCustomer": 1, "per": "1d", "anonymous": DEEP}}, "rules[0].limit.anonymous"),
        ({"when": {"amount": {"gte": DEEP}}}, "rules[0].when.amount.gte"),
        ({"when": {"timeOfDay": {"between": [DEEP, "02:00"]}}}, TIME_FROM),
        ({"when": DEEP}, "rules[0].when"),
        ({"name": DEEP}, "rules[0].name"),
    ],
)  # fmt: skip
def test_a_deeply_nested_value_is_a_field_error_with_a_short_message(
    fields: dict[str, object], field: str
) -> None:
    (problem,) = problems_of([{"name": "r", "then": {"qrWidget": 1}, **fields}])
    assert problem.field == field
    assert len(problem.message) < 200
    assert problems_of(DEEP)[0].field == "rules[0]"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("half/half", 'must not contain "/"'),
        ("/", 'must not contain "/"'),
        ("tab\there", "must not contain control characters"),
        ("new\nline", "must not contain control characters"),
        ("nul\x00", "must not contain control characters"),
        ("del\x7f", "must not contain control characters"),
        ("c1\x85", "must not contain control characters"),
        ("lone \ud800 surrogate", "must not contain control characters"),
        (".", 'must not be "." or ".."'),
        ("..", 'must not be "." or ".."'),
        ("x" * 201, "must be at most 200 characters"),
    ],
)
def test_a_rule_name_must_be_reachable_in_a_url_and_storable(name: str, message: str) -> None:
    (problem,) = problems_of([rule(name)])
    assert (problem.field, problem.message) == ("rules[0].name", message)


@pytest.mark.parametrize("name", ["x" * 200, "a.b", "...", "50% off?", "👨‍👩‍👧 family #1", "café & co"])
def test_a_rule_name_may_hold_any_other_text(name: str) -> None:
    assert [r.name for r in parse_rules([rule(name)], **KNOWN)] == [name]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"priority": 2**53}, "rules[0].priority"),
        ({"priority": -(2**53)}, "rules[0].priority"),
        ({"priority": 10**5000}, "rules[0].priority"),
        ({"then": {"qrWidget": 10**5000}}, "rules[0].then.qrWidget"),
        ({"then": {"cfsTemplate": -(10**5000)}}, "rules[0].then.cfsTemplate"),
        ({"limit": {"perCustomer": 10**5000, "per": "1d"}}, "rules[0].limit.perCustomer"),
        ({"holdoutPercent": 10**5000}, "rules[0].holdoutPercent"),
        ({"when": {"customer": {"visits": {"between": [0, 10**5000]}}}}, f"{CUSTOMER}.visits.between[1]"),
        ({"when": {"customer": {"birthdayWithinDays": 10**5000}}}, f"{CUSTOMER}.birthdayWithinDays"),
        ({"priority": [10**5000]}, "rules[0].priority"),
        ({"stop": 10**5000}, "rules[0].stop"),
        ({"validFrom": 10**5000}, "rules[0].validFrom"),
        ({"when": {"timeOfDay": {"between": [10**5000, "02:00"]}}}, TIME_FROM),
    ],
)  # fmt: skip
def test_a_huge_integer_is_a_field_error(fields: dict[str, object], field: str) -> None:
    (problem,) = problems_of([{"name": "r", "then": {"qrWidget": 1}, **fields}])
    assert problem.field == field
    assert len(problem.message) < 200


def test_integers_up_to_2_to_the_53_are_kept() -> None:
    biggest = 2**53 - 1
    (parsed,) = parse_rules(
        [rule(priority=-biggest, when={"customer": {"visits": {"lte": biggest}}})], **KNOWN
    )
    assert parsed.priority == -biggest
    assert rule_to_data(parsed)["when"] == {"customer": {"visits": {"lte": biggest}}}


@pytest.mark.parametrize("number", [10**5000, -(10**5000), 10**400], ids=["10**5000", "-10**5000", "10**400"])
def test_a_huge_integer_amount_is_a_number(number: int) -> None:
    (parsed,) = parse_rules([rule(when={"amount": {"gte": number}})], **KNOWN)
    assert parse_rules([json.loads(json.dumps(rule_to_data(parsed)))], **KNOWN) == [parsed]


@pytest.mark.parametrize(
    "number",
    [
        float("nan"),
        float("inf"),
        float("-inf"),
        "Infinity",
        "-inf",
        "sNaN",
        "1e99999999999999999999",
        "1\x00",
    ],
)
def test_a_number_that_is_no_finite_decimal_is_refused(number: object) -> None:
    (problem,) = problems_of([rule(when={"basketQuantity": {"between": [0, number]}})])
    assert problem.field == "rules[0].when.basketQuantity.between[1]"


# Every value a JSON (or YAML) document can put in a field, the awkward ones more often.
_AWKWARD_TEXT = st.sampled_from(
    ["", " ", "a/b", "\x00", "\t", "7d", "0d", "99999999999d", "NaN", "-Infinity", "1e999999999", "1_0",
     "22:00", "24:00", "2024-06-01", "2024-06-01T12:00:00+14:00", "9999-12-31T23:59:59-05:00", "loc5",
     "Mon", "fire", "in", "all", "any", "not", "amount", "between", "gte", "\ud800", "x" * 300]
)  # fmt: skip
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([0, 1, 50, 51, -1, 2**53, 10**30, 10**4000, -(10**4000)])  # JSON: up to 4,300 digits
    | st.floats()
    | st.text(max_size=8)
    | _AWKWARD_TEXT
    | st.dates()
    | st.datetimes(timezones=st.sampled_from([None, UTC, timezone(timedelta(hours=-5))]))
)
_KEYS = st.sampled_from(["all", "any", "not", "amount", "between", "gte", "in", "per", "name"]) | st.text(
    max_size=4
)
JSONISH = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=8,
)


def _paths(value: object, at: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Every place inside ``value`` (a rule's plain data) that a value sits at."""
    inside: list[tuple[object, ...]] = []
    if isinstance(value, dict):
        inside = [p for key, item in value.items() for p in _paths(item, (*at, key))]
    elif isinstance(value, list):
        inside = [p for i, item in enumerate(value) for p in _paths(item, (*at, i))]
    return [at, *inside] if at else inside


def _with(value: Any, at: tuple[Any, ...], new: object) -> Any:
    """``value`` with the one at ``at`` replaced by ``new`` (a copy; ``value`` is untouched)."""
    if not at:
        return new
    head, *rest = at
    if isinstance(value, dict):
        return {**value, head: _with(value[head], tuple(rest), new)}
    return [_with(item, tuple(rest), new) if i == head else item for i, item in enumerate(value)]


_VALID = {**rule_to_data(parse_rules([EVERYTHING], **KNOWN)[0]), "holdoutPercent": 10}
_PLACES = _paths(_VALID)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_PLACES), JSONISH), max_size=3), st.booleans())
def test_any_value_anywhere_is_a_rule_error_or_a_working_rule(
    changes: list[tuple[tuple[object, ...], object]], strict: bool
) -> None:
    raw: Any = _VALID
    for at, new in changes:
        with contextlib.suppress(KeyError, IndexError, TypeError):  # an earlier change replaced the place
            raw = _with(raw, at, new)
    if strict:
        with contextlib.suppress(RuleError):
            parse_rules([raw], **KNOWN)
        return
    problems: list[RuleError] = []
    parsed = parse_rules([raw, rule("other")], **KNOWN, problems=problems)
    assert all(isinstance(p, RuleError) for p in problems)
    assert [r.name for r in parsed][-1:] == ["other"]  # one rule's problems never stop the next
    # What is accepted works: stored as JSON, read back, compiled, evaluated both ways.
    stored = json.loads(json.dumps([rule_to_data(r) for r in parsed]))
    assert parse_rules(stored, **KNOWN) == parsed
    rules = compile_rules(parsed, company_locations=LOCATIONS)
    for f in (facts(), facts(customer=None, amount=None), facts(now=datetime(9999, 12, 31, 23, tzinfo=UTC))):
        assert rules.evaluate(f).effects == rules.evaluate(f, explain=True).effects
