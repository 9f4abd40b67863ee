"""The lift of a rule: what its treatment did that its holdout did not (pure: data in, report out).

Who is compared: every customer whose first firing of the rule in the window was recorded, in the
arm (variant) of that firing. Anonymous sales are not customers here: nothing follows them.

What is compared, for each customer over the ``days`` days (30 by default) after the sale the rule
fired on (``follow_up``):

- **returned**: at least one later sale (a refund, return or void is not a visit);
- **revenue**: the net amount of those later sales (sales minus reversals, as lifetime spend counts).

The lift is treatment minus holdout, each with a 95% confidence interval from a maintained library:

- **return rate**: a difference of two independent proportions, Newcombe's hybrid score interval
  (``statsmodels.stats.proportion.confint_proportions_2indep``, ``method="newcomb"``): it keeps its
  coverage for rates near 0 or 1 and for small arms, where the Wald interval does not;
- **revenue per customer**: a difference of means, Welch's unequal-variance t interval
  (``scipy.stats.ttest_ind(equal_var=False)``). Chosen over a bootstrap: the same data always gives
  the same interval, it costs one pass, and with the 100 customers per arm it needs the mean is
  near normal even for skewed spend.

While either arm has fewer than ``MINIMUM`` (100) customers both lifts are ``None`` and ``reason``
says why; an interval that cannot be computed (no spread at all in either arm) is ``None`` too.
The statistics libraries load on the first report (seconds): run ``report`` off the event loop.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

import msgspec

from cmc.holdout import VARIANTS, Variant

MINIMUM = 100
"""Customers each arm needs before a lift is reported."""
DEFAULT_DAYS = 30
CONFIDENCE = 0.95
RETURN_METHOD = "difference of proportions, Newcombe hybrid score interval (statsmodels)"
REVENUE_METHOD = "difference of means, Welch t interval (scipy)"


class FollowUp(NamedTuple):
    """A customer's exposure and one of their sales after it (what the store query gathers).

    ``sale_at`` is None when the customer has no later sale before the query's horizon.
    """

    profile_id: str
    variant: str
    exposed_at: datetime
    """When the sale the rule fired on happened."""
    sale_at: datetime | None
    amount: Decimal | None
    is_reversal: bool | None


@dataclass(frozen=True)
class Outcome:
    """What one customer did in the ``days`` after the rule fired for them."""

    profile_id: str
    variant: Variant
    returned: bool
    revenue: Decimal


def follow_up(rows: Iterable[FollowUp], *, days: int) -> list[Outcome]:
    """Each customer's outcome from their follow-up rows (a sale counts within ``days`` of exposure)."""
    window = timedelta(days=days)
    seen: dict[str, tuple[Variant, bool, Decimal]] = {}
    for row in rows:
        if row.variant not in VARIANTS:
            continue
        variant, returned, revenue = seen.get(row.profile_id, (row.variant, False, Decimal(0)))
        if row.sale_at is not None and row.exposed_at < row.sale_at <= row.exposed_at + window:
            amount = abs(row.amount or Decimal(0))
            if row.is_reversal:
                revenue -= amount
            else:
                returned, revenue = True, revenue + (row.amount or Decimal(0))
        seen[row.profile_id] = (variant, returned, revenue)
    return [Outcome(pid, variant, returned, revenue) for pid, (variant, returned, revenue) in seen.items()]


class Arm(msgspec.Struct, frozen=True, rename="camel"):
    """One variant's customers and what they did."""

    customers: int
    returned: int
    return_rate: float | None
    """``returned / customers`` (None without customers)."""
    revenue: float
    """Net revenue of all its customers' later sales."""
    revenue_per_customer: float | None


class Estimate(msgspec.Struct, frozen=True):
    """Treatment minus holdout, with its confidence interval."""

    lift: float
    low: float
    high: float
    method: str


class Cohort(msgspec.Struct, frozen=True):
    """Whom a lift compares: the customers of ``rule`` first exposed in ``[since, until)``."""

    rule: str
    days: int
    """How long each customer is followed after the sale the rule fired on."""
    since: datetime | None
    """None: from the first firing recorded."""
    until: datetime
    """At most ``days`` before now, so that every customer counted was followed for ``days`` full days."""


class LiftReport(msgspec.Struct, frozen=True, rename="camel"):
    """The lift of one rule over one window (JSON-ready: ``msgspec.json.encode``)."""

    cohort: Cohort
    treatment: Arm
    holdout: Arm
    return_rate: Estimate | None
    revenue_per_customer: Estimate | None
    confidence: float = CONFIDENCE
    minimum: int = MINIMUM
    reason: str | None = None
    """Why a lift is None."""


def report(outcomes: Sequence[Outcome], cohort: Cohort, *, minimum: int = MINIMUM) -> LiftReport:
    """The lift of the cohort's rule from its customers' outcomes."""
    by_arm = {variant: [o for o in outcomes if o.variant == variant] for variant in VARIANTS}
    treatment, holdout = _arm(by_arm["treatment"]), _arm(by_arm["holdout"])
    return_rate = revenue = None
    if treatment.customers < minimum or holdout.customers < minimum:
        reason: str | None = (
            f"too few customers to measure: the treatment has {treatment.customers}, the holdout"
            f" {holdout.customers}; a lift needs at least {minimum} in each"
        )
    else:
        return_rate = _return_rate(treatment, holdout)
        revenue = _revenue(*([float(o.revenue) for o in by_arm[variant]] for variant in VARIANTS))
        reason = None if revenue else "revenue did not vary in either arm: no interval for its lift"
    return LiftReport(cohort, treatment, holdout, return_rate, revenue, minimum=minimum, reason=reason)


def _arm(outcomes: list[Outcome]) -> Arm:
    customers = len(outcomes)
    returned = sum(o.returned for o in outcomes)
    revenue = sum((o.revenue for o in outcomes), Decimal(0))
    return Arm(
        customers=customers,
        returned=returned,
        return_rate=returned / customers if customers else None,
        revenue=float(revenue),
        revenue_per_customer=float(revenue / customers) if customers else None,
    )


def _return_rate(treatment: Arm, holdout: Arm) -> Estimate:
    from statsmodels.stats.proportion import confint_proportions_2indep

    low, high = confint_proportions_2indep(
        treatment.returned, treatment.customers, holdout.returned, holdout.customers,
        method="newcomb", compare="diff", alpha=1 - CONFIDENCE,
    )  # fmt: skip
    lift = treatment.returned / treatment.customers - holdout.returned / holdout.customers
    return Estimate(lift=lift, low=float(low), high=float(high), method=RETURN_METHOD)


def _revenue(treatment: list[float], holdout: list[float]) -> Estimate | None:
    if min(treatment) == max(treatment) and min(holdout) == max(holdout):
        return None  # no spread at all: a t interval would claim certainty
    from scipy import stats

    result = stats.ttest_ind(treatment, holdout, equal_var=False)
    interval = result.confidence_interval(CONFIDENCE)
    low, high = float(interval.low), float(interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    lift = sum(treatment) / len(treatment) - sum(holdout) / len(holdout)
    return Estimate(lift=lift, low=low, high=high, method=REVENUE_METHOD)
