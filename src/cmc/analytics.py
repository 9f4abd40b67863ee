"""Campaign analytics: the questions a merchant asks of what CMC recorded, answered per rule.

The use cases behind the analytics API; each reads through the owners of the tables it needs
(``firings``, ``transactions``, ``links``, ``outbox.queue``) in one read transaction:

- ``rule_lift``: the lift of one rule's treatment over its holdout (``cmc.lift``);
- ``rule_activity``: per rule over a window, its firings and customers per variant, its scans
  (people and bots) and its messages per state and reason.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection

from cmc import firings, lift, links, transactions
from cmc.errors import ValidationFailed
from cmc.outbox import queue
from cmc.store.database import Database

MAX_DAYS = 365
"""The longest follow-up a lift may ask for."""


def rule_outcomes(
    conn: Connection, *, pos_system_id: str, company_id: str, cohort: lift.Cohort
) -> list[lift.Outcome]:
    """Each customer of the cohort, with what they did in the ``days`` after the rule fired for them."""
    exposures = firings.first_firings(
        pos_system_id=pos_system_id,
        company_id=company_id,
        rule=cohort.rule,
        since=cohort.since,
        until=cohort.until,
    )
    # A sale after ``until + days`` is beyond every customer's follow-up: it is not read.
    rows = transactions.follow_ups(conn, exposures, horizon=cohort.until + timedelta(days=cohort.days))
    return lift.follow_up(rows, days=cohort.days)


async def rule_lift(
    db: Database,
    *,
    pos_system_id: str,
    company_id: str,
    rule: str,
    now: datetime,
    days: int = lift.DEFAULT_DAYS,
    since: datetime | None = None,
    until: datetime | None = None,
    minimum: int = lift.MINIMUM,
) -> lift.LiftReport:
    """The lift of ``rule`` for its customers first exposed in ``[since, until)``, followed ``days`` days.

    ``until`` is at most ``now - days`` (its default), so that every customer counted was followed
    for ``days`` full days; ``since`` None counts from the first firing recorded. The statistics
    run in a thread: the first report loads scipy and statsmodels. ``days`` outside 1 to 365, or a
    window that ends before it starts, is a ``ValidationFailed`` (400) naming the parameter.
    """
    if not 1 <= days <= MAX_DAYS:
        raise ValidationFailed(errors={"days": [f"must be a whole number of days from 1 to {MAX_DAYS}"]})
    if since is not None and until is not None and since >= until:
        raise ValidationFailed(errors={"since": ["must be before until"]})
    latest = now - timedelta(days=days)
    cohort = lift.Cohort(rule, days, since, latest if until is None else min(until, latest))
    outcomes = await db.read(rule_outcomes, pos_system_id=pos_system_id, company_id=company_id, cohort=cohort)
    return await asyncio.to_thread(lift.report, outcomes, cohort, minimum=minimum)


@dataclass
class RuleActivity:
    """What one rule did in a window."""

    firings: dict[str, int] = field(default_factory=dict)
    """Firings per variant (``treatment``, ``holdout``)."""
    customers: dict[str, int] = field(default_factory=dict)
    """Distinct customers per variant (anonymous sales not counted)."""
    scans: int = 0
    bot_scans: int = 0
    messages: dict[str, int] = field(default_factory=dict)
    """Messages per state, with its reason where it has one: ``sent``, ``suppressed:holdout``, ..."""


def rule_activity(
    conn: Connection, *, pos_system_id: str, company_id: str, since: datetime, until: datetime
) -> dict[str | None, RuleActivity]:
    """Per rule (None: links made before links knew their rule), what it did in ``[since, until)``.

    Firings and messages count by when they were made (the sale), scans by when they happened.
    """
    merchant = {"pos_system_id": pos_system_id, "company_id": company_id}
    activity: dict[str | None, RuleActivity] = {}
    counts = firings.variant_counts(conn, **merchant, since=since, until=until)
    for (rule, variant), (count, people) in counts.items():
        entry = activity.setdefault(rule, RuleActivity())
        entry.firings[variant], entry.customers[variant] = count, people
    for scan in links.scan_counts(conn, **merchant, since=since, until=until):
        entry = activity.setdefault(scan.rule, RuleActivity())
        entry.scans, entry.bot_scans = scan.people, scan.bots
    for state in queue.state_counts(conn, **merchant, since=since, until=until):
        entry = activity.setdefault(state.rule, RuleActivity())
        key = f"suppressed:{state.reason}" if state.status == "suppressed" else state.status
        entry.messages[key] = entry.messages.get(key, 0) + state.messages
    return activity
