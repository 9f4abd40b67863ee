"""The lift report (pure): per-customer outcomes, then the lift with its intervals, checked by hand."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from sqlalchemy import Connection, insert

from cmc import analytics, lift
from cmc.errors import ValidationFailed
from cmc.lift import FollowUp, Outcome
from cmc.store import migrate, tables
from cmc.store.database import Database

T0 = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)
UNTIL = datetime(2026, 4, 1, tzinfo=UTC)
Z = 1.959963984540054  # the standard normal's 97.5% quantile


def arm(variant: str, customers: int, returned: int, spend: str) -> list[Outcome]:
    """``customers`` outcomes of which the first ``returned`` came back and spent ``spend`` each."""
    return [
        Outcome(f"{variant}-{n}", variant, n < returned, Decimal(spend) if n < returned else Decimal(0))  # type: ignore[arg-type]
        for n in range(customers)
    ]


def report(outcomes: list[Outcome]) -> lift.LiftReport:
    return lift.report(outcomes, lift.Cohort("mid-basket coupon", 30, None, UNTIL))


def wilson(k: int, n: int) -> tuple[float, float]:
    p, d = k / n, 1 + Z * Z / n
    centre = (p + Z * Z / (2 * n)) / d
    half = Z / d * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return centre - half, centre + half


def test_a_known_effect_is_measured_as_computed_by_hand() -> None:
    # Treatment: 200 customers, 80 came back (40%) and spent 50 each; holdout: 100, 25 (25%), 40 each.
    outcomes = arm("treatment", 200, 80, "50.00") + arm("holdout", 100, 25, "40.00")
    result = report(outcomes)
    assert result.reason is None
    assert (result.treatment.customers, result.treatment.returned, result.treatment.return_rate) == (
        200,
        80,
        0.4,
    )
    assert (result.holdout.customers, result.holdout.returned, result.holdout.return_rate) == (100, 25, 0.25)
    assert (result.treatment.revenue, result.treatment.revenue_per_customer) == (4000.0, 20.0)
    assert (result.holdout.revenue, result.holdout.revenue_per_customer) == (1000.0, 10.0)

    # Return rate: Newcombe's hybrid score interval from the two Wilson intervals.
    (l1, u1), (l2, u2) = wilson(80, 200), wilson(25, 100)
    rate = result.return_rate
    assert rate is not None
    assert rate.lift == pytest.approx(0.15)
    assert rate.low == pytest.approx(0.15 - math.sqrt((0.4 - l1) ** 2 + (u2 - 0.25) ** 2), abs=1e-12)
    assert rate.high == pytest.approx(0.15 + math.sqrt((u1 - 0.4) ** 2 + (0.25 - l2) ** 2), abs=1e-12)
    assert (round(rate.low, 4), round(rate.high, 4)) == (0.0363, 0.2517)

    # Revenue per customer: Welch. Sample variances: (80*30^2 + 120*20^2) / 199 and (25*30^2 + 75*10^2) / 99.
    a, b = 120_000 / 199 / 200, 30_000 / 99 / 100
    se = math.sqrt(a + b)
    df = (a + b) ** 2 / (a * a / 199 + b * b / 99)
    assert (round(se, 4), round(df, 2)) == (2.4587, 263.99)
    t = 1.9689906691  # Student's t, 97.5% quantile, 263.99 degrees of freedom
    revenue = result.revenue_per_customer
    assert revenue is not None
    assert revenue.lift == pytest.approx(10.0)
    assert revenue.low == pytest.approx(10 - t * se, abs=1e-8)
    assert revenue.high == pytest.approx(10 + t * se, abs=1e-8)
    assert (round(revenue.low, 2), round(revenue.high, 2)) == (5.16, 14.84)


def test_no_lift_under_the_minimum_in_either_arm() -> None:
    small = report(arm("treatment", 500, 200, "10") + arm("holdout", 99, 30, "10"))
    assert small.return_rate is None and small.revenue_per_customer is None
    assert small.reason == (
        "too few customers to measure: the treatment has 500, the holdout 99;"
        " a lift needs at least 100 in each"
    )
    assert small.holdout.customers == 99  # the arms are still described
    none_held_out = report(arm("treatment", 500, 200, "10"))
    assert none_held_out.return_rate is None
    assert (none_held_out.holdout.customers, none_held_out.holdout.return_rate) == (0, None)
    enough = report(arm("treatment", 100, 50, "10") + arm("holdout", 100, 30, "10"))
    assert enough.return_rate is not None and enough.revenue_per_customer is not None


def test_revenue_without_any_spread_has_no_interval() -> None:
    nobody = report(arm("treatment", 150, 0, "0") + arm("holdout", 150, 0, "0"))
    assert nobody.return_rate is not None  # 0% against 0%: still an interval around 0
    assert nobody.return_rate.lift == 0 and nobody.return_rate.low < 0 < nobody.return_rate.high
    assert nobody.revenue_per_customer is None
    assert nobody.reason == "revenue did not vary in either arm: no interval for its lift"


def test_follow_up_counts_sales_within_the_days_after_exposure() -> None:
    def visit(
        profile: str, variant: str, after: timedelta | None, amount: str = "10", *, reversal: bool = False
    ) -> FollowUp:
        at = T0 + after if after is not None else None
        return FollowUp(profile, variant, T0, at, Decimal(amount), reversal if at else None)

    rows = [
        visit("a", "treatment", timedelta(days=30)),  # the last instant of the window counts
        visit("a", "treatment", timedelta(days=2), "5.50"),
        visit("b", "treatment", timedelta(days=30, seconds=1)),  # too late
        visit("c", "holdout", None),  # no later sale at all
        visit("d", "holdout", timedelta(days=1), "20", reversal=True),  # a refund is no visit
        visit("e", "control", timedelta(days=1)),  # not a variant of ours
    ]
    outcomes = {o.profile_id: o for o in lift.follow_up(rows, days=30)}
    assert outcomes == {
        "a": Outcome("a", "treatment", True, Decimal("15.50")),
        "b": Outcome("b", "treatment", False, Decimal(0)),
        "c": Outcome("c", "holdout", False, Decimal(0)),
        "d": Outcome("d", "holdout", False, Decimal(-20)),
    }
    assert {o.profile_id for o in lift.follow_up(rows, days=1)} == {"a", "b", "c", "d"}
    assert lift.follow_up(rows, days=1)[0] == Outcome("a", "treatment", False, Decimal(0))


def test_the_report_is_json_with_camel_case_names() -> None:
    data = msgspec.json.decode(msgspec.json.encode(report(arm("treatment", 10, 1, "1"))))
    assert set(data) == {
        "cohort", "treatment", "holdout", "returnRate", "revenuePerCustomer", "confidence", "minimum",
        "reason",
    }  # fmt: skip
    assert data["cohort"] == {
        "rule": "mid-basket coupon",
        "days": 30,
        "since": None,
        "until": "2026-04-01T00:00:00Z",
    }
    assert set(data["treatment"]) == {"customers", "returned", "returnRate", "revenue", "revenuePerCustomer"}
    assert (data["confidence"], data["minimum"]) == (0.95, 100)


# --------------------------------------------------------------------------- gathered from the store


def seed_history(conn: Connection) -> None:
    """200 treatment and 100 holdout customers of ``coupon``, and what must not count."""
    firings: list[dict[str, Any]] = []
    sales: list[dict[str, Any]] = []

    def sale(profile: str | None, at: datetime, amount: str, *, company: str = "comp5") -> str:
        tid = f"t{len(sales)}"
        sales.append({
            "id": tid, "pos_system_id": "pax", "company_id": company, "pos_transaction_id": tid,
            "location_id": "loc5", "terminal_id": "term5", "transaction_type": "Sale", "is_reversal": False,
            "amount": Decimal(amount), "occurred_at": at, "received_at": at, "profile_id": profile,
            "loyalty_card": None, "request_hash": "h", "request": b"{}", "response": b"{}",
        })  # fmt: skip
        return tid

    def fired(
        profile: str | None, variant: str, at: datetime, *, rule: str = "coupon", company: str = "comp5"
    ) -> None:
        tid = sale(profile, at, "20.00", company=company)
        firings.append({
            "pos_system_id": "pax", "company_id": company, "rule": rule, "profile_id": profile,
            "transaction_id": tid, "fired_at": at, "variant": variant,
        })  # fmt: skip

    for n in range(200):  # treatment: 80 come back 10 days later and spend 50
        exposed = T0 + timedelta(minutes=n)
        fired(f"t-{n}", "treatment", exposed)
        if n < 80:
            sale(f"t-{n}", exposed + timedelta(days=10), "50.00")
    for n in range(100):  # holdout: 25 come back 20 days later and spend 40
        exposed = T0 + timedelta(minutes=200 + n)
        fired(f"h-{n}", "holdout", exposed)
        if n < 25:
            sale(f"h-{n}", exposed + timedelta(days=20), "40.00")
    # What must not count:
    fired("t-0", "treatment", T0 + timedelta(days=3))  # a second firing: the first one counts (its sale does)
    sales[-1]["amount"] = Decimal(0)
    sale("t-100", T0 + timedelta(minutes=100, days=31), "999")  # after the 30 days
    sale("h-50", T0 - timedelta(days=1), "777")  # before the exposure
    fired("h-60", "treatment", T0, rule="another rule")  # another rule
    fired("o-1", "holdout", T0, company="comp6")  # another merchant
    fired(None, "treatment", T0)  # an anonymous sale
    fired("late", "treatment", NOW - timedelta(days=10))  # not followed for 30 days yet
    conn.execute(insert(tables.transactions), sales)
    conn.execute(insert(tables.rule_firings), firings)


NOW = T0 + timedelta(days=60)


async def test_the_lift_of_a_seeded_history(database_url: str) -> None:
    db = Database.open(database_url)
    try:
        await asyncio.to_thread(migrate.upgrade, db)
        await db.write(seed_history)
        scope = {"pos_system_id": "pax", "company_id": "comp5", "rule": "coupon", "now": NOW}
        result = await analytics.rule_lift(db, **scope)  # type: ignore[arg-type]
        window_start = await analytics.rule_lift(db, **scope, since=T0 + timedelta(minutes=250))  # type: ignore[arg-type]
    finally:
        await db.close()
    assert result.cohort == lift.Cohort("coupon", 30, None, NOW - timedelta(days=30))
    assert (result.treatment.customers, result.treatment.returned, result.treatment.revenue) == (
        200,
        80,
        4000.0,
    )
    assert (result.holdout.customers, result.holdout.returned, result.holdout.revenue) == (100, 25, 1000.0)
    # The same numbers as the hand computation above.
    assert result.return_rate is not None and result.revenue_per_customer is not None
    assert (round(result.return_rate.low, 4), round(result.return_rate.high, 4)) == (0.0363, 0.2517)
    assert (round(result.revenue_per_customer.low, 2), round(result.revenue_per_customer.high, 2)) == (
        5.16,
        14.84,
    )
    assert result.reason is None
    # From 250 minutes on: 50 holdout customers, and t-0 by its second firing (its first in the window).
    assert (window_start.treatment.customers, window_start.holdout.customers) == (1, 50)
    assert window_start.return_rate is None and window_start.revenue_per_customer is None
    assert window_start.reason is not None and "the holdout 50" in window_start.reason


async def test_a_lift_asked_for_nonsense_is_a_400_naming_the_parameter(database_url: str) -> None:
    db = Database.open(database_url)
    scope = {"pos_system_id": "pax", "company_id": "comp5", "rule": "coupon", "now": NOW}
    try:
        for bad, field in (
            ({"days": 0}, "days"),
            ({"days": 366}, "days"),
            ({"since": NOW, "until": T0}, "since"),
        ):
            with pytest.raises(ValidationFailed) as refused:
                await analytics.rule_lift(db, **scope, **bad)  # type: ignore[arg-type]
            assert refused.value.status == 400 and refused.value.errors is not None
            assert list(refused.value.errors) == [field]
    finally:
        await db.close()
