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
from decimal import Decimal

import msgspec
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


# --- the merchant's analytics API (and the console): shapes ---------------------------------------

METRICS = ("tenders", "firings", "scans", "messages", "optouts")
"""What ``timeseries`` counts."""
BUCKETS = ("hour", "day")
"""Its buckets, in UTC: a day is 00:00 to 24:00 UTC, whatever the stores' time zones."""
DEFAULT_WINDOW = timedelta(days=30)
MAX_WINDOW = timedelta(days=366)
"""The longest window a summary or a daily series may ask for."""
MAX_HOURLY_WINDOW = timedelta(days=14)
"""The longest window an hourly series may ask for (336 points)."""
MAX_LIMIT = 200
"""The largest page of customers or messages."""


class Summary(msgspec.Struct, frozen=True, rename="camel"):
    """What a company's marketing did in ``[since, until)``.

    Tenders count by the sale's time (``transactionDate``), firings by the sale they fired on,
    scans by when they happened, messages by when they were queued, opt-outs by when they were asked.
    """

    since: datetime
    until: datetime
    tenders: int
    identified: int
    """Tenders with a recognised customer."""
    identified_share: float | None
    """``identified / tenders`` (None without tenders)."""
    firings: dict[str, int]
    """Per variant: ``treatment``, ``holdout``."""
    scans: int
    """Scans by people (bots not counted)."""
    bot_scans: int
    links: int
    """Short links made (a QR handed out) in the window."""
    scan_rate: float | None
    """``scans / links`` (None without links): people's scans per QR handed out."""
    messages: dict[str, int]
    """Per state: ``queued``, ``sent``, ``delivered``, ``failed``, ``bounced``, ``suppressed``, ``dead``."""
    opt_outs: int
    influenced_revenue: Decimal
    """The sum of the sales a rule fired on (treatment). Descriptive, not causal: see the lift."""
    influenced_revenue_note: str = "descriptive: sales on which a rule fired, not caused by it (see lift)"


class Point(msgspec.Struct, frozen=True, rename="camel"):
    """One bucket of a series: it starts at ``at`` (UTC) and lasts an hour or a day."""

    at: datetime
    value: int


class Customer(msgspec.Struct, frozen=True, rename="camel"):
    """A customer profile as the merchant sees it (contact data: never log it)."""

    id: str
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    visit_count: int
    lifetime_spend: Decimal
    has_card: bool
    created_at: datetime
    updated_at: datetime


class CustomerPage(msgspec.Struct, frozen=True):
    """A page of customers; ``next`` is the cursor of the following page (None: the last)."""

    data: list[Customer]
    next: str | None


class Identifier(msgspec.Struct, frozen=True, rename="camel"):
    kind: str
    """``card``, ``pos`` (the POS's customer id), ``email``, ``phone``."""
    value: str
    first_seen: datetime


class Visit(msgspec.Struct, frozen=True, rename="camel"):
    transaction_id: str
    pos_transaction_id: str
    occurred_at: datetime
    location_id: str
    terminal_id: str
    transaction_type: str
    is_reversal: bool
    amount: Decimal | None


class Firing(msgspec.Struct, frozen=True, rename="camel"):
    rule: str
    variant: str
    transaction_id: str
    fired_at: datetime


class Message(msgspec.Struct, frozen=True, rename="camel"):
    """A message of the outbox with its rendered text and where it stands."""

    id: str
    created_at: datetime
    rule: str
    template_id: str
    channel: str
    recipient: str
    subject: str | None
    body: str
    state: str
    reason: str | None
    """Why it is suppressed, failed, bounced or dead."""
    last_error: str | None
    attempts: int
    sent_at: datetime | None
    reported_at: datetime | None
    transaction_id: str
    location_id: str


class Scan(msgspec.Struct, frozen=True, rename="camel"):
    scanned_at: datetime
    code: str
    rule: str | None
    agent: str
    bot: bool


class OptOut(msgspec.Struct, frozen=True, rename="camel"):
    channel: str
    recipient: str
    created_at: datetime


class Conflict(msgspec.Struct, frozen=True, rename="camel"):
    """An identifier of one sale that pointed at this profile and another one (never merged)."""

    transaction_id: str
    kind: str
    value: str
    resolved_profile_id: str
    other_profile_id: str
    created_at: datetime


class Timeline(msgspec.Struct, frozen=True, rename="camel"):
    """Everything CMC recorded about one customer, each list newest first (at most ``TIMELINE`` each)."""

    customer: Customer
    identifiers: list[Identifier]
    visits: list[Visit]
    firings: list[Firing]
    messages: list[Message]
    scans: list[Scan]
    opt_outs: list[OptOut]
    conflicts: list[Conflict]


class MessagePage(msgspec.Struct, frozen=True):
    data: list[Message]
    next: str | None


TIMELINE = 500
"""The most entries of each kind a timeline holds (the newest)."""


# --- the use cases --------------------------------------------------------------------------------


def window(
    since: datetime | None, until: datetime | None, *, now: datetime, longest: timedelta = MAX_WINDOW
) -> tuple[datetime, datetime]:
    """``[since, until)`` with the defaults (the 30 days before ``now``), or ``ValidationFailed``."""
    raise NotImplementedError


async def summary(
    db: Database, *, pos_system_id: str, company_id: str, since: datetime, until: datetime
) -> Summary:
    """What the company's marketing did in ``[since, until)`` (at most ``MAX_WINDOW``)."""
    raise NotImplementedError


async def timeseries(
    db: Database,
    *,
    pos_system_id: str,
    company_id: str,
    metric: str,
    bucket: str,
    since: datetime,
    until: datetime,
    rule: str | None = None,
) -> list[Point]:
    """``metric`` per UTC ``bucket`` in ``[since, until)``, every bucket present (zero when empty).

    ``since`` is floored to its bucket. ``rule`` narrows firings, scans and messages to one rule
    (tenders and opt-outs have no rule: asking is a ``ValidationFailed``). Unknown metric or bucket,
    or a window too long for the bucket, is a ``ValidationFailed`` naming the parameter.
    """
    raise NotImplementedError


async def find_customers(
    db: Database,
    *,
    pos_system_id: str,
    company_id: str,
    query: str,
    cursor: str | None = None,
    limit: int = 50,
) -> CustomerPage:
    """The company's customers matching ``query``: an email, a phone number, a loyalty card or POS
    customer id (exactly, after normalising), or a name (first, last or both; case-insensitive,
    prefix). ``cursor`` is a previous page's ``next``; ``limit`` 1 to ``MAX_LIMIT``."""
    raise NotImplementedError


async def customer_timeline(
    db: Database, *, pos_system_id: str, company_id: str, profile_id: str
) -> Timeline | None:
    """One customer's profile and history; None when the company has no such profile."""
    raise NotImplementedError


async def messages(
    db: Database,
    *,
    pos_system_id: str,
    company_id: str,
    state: str | None = None,
    channel: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> MessagePage:
    """The company's messages, newest first, optionally in one state and on one channel."""
    raise NotImplementedError


async def retry_message(
    db: Database, *, pos_system_id: str, company_id: str, message_id: str, now: datetime
) -> Message:
    """Send a dead message again: back to ``queued``, due ``now``, its attempts reset.

    ``NotFound`` when the company has no such message, ``Conflict`` when it is not dead.
    """
    raise NotImplementedError
