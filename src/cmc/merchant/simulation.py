"""Simulation: replay a company's stored sales through a version's rules and the active version's.

Writes nothing. Each stored sale (its decoded request, kept in ``transactions.request``) is replayed in
the order it happened through both rule sets, with the rule engine the tender path uses
(``marketing.facts_of`` → ``RuleSet.evaluate``). What the replay reconstructs, and how closely:

- **Customer facts** (visit count, new or not, lifetime spend) are rebuilt from the stored history,
  in replay order: each customer's transactions before the window are counted first, then each
  replayed sale adds its own, exactly as the profile counted them.
- **Contact details** (has an email, phone or loyalty card; birthday) come from the sales replayed so
  far for that customer, each merged over the earlier ones as the profile merges them; details known
  only from sales before the window are not seen.
- **Per-customer limits** count each version's own firings within the replay: a customer who got a
  once-a-week coupon the day before the window may get it again on its first day.
- **Time**: a sale is evaluated at the instant it happened (``occurred_at``), which is also when it
  arrived for every sale sent in real time.
- **Messages** count the emails and SMS a version would queue: one per template per sale, for a
  customer with that channel's contact; opt-outs are not subtracted.

The replay itself is pure CPU work; the route runs it in a worker thread, one at a time per process.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

import msgspec

from cmc import profiles, rules, transactions
from cmc.errors import NotFound, VersionUnfit
from cmc.marketing import facts_of
from cmc.merchant import service, wire
from cmc.merchant.versions import Version
from cmc.profiles import Person, ProfileState
from cmc.registry import setup
from cmc.registry.setup import Document, MessageTemplate, Setup
from cmc.registry.snapshot import Company, Directory
from cmc.sale import Place, Sale
from cmc.store.database import Database
from cmc_client import wire as pos_wire

DEFAULT_WINDOW = timedelta(days=30)
SAMPLES = 20
_decode = msgspec.json.Decoder(pos_wire.TransactionRequest).decode


@dataclass(frozen=True)
class Window:
    """Which stored sales to replay: ``start <= occurred_at < end``, the latest ``limit``."""

    start: datetime
    end: datetime
    limit: int = wire.MAX_SIMULATED


@dataclass
class _Customer:
    """A customer's profile as it stood before the sale being replayed."""

    visits: int = 0
    spend: Decimal = Decimal(0)
    seen: bool = False
    person: Person = field(default_factory=Person)
    has_card: bool = False


class _Side:
    """One version's rules over the replay, with its own firings (what its limits count)."""

    def __init__(self, compiled: Setup, rule_names: list[str]) -> None:
        self.ruleset = compiled.rules
        self.templates: Mapping[str, MessageTemplate] = compiled.message_templates
        self.names = rule_names
        self.windows: dict[str, timedelta] = {}
        self.fired_at: dict[tuple[str, str], list[datetime]] = defaultdict(list)
        self.firings: Counter[str] = Counter()
        self.messages: Counter[str] = Counter()
        self.customers: dict[str, set[str]] = defaultdict(set)
        self.sales: dict[str, set[str]] = defaultdict(set)
        """The sales each rule fired for (a rule has changed when they differ)."""

    def evaluate(
        self, facts: rules.Facts, profile_id: str | None, *, explain: bool = False
    ) -> rules.Evaluation:
        def usage(rule: str) -> int:
            since = facts.now - self.windows[rule]
            return sum(1 for at in self.fired_at.get((profile_id or "", rule), ()) if at >= since)

        return self.ruleset.evaluate(facts, usage=usage, explain=explain)

    def count(
        self, sale: str, evaluation: rules.Evaluation, profile: ProfileState | None, now: datetime
    ) -> None:
        for fired in evaluation.fired:
            self.firings[fired.rule] += 1
            self.sales[fired.rule].add(sale)
            if profile is not None:
                self.customers[fired.rule].add(profile.id)
                if fired.rule in self.windows:
                    self.fired_at[(profile.id, fired.rule)].append(now)
        contacts = {"email": profile.person.email, "sms": profile.person.phone} if profile else {}
        queued: set[str] = set()
        for effect in evaluation.notifications:
            if effect.target not in queued:
                queued.add(effect.target)
                if contacts.get(self.templates[effect.target].channel):
                    self.messages[effect.rule] += 1

    def counts(self, rule: str) -> wire.Counts:
        return wire.Counts(self.firings[rule], self.messages[rule], len(self.customers[rule]))


def _side(document: Document, locations: list[str]) -> _Side:
    try:
        compiled = setup.compile_setup(document, locations=locations)
    except rules.RuleError as exc:
        raise VersionUnfit(errors={exc.field: [setup.describe(exc)]}) from None
    side = _Side(compiled, [str(rule["name"]) for rule in document.rules])
    for location in locations:
        for rule in compiled.rules.for_location(location):
            if rule.limit is not None:
                side.windows[rule.name] = rule.limit.per
    return side


async def simulate(
    db: Database,
    directory: Directory,
    company: Company,
    *,
    candidate: Version,
    active: Version,
    window: Window,
) -> wire.Simulation:
    """Replay the company's stored sales in ``window`` through ``candidate`` and ``active``."""
    key = {"pos_system_id": company.pos_system_id, "company_id": company.id}
    sales = await db.read(
        transactions.between, **key, start=window.start, end=window.end, limit=window.limit + 1
    )
    truncated = len(sales) > window.limit
    sales = sales[-window.limit :]
    first = sales[0].occurred_at if sales else window.end
    history = await db.read(transactions.earlier, **key, start=first, end=window.end)
    return await asyncio.to_thread(
        _replay, directory, company, candidate, active, window, sales, history, truncated
    )


async def simulate_version(
    db: Database,
    directory: Directory,
    pos_system_id: str,
    company_id: str,
    number: int,
    *,
    window: Window,
    slots: asyncio.Semaphore,
) -> wire.Simulation:
    """Version ``number`` of a company against its active one: what the merchant API and the console run.

    ``slots`` bounds the simulations at once: a replay is CPU work that sales must not queue behind.
    """
    candidate = await db.read(service.version, pos_system_id, company_id, number)
    live = await db.read(service.active, pos_system_id, company_id)
    company = directory.companies.get((pos_system_id, company_id))
    if company is None:
        raise NotFound("No such company.")
    async with slots:
        return await simulate(db, directory, company, candidate=candidate, active=live, window=window)


def _replay(
    directory: Directory,
    company: Company,
    candidate: Version,
    active: Version,
    window: Window,
    sales: list[transactions.History],
    history: list[tuple[str, bool, Decimal | None]],
    truncated: bool,
) -> wire.Simulation:
    locations = directory.company_locations(company.pos_system_id, company.id)
    mine = _side(Document.from_data(candidate.document), locations)
    live = _side(Document.from_data(active.document), locations)
    customers: dict[str, _Customer] = defaultdict(_Customer)
    for profile_id, reversal, amount in history:
        before = customers[profile_id]
        before.seen = True
        before.visits += 0 if reversal else 1
        before.spend += profiles.spend_delta(amount, reversal)
    pos = directory.pos_systems[company.pos_system_id]
    skipped = differing = 0
    samples: list[wire.Sample] = []
    for stored in sales:
        location = directory.locations.get((company.pos_system_id, stored.location_id))
        if location is None:
            skipped += 1
            continue
        request = _decode(stored.request)
        claim = profiles.claim_of(request, region=location.country)
        profile = _profile(customers, stored, claim, request.transactionAmount)
        when = stored.occurred_at
        sale = Sale(
            stored.id, request, Place(pos, company, location), claim, profile, stored.is_reversal, when, when
        )
        facts = facts_of(sale)
        pid = profile.id if profile else None
        ours, theirs = mine.evaluate(facts, pid), live.evaluate(facts, pid)
        if ours.effects != theirs.effects:
            differing += 1
            if len(samples) < SAMPLES:
                samples.append(_sample(stored, request.transactionAmount, mine, live, facts, pid))
        mine.count(stored.id, ours, profile, when)
        live.count(stored.id, theirs, profile, when)
    names = mine.names + [name for name in live.names if name not in mine.names]
    return wire.Simulation(
        version=candidate.version,
        activeVersion=active.version,
        from_=window.start,
        to=window.end,
        sales=len(sales) - skipped,
        truncated=truncated,
        skipped=skipped,
        differing=differing,
        rules=[
            wire.RuleDifference(
                name, mine.counts(name), live.counts(name), mine.counts(name) != live.counts(name)
            )
            for name in names
        ],
        samples=samples,
    )


def _profile(
    customers: dict[str, _Customer],
    stored: transactions.History,
    claim: profiles.Claim,
    amount: Decimal | None,
) -> ProfileState | None:
    """The customer's profile as it was right after this sale; the running state moves on."""
    if stored.profile_id is None:
        return None
    before = customers[stored.profile_id]
    state = ProfileState(
        stored.profile_id,
        claim.person.over(before.person),
        before.visits + (0 if stored.is_reversal else 1),
        before.spend + profiles.spend_delta(amount, stored.is_reversal),
        before.has_card or any(i.kind == "card" for i in claim.identifiers),
        is_new=not before.seen,
    )
    before.visits, before.spend, before.seen = state.visit_count, state.lifetime_spend, True
    before.person, before.has_card = state.person, state.has_card
    return state


def _sample(
    stored: transactions.History,
    amount: Decimal | None,
    mine: _Side,
    live: _Side,
    facts: rules.Facts,
    profile_id: str | None,
) -> wire.Sample:
    """The sale with both outcomes explained (evaluated again, before either side counts it)."""
    return wire.Sample(
        transactionId=stored.pos_transaction_id,
        occurredAt=stored.occurred_at,
        locationId=stored.location_id,
        amount=amount,
        version=_outcome(mine.evaluate(facts, profile_id, explain=True)),
        active=_outcome(live.evaluate(facts, profile_id, explain=True)),
    )


def _outcome(evaluation: rules.Evaluation) -> wire.Outcome:
    return wire.Outcome(
        fired=[fired.rule for fired in evaluation.fired],
        effects=evaluation.effects,
        explanation=evaluation.explanation or [],
        text=rules.format_explanation(evaluation),
    )
