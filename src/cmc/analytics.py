"""Campaign analytics: the questions a merchant asks of what CMC recorded, answered per rule.

The use cases behind the analytics API; each reads through the owners of the tables it needs
(``firings``, ``transactions``, ``links``, ``outbox.queue``) in one read transaction:

- ``rule_lift``: the lift of one rule's treatment over its holdout (``cmc.lift``);
- ``rule_activity``: per rule over a window, its firings and customers per variant, its scans
  (people and bots) and its messages per state and reason.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy import Connection

from cmc import firings, holdout, lift, links, profiles, rollup, transactions
from cmc.errors import Conflict as Refused
from cmc.errors import NotFound, ValidationFailed
from cmc.outbox import optouts, queue
from cmc.registry import store as registry_store
from cmc.store.buckets import Span
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
    merchant: dict[str, Any] = {"pos_system_id": pos_system_id, "company_id": company_id}
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


Customer = profiles.Shown
"""A customer profile as the merchant sees it (contact data: never log it)."""
Identifier = profiles.Known
Visit = transactions.Visit
Firing = firings.Firing
Message = queue.Logged
"""A message of the outbox with its rendered text and where it stands."""
Scan = links.Scan
OptOut = optouts.OptOut
Conflict = profiles.Conflict
"""An identifier of one sale that pointed at this profile and another one (never merged)."""


class CustomerPage(msgspec.Struct, frozen=True):
    """A page of customers; ``next`` is the cursor of the following page (None: the last)."""

    data: list[Customer]
    next: str | None


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
    """``[since, until)`` with the defaults (the 30 days before ``now``), or ``ValidationFailed``.

    The errors name the API's parameters, ``from`` and ``to``.
    """
    for name, value in (("from", since), ("to", until)):
        if value is not None and value.tzinfo is None:
            raise ValidationFailed(errors={name: ["must say its time zone (Z or +hh:mm)"]})
    end = until if until is not None else now
    start = since if since is not None else end - DEFAULT_WINDOW
    if start >= end:
        raise ValidationFailed(errors={"from": ["must be before to"]})
    if end - start > longest:
        raise ValidationFailed(errors={"from": [f"the window may be at most {longest.days} days"]})
    return start, end


def _read_summary(conn: Connection, span: Span, now: datetime) -> Summary:
    cover = rollup.coverage(conn)
    tenders, identified = _tender_counts(conn, rollup.sales_plan(span, cover, now=now))
    stamped = rollup.stamped_plan(span, cover)
    rolled = _rolled_totals(conn, stamped)
    variants: Counter[str] = Counter()
    for (metric, _, variant), (n, _) in rolled.items():
        if metric == "firings":
            variants[variant] += n
    made = sum(n for (metric, _, _), (n, _) in rolled.items() if metric == "links")
    revenue = (amount for (metric, _, _), (_, amount) in rolled.items() if metric == "influenced")
    influenced = sum(revenue, Decimal(0))
    for live in stamped.live:
        variants.update(firings.per_variant(conn, live))
        made += links.links_made(conn, live)
        influenced += firings.influenced_revenue(conn, live)
    people, bots = links.scan_totals(conn, span)
    return Summary(
        since=span.since,
        until=span.until,
        tenders=tenders,
        identified=identified,
        identified_share=identified / tenders if tenders else None,
        firings=dict.fromkeys(holdout.VARIANTS, 0) | dict(variants),
        scans=people,
        bot_scans=bots,
        links=made,
        scan_rate=people / made if made else None,
        messages=dict.fromkeys(STATES, 0) | queue.state_totals(conn, span),
        opt_outs=optouts.count(conn, span),
        influenced_revenue=plain(influenced),
    )


def _tender_counts(conn: Connection, plan: rollup.Plan) -> tuple[int, int]:
    """Tenders and identified ones of a window: the roll-up's whole hours, the sales above its mark in
    them, and the rest from the rows."""
    counted = [transactions.tender_counts(conn, live) for live in plan.live]
    if plan.rolled is not None:
        rolled = (rollup.totals(conn, plan.rolled, metric).values() for metric in ("tenders", "identified"))
        tenders, identified = (sum(n for n, _ in found) for found in rolled)
        counted.append((tenders, identified))
        if plan.tail is not None:
            counted.append(transactions.unrolled_counts(conn, plan.rolled, after=plan.tail))
    return sum(n for n, _ in counted), sum(known for _, known in counted)


def _rolled_totals(conn: Connection, plan: rollup.Plan) -> dict[tuple[str, str, str], tuple[int, Decimal]]:
    if plan.rolled is None:
        return {}
    return {
        (metric, rule, variant): found
        for metric in ("firings", "links", "influenced")
        for (rule, variant), found in rollup.totals(conn, plan.rolled, metric).items()
    }


STATES = ("queued", "sending", "sent", "delivered", "failed", "bounced", "suppressed", "dead")
"""Every state a message may be in (``cmc.outbox.queue``), what ``messages`` may filter on."""
CHANNELS = ("email", "sms")


async def summary(
    db: Database,
    *,
    pos_system_id: str,
    company_id: str,
    since: datetime,
    until: datetime,
    now: datetime | None = None,
) -> Summary:
    """What the company's marketing did in ``[since, until)`` (at most ``MAX_WINDOW``), read from the
    roll-up where it can be (``cmc.rollup``); ``now`` (default ``until``) tells how far behind it is."""
    window(since, until, now=until)
    return await db.read(_read_summary, Span(pos_system_id, company_id, since, until), now or until)


_SERIES: dict[str, Callable[..., dict[datetime, int]]] = {
    "tenders": transactions.tender_buckets,
    "firings": firings.firing_buckets,
    "scans": links.scan_buckets,
    "messages": queue.message_buckets,
    "optouts": optouts.optout_buckets,
}
"""Each metric counted from its rows (``_read_series`` takes tenders and firings from the roll-up
where it can)."""


def _read_series(
    conn: Connection, metric: str, span: Span, bucket: str, rule: str | None, now: datetime
) -> dict[datetime, int]:
    by_rule = () if rule is None else (rule,)
    if metric not in ("tenders", "firings"):
        return _SERIES[metric](conn, span, bucket, *by_rule)
    cover = rollup.coverage(conn)
    if metric == "tenders":
        plan = rollup.sales_plan(span, cover, now=now)
    else:
        plan = rollup.stamped_plan(span, cover)
    parts = [_SERIES[metric](conn, live, bucket, *by_rule) for live in plan.live]
    if plan.rolled is not None:
        parts.append(rollup.series(conn, plan.rolled, metric, bucket, rule))
        if plan.tail is not None:
            parts.append(transactions.unrolled_buckets(conn, plan.rolled, bucket, after=plan.tail))
    return dict(rollup.summed(parts))


_BY_RULE = ("firings", "scans", "messages")
_STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


def floor(at: datetime, bucket: str) -> datetime:
    """The start of the UTC hour or day ``at`` falls in."""
    at = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0) if bucket == "day" else at


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
    now: datetime | None = None,
) -> list[Point]:
    """``metric`` per UTC ``bucket`` in ``[since, until)``, every bucket present (zero when empty).

    ``since`` is floored to its bucket. ``rule`` narrows firings, scans (by people) and messages to
    one rule (tenders and opt-outs have no rule: asking is a ``ValidationFailed``). Unknown metric or
    bucket, or a window too long for the bucket, is a ``ValidationFailed`` naming the parameter.
    """
    if metric not in _SERIES:
        raise ValidationFailed(errors={"metric": [f"must be one of {', '.join(METRICS)}"]})
    if bucket not in _STEP:
        raise ValidationFailed(errors={"bucket": [f"must be one of {', '.join(BUCKETS)}"]})
    if rule is not None and metric not in _BY_RULE:
        raise ValidationFailed(errors={"rule": [f"{metric} have no rule; only {', '.join(_BY_RULE)} do"]})
    longest = MAX_HOURLY_WINDOW if bucket == "hour" else MAX_WINDOW
    if until - since > longest:
        raise ValidationFailed(
            errors={
                "bucket": [f"{bucket}ly buckets cover at most {longest.days} days; ask for a shorter window"]
            }
        )
    start, end = window(floor(since, bucket), until, now=until, longest=longest + _STEP[bucket])
    span = Span(pos_system_id, company_id, start, end)
    counted = await db.read(_read_series, metric, span, bucket, rule, now or until)
    points, at = [], start
    while at < end:
        points.append(Point(at, counted.get(at, 0)))
        at += _STEP[bucket]
    return points


def plain(amount: Decimal) -> Decimal:
    """``23.470000`` (PostgreSQL's NUMERIC scale) as ``23.47``, ``20.000000`` as ``20``, like SQLite."""
    exact = amount.normalize()
    return exact.quantize(Decimal(1)) if exact.as_tuple().exponent > 0 else exact  # type: ignore[operator]


def _customer(row: Customer) -> Customer:
    return msgspec.structs.replace(row, lifetime_spend=plain(row.lifetime_spend))


def _visit(row: Visit) -> Visit:
    return msgspec.structs.replace(row, amount=None if row.amount is None else plain(row.amount))


def _looks_like_name(query: str) -> bool:
    return bool(query) and all(ch.isalpha() or ch in " '-." for ch in query)


def _search(
    conn: Connection, *, pos_system_id: str, company_id: str, query: str, after: str | None, limit: int
) -> list[profiles.Shown]:
    merchant: dict[str, Any] = {"pos_system_id": pos_system_id, "company_id": company_id}
    # Whichever kind the query is, its normalised forms are looked up together: one probe by key.
    values = _forms(conn, merchant, query) | {profiles.normalize_card(query)}
    found = {p.id: p for p in profiles.with_identifiers(
        conn, **merchant, values=sorted(v for v in values if v), after=after, limit=limit
    )}  # fmt: skip
    if _looks_like_name(query):
        words = query.split()
        found.update(
            (p.id, p) for p in profiles.named(conn, **merchant, words=words, after=after, limit=limit)
        )
    return [found[key] for key in sorted(found)[:limit]]


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
    customer id (exactly, after normalising), or a name (every word starts the first or last name;
    any case). In profile id order; ``cursor`` is a previous page's ``next``; ``limit`` 1 to
    ``MAX_LIMIT``."""
    query = query.strip()
    if not query:
        raise ValidationFailed(errors={"query": ["is required: an email, phone, card or name"]})
    if len(query) > 200:
        raise ValidationFailed(errors={"query": ["must be at most 200 characters"]})
    _check_limit(limit)
    if cursor is not None and not _PROFILE_ID.match(cursor):
        raise ValidationFailed(errors={"cursor": ["must be a previous page's next"]})
    rows = await db.read(
        _search,
        pos_system_id=pos_system_id,
        company_id=company_id,
        query=query,
        after=cursor,
        limit=limit + 1,
    )
    page = [_customer(row) for row in rows[:limit]]
    return CustomerPage(page, page[-1].id if len(rows) > limit else None)


_PROFILE_ID = re.compile(r"^[0-9a-fA-F-]{1,36}$")


def _opt_outs_of(conn: Connection, *, pos_system_id: str, company_id: str, contact: str) -> list[OptOut]:
    merchant: dict[str, Any] = {"pos_system_id": pos_system_id, "company_id": company_id}
    values = _forms(conn, merchant, contact)
    return optouts.of_recipients(conn, **merchant, recipients=sorted(v for v in values if v))


def _forms(conn: Connection, merchant: dict[str, Any], text: str) -> set[str | None]:
    """``text`` as typed, as an email and as a phone number of each of the company's countries."""
    countries = registry_store.company_countries(conn, **merchant)
    return {text, profiles.normalize_email(text)} | {profiles.normalize_phone(text, c) for c in countries}


async def opt_outs_of(db: Database, *, pos_system_id: str, company_id: str, contact: str) -> list[OptOut]:
    """The company's opt-outs of one contact (an email or a phone number, normalised as a sale's
    are), newest first; ``ValidationFailed`` for an empty or over-long one."""
    contact = contact.strip()
    if not contact or len(contact) > 200:
        raise ValidationFailed(errors={"contact": ["an email or phone number of at most 200 characters"]})
    return await db.read(_opt_outs_of, pos_system_id=pos_system_id, company_id=company_id, contact=contact)


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(errors={"limit": [f"must be a whole number from 1 to {MAX_LIMIT}"]})


def _read_timeline(
    conn: Connection, *, pos_system_id: str, company_id: str, profile_id: str
) -> Timeline | None:
    merchant: dict[str, Any] = {"pos_system_id": pos_system_id, "company_id": company_id}
    found = profiles.shown(conn, **merchant, profile_id=profile_id)
    if found is None:
        return None
    # What a sale made (firings, links and their scans, messages) is found through the sale.
    sales = transactions.visit_ids(profile_id, limit=TIMELINE)
    contacts = [contact for contact in (found.email, found.phone) if contact]
    return Timeline(
        customer=_customer(found),
        identifiers=profiles.identifiers_of(conn, **merchant, profile_id=profile_id),
        visits=[
            _visit(v) for v in transactions.visits(conn, **merchant, profile_id=profile_id, limit=TIMELINE)
        ],
        firings=firings.of_sales(conn, sales, limit=TIMELINE),
        messages=queue.of_sales(conn, sales, limit=TIMELINE),
        scans=links.scans_of_sales(conn, sales, limit=TIMELINE),
        opt_outs=optouts.of_recipients(conn, **merchant, recipients=contacts),
        conflicts=profiles.conflicts_of(conn, **merchant, profile_id=profile_id, limit=TIMELINE),
    )


async def customer_timeline(
    db: Database, *, pos_system_id: str, company_id: str, profile_id: str
) -> Timeline | None:
    """One customer's profile and history; None when the company has no such profile."""
    if not _PROFILE_ID.match(profile_id):
        return None
    return await db.read(
        _read_timeline, pos_system_id=pos_system_id, company_id=company_id, profile_id=profile_id
    )


def _cursor_of(message: Message) -> str:
    text = f"{message.created_at.isoformat()}|{message.id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _parse_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, message_id = text.split("|", 1)
        created = datetime.fromisoformat(at)
    except ValueError:
        raise ValidationFailed(errors={"cursor": ["must be a previous page's next"]}) from None
    if created.tzinfo is None or len(message_id) > 36:
        raise ValidationFailed(errors={"cursor": ["must be a previous page's next"]})
    return created, message_id


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
    if state is not None and state not in STATES:
        raise ValidationFailed(errors={"state": [f"must be one of {', '.join(STATES)}"]})
    if channel is not None and channel not in CHANNELS:
        raise ValidationFailed(errors={"channel": [f"must be one of {', '.join(CHANNELS)}"]})
    _check_limit(limit)
    before = None if cursor is None else _parse_cursor(cursor)
    rows = await db.read(
        queue.log_page, pos_system_id=pos_system_id, company_id=company_id, state=state, channel=channel,
        before=before, limit=limit + 1,
    )  # fmt: skip
    page = rows[:limit]
    return MessagePage(page, _cursor_of(page[-1]) if len(rows) > limit else None)


def retry(
    conn: Connection, *, pos_system_id: str, company_id: str, message_id: str, now: datetime
) -> Message:
    """``retry_message`` inside the caller's write transaction (the API's idempotent POST)."""
    merchant: dict[str, Any] = {
        "pos_system_id": pos_system_id,
        "company_id": company_id,
        "message_id": message_id,
    }
    if not queue.requeue_dead(conn, **merchant, now=now):
        found = queue.logged(conn, **merchant)
        if found is None:
            raise NotFound("This company has no such message.")
        raise Refused(f"Only a dead message can be retried; this one is {found.state}.")
    found = queue.logged(conn, **merchant)
    assert found is not None
    return found


async def retry_message(
    db: Database, *, pos_system_id: str, company_id: str, message_id: str, now: datetime
) -> Message:
    """Send a dead message again: back to ``queued``, due ``now``, its attempts reset.

    ``NotFound`` when the company has no such message, ``Conflict`` when it is not dead.
    """
    return await db.write(
        retry, pos_system_id=pos_system_id, company_id=company_id, message_id=message_id, now=now
    )
