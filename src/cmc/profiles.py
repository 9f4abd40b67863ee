"""Customer profiles: recognise the customer of a sale, or create their profile.

Identifiers, strongest first: loyalty card, POS customer id, email (lower-cased), phone (E.164, the
location's country as default region). Profiles belong to one company (merchant account). The
strongest identifier already known decides the profile; identifiers not yet known are attached to it;
an identifier that already belongs to another profile is recorded as a conflict and left where it is
(a claim typed at the till never merges two profiles).

``claim_of`` and ``match`` are pure; ``peek`` and ``resolve`` run in the sale's transaction
(every statement on ``profiles``, ``profile_identifiers`` and ``profile_conflicts`` is here).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

import msgspec
import phonenumbers
from sqlalchemy import Connection, bindparam, insert, literal_column, or_, select, union_all, update

from cmc.ids import new_id
from cmc.store import tables
from cmc.store.driver import Tx
from cmc.store.statements import Query, Statement, Write
from cmc.store.tables import of_company
from cmc_client import wire

KINDS = ("card", "pos", "email", "phone")
"""Identifier kinds in matching priority order."""


class Identifier(NamedTuple):
    """A normalized customer identifier."""

    kind: str
    """One of ``KINDS``."""
    value: str
    """Normalized: a card without spaces or dashes, a lower-cased email, an E.164 phone."""


@dataclass(frozen=True)
class Person:
    """A customer's personal details (normalized; None where unknown)."""

    first_name: str | None = None
    """Trimmed, as the POS sent it (placeholders such as ``{firstName}`` show it)."""
    last_name: str | None = None
    email: str | None = None
    """The first valid email of the sale: where email messages go."""
    phone: str | None = None
    """E.164: where SMS go."""
    gender: str | None = None
    birth_date: str | None = None
    """``YYYY-MM-DD``."""

    def over(self, older: Person) -> Person:
        """These details where known, ``older``'s elsewhere (what a sale tells CMC updates the profile)."""
        return Person(*(new or old for new, old in zip(_values(self), _values(older), strict=True)))


def _values(person: Person) -> tuple[str | None, ...]:
    # Not dataclasses.astuple: that deep-copies every field, on the hot path.
    return (person.first_name, person.last_name, person.email, person.phone, person.gender, person.birth_date)


PERSON = [f.name for f in dataclasses.fields(Person)]
"""The profile columns that hold a ``Person``, in field order."""


@dataclass(frozen=True)
class Claim:
    """What a transaction says about its customer, normalized."""

    identifiers: tuple[Identifier, ...]
    person: Person = Person()


class Scope(NamedTuple):
    """The merchant account a profile belongs to: identifiers are unique within it."""

    pos_system_id: str
    company_id: str
    """The merchant account's id within its POS system."""


@dataclass(frozen=True)
class Match:
    """The outcome of matching a claim against the identifiers already known."""

    profile_id: str | None
    """The profile of the strongest known identifier; None when every identifier is new."""
    new: tuple[Identifier, ...]
    conflicts: tuple[tuple[Identifier, str], ...]
    """Known identifiers pointing at another profile, with that profile's id."""


@dataclass(frozen=True)
class ProfileState:
    """A profile: as stored, or as it is after this transaction (what the response and rules see)."""

    id: str
    person: Person
    visit_count: int
    """Visits, this one included."""
    lifetime_spend: Decimal
    has_card: bool
    is_new: bool = False


_p = tables.profiles
_i = tables.profile_identifiers
_c = tables.profile_conflicts
_COUNTERS = ("visit_count", "lifetime_spend", "has_card")
_STATE = ("id", *PERSON, *_COUNTERS)
"""The profile columns ``ProfileState`` is read from and written to, in this order."""


def _known_row(kind: str, value: str, profile_id: str, *columns: Any) -> tuple[Identifier, ProfileState]:
    split = len(PERSON)
    return Identifier(kind, value), ProfileState(profile_id, Person(*columns[:split]), *columns[split:])


@functools.cache
def _known_query(count: int, dialect: str) -> Statement[tuple[Identifier, ProfileState]]:
    """Identifiers and the profiles they point at, in one round trip, for ``count`` values.

    One probe of the identifiers' key per value (a ``UNION ALL``), not ``value IN (...)``: without
    statistics (a new database, or PostgreSQL with autovacuum off) PostgreSQL answered the list by
    the merchant's prefix of that key and read every identifier of the company, on every sale.
    """
    probes = [
        select(_i.c.kind, _i.c.value, _i.c.profile_id).where(
            _i.c.pos_system_id == bindparam("pos"),
            _i.c.company_id == bindparam("company"),
            _i.c.value == bindparam(f"v{n}"),
        )
        for n in range(count)
    ]
    if count == 1:
        found = probes[0].subquery("found")
    elif dialect == "postgresql":
        # OFFSET 0 keeps the union a subquery of its own. Flattened into the join, a sale that
        # waited on the profile while another sale updated it got the first probe's row for every
        # probe when PostgreSQL re-checked the row (EvalPlanQual): a known identifier looked new.
        found = union_all(*probes).offset(literal_column("0")).subquery("found")
    else:
        found = union_all(*probes).subquery("found")
    query = select(found.c.kind, found.c.value, *(_p.c[name] for name in _STATE)).join(
        _p, _p.c.id == found.c.profile_id
    )
    if dialect == "postgresql":
        # Concurrent sales of one customer queue here, so visit counts and per-customer rule limits
        # see each other. Profiles are locked in id order, so two sales locking the same two
        # profiles cannot deadlock. SQLite's single writer already serializes them, and the order
        # would cost it a sort per sale.
        query = query.order_by(_p.c.id).with_for_update(of=_p)
    return Statement(query, name=f"profiles.known[{count}]", into=_known_row, only=dialect)


_INSERT_PROFILE = Write.insert(_p, name="profiles.insert", prefix="new_profile_")
"""A new customer's profile, deferred like every write of a sale: the sale's insert carries it on
PostgreSQL (nothing in the sale reads the profile back; it keeps the state in memory)."""
_NAMES = ("first_name", "last_name")


def _update_profile(columns: tuple[str, ...], name: str) -> Write:
    # Deferred: the sale's own insert carries it on PostgreSQL.
    prefix = name.replace(".", "_") + "_"
    values: dict[str, Any] = {column: bindparam(prefix + column) for column in (*columns, "updated_at")}
    return Write(
        Statement(update(_p).where(_p.c.id == bindparam(prefix + "pid")).values(**values), name=name), prefix
    )


_UPDATE_RENAMED = _update_profile(tuple(c for c in _STATE if c != "id"), "profiles.update_renamed")
_UPDATE_PROFILE = _update_profile(tuple(c for c in _STATE if c not in {"id", *_NAMES}), "profiles.update")
"""A returning customer's name rarely changes, and SQLite rewrites the entry of every index whose
columns an UPDATE sets, changed or not: so the names (``ix_profiles_company_name``) are set only by
``_UPDATE_RENAMED``, when they changed."""


@functools.cache
def _insert_identifiers(count: int) -> Write:
    """``count`` new identifiers of one profile in one insert, deferred like the profile's own write.

    A concurrent sale cannot insert the same identifier first: both hold its named lock
    (``lock_names``), so the second one finds the first's rows. Were it to happen anyway, the sale's
    insert fails on the identifiers' key and the sale runs again (``cmc.tender``)."""
    return Write.insert(_i, name=f"profiles.insert_identifiers[{count}]", prefix="identifier_", rows=count)


_INSERT_CONFLICTS = Statement(
    insert(_c),
    name="profiles.insert_conflicts",
    keys=[c.name for c in _c.columns if c.name != "id"],
)


def normalize_email(raw: str | None) -> str | None:
    """Lower-cased, trimmed email; None when it cannot be an address."""
    if not raw:
        return None
    email = raw.strip().lower()
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or " " in email:
        return None
    return email


def normalize_phone(raw: str | None, region: str) -> str | None:
    """E.164 phone number; None when it cannot be a phone number in ``region``."""
    if not raw or not raw.strip():
        return None
    return _e164(raw, region)


@functools.lru_cache(maxsize=65_536)
def _e164(raw: str, region: str) -> str | None:
    # Parsing costs tens of microseconds and returning customers bring the same numbers back.
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_card(raw: str | None) -> str | None:
    """A loyalty card number without spaces or dashes; None when empty."""
    if not raw:
        return None
    card = "".join(raw.split()).replace("-", "")
    return card or None


def claim_of(tx: wire.TransactionRequest, *, region: str) -> Claim:
    """Normalize what ``tx`` says about its customer."""
    customer = tx.customer or wire.Customer()
    # Dicts as ordered sets: first seen first, each once (the wire type bounds how many there are).
    emails: dict[str, None] = {}
    phones: dict[str, None] = {}
    for contact in customer.contacts or ():
        kind = (contact.type or "").strip().lower()
        email = contact.email or (contact.value if kind == "email" else None)
        phone = contact.phone or (contact.value if kind == "phone" else None)
        if normalized := normalize_email(email):
            emails.setdefault(normalized)
        if normalized := normalize_phone(phone, region):
            phones.setdefault(normalized)
    card = normalize_card(tx.loyalty.cardNumber if tx.loyalty and tx.loyalty.cardNumber else tx.cardNumber)
    pos_id = (customer.id or "").strip() or None
    identifiers = (
        ([Identifier("card", card)] if card else [])
        + ([Identifier("pos", pos_id)] if pos_id else [])
        + [Identifier("email", e) for e in emails]
        + [Identifier("phone", p) for p in phones]
    )
    person = Person(
        first_name=_clean(customer.firstName),
        last_name=_clean(customer.lastName),
        email=next(iter(emails), None),
        phone=next(iter(phones), None),
        gender=_clean(customer.gender),
        birth_date=_date_part(customer.birthDate),
    )
    return Claim(tuple(identifiers), person)


def lock_names(scope: Scope, claim: Claim) -> list[str]:
    """One lock name per identifier of ``claim``: sales naming the same identifier take turns.

    Taken before the identifiers are looked up, so the second of two concurrent first sales of a
    customer finds the profile the first created instead of creating a second one.
    """
    return [
        f"identifier\0{scope.pos_system_id}\0{scope.company_id}\0{i.kind}\0{i.value}"
        for i in claim.identifiers
    ]


def match(claim: Claim, known: Mapping[Identifier, str]) -> Match:
    """Pick the profile of the strongest known identifier; classify the others (pure)."""
    owner = next((known[i] for i in claim.identifiers if i in known), None)
    new = tuple(i for i in claim.identifiers if i not in known)
    conflicts = tuple((i, known[i]) for i in claim.identifiers if i in known and known[i] != owner)
    return Match(profile_id=owner, new=new, conflicts=conflicts)


async def peek(
    tx: Tx, claim: Claim, scope: Scope, *, amount: Decimal | None, is_reversal: bool
) -> tuple[ProfileState, Match] | None:
    """The profile ``claim`` resolves to, as it will be after this transaction; writes nothing."""
    peeked = await _peek(tx, claim, scope, amount=amount, is_reversal=is_reversal)
    return None if peeked is None else peeked[:2]


async def _peek(
    tx: Tx,
    claim: Claim,
    scope: Scope,
    *,
    amount: Decimal | None,
    is_reversal: bool,
    found: Found | None = None,
) -> tuple[ProfileState, Match, Person | None] | None:
    """``peek``, with the stored details of a known profile (None for a new one).

    ``found``: the claim's known identifiers, when the caller looked them up already (``known``).
    """
    if not claim.identifiers:
        return None
    if found is None:
        found = await _known(tx, claim, scope)
    result = match(claim, {ident: stored.id for ident, stored in found.items()})
    visit = 0 if is_reversal else 1
    spend = spend_delta(amount, is_reversal)
    has_card = any(i.kind == "card" for i in claim.identifiers)
    if result.profile_id is None:
        return ProfileState(new_id(), claim.person, visit, spend, has_card, is_new=True), result, None
    stored = next(stored for stored in found.values() if stored.id == result.profile_id)
    state = ProfileState(
        stored.id,
        claim.person.over(stored.person),
        stored.visit_count + visit,
        stored.lifetime_spend + spend,
        has_card or stored.has_card,
    )
    return state, result, stored.person


async def resolve(
    tx: Tx,
    claim: Claim,
    merchant: Scope,
    *,
    transaction_id: str,
    amount: Decimal | None,
    is_reversal: bool,
    now: datetime,
    found: Found | None = None,
) -> ProfileState | None:
    """Find or create the profile of ``claim`` and record this transaction on it (None: anonymous).

    ``found``: the claim's known identifiers, when the caller looked them up already (``known``,
    in this transaction: on PostgreSQL its lock on the profiles is what makes the update safe).
    """
    peeked = await _peek(tx, claim, merchant, amount=amount, is_reversal=is_reversal, found=found)
    if peeked is None:
        return None
    scope = merchant._asdict()
    state, result, stored = peeked
    values = _row(state)
    if stored is None:
        await tx.defer(_INSERT_PROFILE, {**values, **scope, "created_at": now, "updated_at": now})
    else:
        values["pid"] = values.pop("id")
        renamed = (stored.first_name, stored.last_name) != (state.person.first_name, state.person.last_name)
        if not renamed:
            for column in _NAMES:
                del values[column]
        await tx.defer(_UPDATE_RENAMED if renamed else _UPDATE_PROFILE, {**values, "updated_at": now})
    if result.new:
        rows = [
            {**scope, "kind": i.kind, "value": i.value, "profile_id": state.id, "first_seen": now}
            for i in result.new
        ]
        write = _insert_identifiers(len(rows))
        await tx.defer(write, write.of_rows(rows))
    if result.conflicts:
        await tx.execute_many(
            _INSERT_CONFLICTS,
            [
                {
                    **scope,
                    "transaction_id": transaction_id,
                    "kind": ident.kind,
                    "value": ident.value,
                    "resolved_profile_id": state.id,
                    "other_profile_id": other,
                    "created_at": now,
                }
                for ident, other in result.conflicts
            ],
        )
    return state


def to_wire(state: ProfileState | None, *, sales_person: str | None) -> wire.Profile | None:
    """The seed's profile block."""
    if state is None:
        return None
    person = state.person
    return wire.Profile(
        id=state.id,
        firstName=person.first_name,
        lastName=person.last_name,
        customerEmail=person.email,
        customerPhone=person.phone,
        salesPerson=sales_person,
        gender=person.gender,
    )


Found = dict[Identifier, ProfileState]
"""The claim's identifiers already known, each with the profile it points at (``known_of``)."""


def known(claim: Claim, scope: Scope, dialect: str) -> Query[tuple[Identifier, ProfileState]] | None:
    """The query for the claim's known identifiers (``known_of`` reads its rows); None: anonymous.

    On PostgreSQL it locks the profiles it finds until the transaction ends.
    """
    if not claim.identifiers:
        return None
    values = sorted({ident.value for ident in claim.identifiers})
    params: dict[str, str] = {f"v{n}": value for n, value in enumerate(values)}
    params.update(pos=scope.pos_system_id, company=scope.company_id)
    return Query(_known_query(len(values), dialect), params)


def known_of(claim: Claim, rows: Iterable[tuple[Identifier, ProfileState]]) -> Found:
    """The rows of ``known``'s query that are the claim's identifiers (a value can be of two kinds)."""
    wanted = set(claim.identifiers)
    return {ident: stored for ident, stored in rows if ident in wanted}


async def _known(tx: Tx, claim: Claim, scope: Scope) -> Found:
    query = known(claim, scope, tx.dialect)
    return {} if query is None else known_of(claim, await tx.all(query.statement, query.params))


def _row(state: ProfileState) -> dict[str, object]:
    person = dict(zip(PERSON, _values(state.person), strict=True))
    return {"id": state.id, **person, "visit_count": state.visit_count,
            "lifetime_spend": state.lifetime_spend, "has_card": state.has_card}  # fmt: skip


def spend_delta(amount: Decimal | None, is_reversal: bool) -> Decimal:
    """What a transaction adds to its customer's lifetime spend (a reversal subtracts its amount)."""
    if amount is None:
        return Decimal(0)
    return -abs(amount) if is_reversal else amount


def _clean(value: str | None) -> str | None:
    return value.strip() or None if value else None


def _date_part(value: str | None) -> str | None:
    """``YYYY-MM-DD`` from an ISO date or date-time (the transaction validator checked the form)."""
    return value.strip()[:10] if value and value.strip() else None


# --- the merchant's view: finding customers, their identifiers and conflicts ---------------------------


class Shown(msgspec.Struct, frozen=True, rename="camel"):
    """A profile as the merchant sees it (contact data: never log it)."""

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


_SHOWN = [_p.c[name] for name in Shown.__struct_fields__]


def shown(conn: Connection, *, pos_system_id: str, company_id: str, profile_id: str) -> Shown | None:
    """One of the company's profiles (None: no such profile, or another company's)."""
    return tables.company_row(conn, Shown, _SHOWN, pos_system_id, company_id, profile_id)


def with_identifiers(
    conn: Connection,
    *,
    pos_system_id: str,
    company_id: str,
    values: Sequence[str],
    after: str | None,
    limit: int,
) -> list[Shown]:
    """The company's profiles holding any of ``values`` (normalised identifiers of any kind), by id.

    The identifiers by their primary key (it leads with the value), then the profiles by theirs.
    """
    holders = select(_i.c.profile_id).where(of_company(_i, pos_system_id, company_id), _i.c.value.in_(values))
    # The holders first, then their profiles by key: in one statement SQLite walked the company's
    # profiles to test each against the holders.
    ids = sorted({pid for pid in conn.execute(holders).scalars() if after is None or pid > after})[:limit]
    if not ids:
        return []
    query = (
        select(*_SHOWN).where(of_company(_p, pos_system_id, company_id), _p.c.id.in_(ids)).order_by(_p.c.id)
    )
    return [Shown(*row) for row in conn.execute(query)]


def named(
    conn: Connection,
    *,
    pos_system_id: str,
    company_id: str,
    words: Sequence[str],
    after: str | None,
    limit: int,
) -> list[Shown]:
    """The company's profiles whose first or last name starts with each of ``words`` (any case), by id.

    Walks the company's slice of ``ix_profiles_company_name``, which holds the names and the id.
    """
    where = [of_company(_p, pos_system_id, company_id)]
    # SQLite's LIKE ignores the case of ASCII letters by itself (lower() on each of the company's
    # names doubled the scan); PostgreSQL's ILIKE in the C collation does the same, and no more
    # (its locale's case folding took twice as long).
    postgres = conn.dialect.name == "postgresql"
    for word in words:
        pattern = _escape_like(word) + "%"
        where.append(
            or_(
                *(
                    column.collate("C").ilike(pattern, escape="\\")
                    if postgres
                    else column.like(pattern, escape="\\")
                    for column in (_p.c.first_name, _p.c.last_name)
                )
            )
        )
    if after is not None:
        where.append(_p.c.id > after)
    # Every match's id, then the page in Python: asked for the first ids in order, PostgreSQL walked
    # the primary key of every company's profiles, testing each (600 ms when nothing matched).
    matched = sorted(conn.execute(select(_p.c.id).where(*where)).scalars())[:limit]
    if not matched:
        return []
    query = select(*_SHOWN).where(_p.c.id.in_(matched)).order_by(_p.c.id)
    return [Shown(*row) for row in conn.execute(query)]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Known(msgspec.Struct, frozen=True, rename="camel"):
    """An identifier of a profile, and when it was first seen."""

    kind: str
    """``card``, ``pos`` (the POS's customer id), ``email``, ``phone``."""
    value: str
    first_seen: datetime


def identifiers_of(conn: Connection, *, pos_system_id: str, company_id: str, profile_id: str) -> list[Known]:
    """Every identifier of a profile, oldest first (``ix_profile_identifiers_profile``)."""
    query = (
        select(_i.c.kind, _i.c.value, _i.c.first_seen)
        .where(
            _i.c.profile_id == profile_id, _i.c.pos_system_id == pos_system_id, _i.c.company_id == company_id
        )
        .order_by(_i.c.first_seen, _i.c.kind)
    )
    return [Known(*row) for row in conn.execute(query)]


class Conflict(msgspec.Struct, frozen=True, rename="camel"):
    """An identifier of one sale that pointed at two profiles (recorded, never merged)."""

    transaction_id: str
    kind: str
    value: str
    resolved_profile_id: str
    other_profile_id: str
    created_at: datetime


def conflicts_of(
    conn: Connection, *, pos_system_id: str, company_id: str, profile_id: str, limit: int
) -> list[Conflict]:
    """The conflicts a profile is on either side of, newest first.

    Read by scanning the table: conflicts are rare (an identifier typed at the till that another
    profile already holds), so no index is written for them.
    """
    c = _c
    query = (
        select(
            c.c.transaction_id,
            c.c.kind,
            c.c.value,
            c.c.resolved_profile_id,
            c.c.other_profile_id,
            c.c.created_at,
        )
        .where(
            of_company(c, pos_system_id, company_id),
            or_(c.c.resolved_profile_id == profile_id, c.c.other_profile_id == profile_id),
        )
        .order_by(c.c.created_at.desc(), c.c.id.desc())
        .limit(limit)
    )
    return [Conflict(*row) for row in conn.execute(query)]
