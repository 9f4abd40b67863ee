"""Customer profiles: recognise the customer of a sale, or create their profile.

Identifiers, strongest first: loyalty card, POS customer id, email (lower-cased), phone (E.164, the
location's country as default region). Profiles belong to one company (merchant account). The
strongest identifier already known decides the profile; identifiers not yet known are attached to it;
an identifier that already belongs to another profile is recorded as a conflict and left where it is
(a claim typed at the till never merges two profiles).

``identifiers_of`` and ``match`` are pure; ``resolve`` does the store calls.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

import phonenumbers
from sqlalchemy import Connection, bindparam, insert, select, update

from cmc.ids import new_id
from cmc.store import tables
from cmc.store.prepared import Prepared
from cmc_client import wire

KINDS = ("card", "pos", "email", "phone")
"""Identifier kinds in matching priority order."""

# Built once: constructing a Core statement per call costs more than executing it.
_p = tables.profiles
_i = tables.profile_identifiers
_STORED = (_p.c.id, _p.c.first_name, _p.c.last_name, _p.c.email, _p.c.phone, _p.c.gender, _p.c.birth_date,
           _p.c.visit_count, _p.c.lifetime_spend, _p.c.has_card)  # fmt: skip


class Stored(NamedTuple):
    """A stored profile, as matching needs it."""

    id: str
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    gender: str | None
    birth_date: str | None
    visit_count: int
    lifetime_spend: Decimal
    has_card: bool


@functools.cache
def _known_query(count: int) -> Prepared:
    """Identifiers and the profiles they point at, in one round trip, for ``count`` values."""
    return Prepared(
        select(_i.c.kind, _i.c.value, *_STORED)
        .join(_p, _p.c.id == _i.c.profile_id)
        .where(
            _i.c.pos_system_id == bindparam("pos"),
            _i.c.company_id == bindparam("company"),
            _i.c.value.in_([bindparam(f"v{n}") for n in range(count)]),
        )
        # PostgreSQL: concurrent sales of one customer queue here, so visit counts and per-customer
        # rule limits see each other (SQLite's single writer already serializes them).
        .with_for_update(of=_p)
    )


_INSERT_PROFILE = Prepared(insert(_p), keys=[c.name for c in _p.columns])
_UPDATE_PROFILE = Prepared(
    update(_p)
    .where(_p.c.id == bindparam("pid"))
    .values(
        first_name=bindparam("first_name"),
        last_name=bindparam("last_name"),
        email=bindparam("email"),
        phone=bindparam("phone"),
        gender=bindparam("gender"),
        birth_date=bindparam("birth_date"),
        visit_count=bindparam("visit_count"),
        lifetime_spend=bindparam("lifetime_spend"),
        has_card=bindparam("has_card"),
        updated_at=bindparam("updated_at"),
    )
)
_INSERT_IDENTIFIERS = Prepared(insert(_i), keys=[c.name for c in _i.columns])
_INSERT_CONFLICTS = Prepared(
    insert(tables.profile_conflicts),
    keys=[c.name for c in tables.profile_conflicts.columns if c.name != "id"],
)


@dataclass(frozen=True)
class Identifier:
    """A normalized customer identifier."""

    kind: str
    value: str


@dataclass(frozen=True)
class Claim:
    """What a transaction says about its customer, normalized."""

    identifiers: tuple[Identifier, ...]
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    birth_date: str | None
    gender: str | None


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
    """The resolved profile after this transaction, as the response and the rules see it."""

    id: str
    is_new: bool
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    gender: str | None
    birth_date: str | None
    visit_count: int
    lifetime_spend: Decimal
    has_card: bool


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
    emails: list[str] = []
    phones: list[str] = []
    for contact in customer.contacts or ():
        kind = (contact.type or "").strip().lower()
        email = contact.email or (contact.value if kind == "email" else None)
        phone = contact.phone or (contact.value if kind == "phone" else None)
        if (normalized := normalize_email(email)) and normalized not in emails:
            emails.append(normalized)
        if (normalized := normalize_phone(phone, region)) and normalized not in phones:
            phones.append(normalized)
    card = normalize_card(tx.loyalty.cardNumber if tx.loyalty and tx.loyalty.cardNumber else tx.cardNumber)
    pos_id = (customer.id or "").strip() or None
    identifiers = (
        ([Identifier("card", card)] if card else [])
        + ([Identifier("pos", pos_id)] if pos_id else [])
        + [Identifier("email", e) for e in emails]
        + [Identifier("phone", p) for p in phones]
    )
    return Claim(
        identifiers=tuple(identifiers),
        first_name=_clean(customer.firstName),
        last_name=_clean(customer.lastName),
        email=emails[0] if emails else None,
        phone=phones[0] if phones else None,
        birth_date=_date_part(customer.birthDate),
        gender=_clean(customer.gender),
    )


def match(claim: Claim, known: Mapping[Identifier, str]) -> Match:
    """Pick the profile of the strongest known identifier; classify the others (pure)."""
    owner = next((known[i] for i in claim.identifiers if i in known), None)
    new = tuple(i for i in claim.identifiers if i not in known)
    conflicts = tuple((i, known[i]) for i in claim.identifiers if i in known and known[i] != owner)
    return Match(profile_id=owner, new=new, conflicts=conflicts)


def peek(
    conn: Connection,
    claim: Claim,
    *,
    pos_system_id: str,
    company_id: str,
    amount: Decimal | None,
    is_reversal: bool,
) -> tuple[ProfileState, Match] | None:
    """The profile ``claim`` resolves to, as it will be after this transaction; writes nothing."""
    if not claim.identifiers:
        return None
    known = _known(conn, claim.identifiers, pos_system_id=pos_system_id, company_id=company_id)
    result = match(claim, {ident: row.id for ident, row in known.items()})
    visit = 0 if is_reversal else 1
    spend = _spend_delta(amount, is_reversal)
    has_card = any(i.kind == "card" for i in claim.identifiers)
    if result.profile_id is None:
        state = ProfileState(
            id=new_id(),
            is_new=True,
            first_name=claim.first_name,
            last_name=claim.last_name,
            email=claim.email,
            phone=claim.phone,
            gender=claim.gender,
            birth_date=claim.birth_date,
            visit_count=visit,
            lifetime_spend=spend,
            has_card=has_card,
        )
        return state, result
    row = next(row for row in known.values() if row.id == result.profile_id)
    state = ProfileState(
        id=row.id,
        is_new=False,
        first_name=claim.first_name or row.first_name,
        last_name=claim.last_name or row.last_name,
        email=claim.email or row.email,
        phone=claim.phone or row.phone,
        gender=claim.gender or row.gender,
        birth_date=claim.birth_date or row.birth_date,
        visit_count=row.visit_count + visit,
        lifetime_spend=row.lifetime_spend + spend,
        has_card=has_card or row.has_card,
    )
    return state, result


def resolve(
    conn: Connection,
    claim: Claim,
    *,
    pos_system_id: str,
    company_id: str,
    transaction_id: str,
    amount: Decimal | None,
    is_reversal: bool,
    now: datetime,
) -> ProfileState | None:
    """Find or create the profile of ``claim`` and record this transaction on it (None: anonymous)."""
    scope = {"pos_system_id": pos_system_id, "company_id": company_id}
    peeked = peek(conn, claim, **scope, amount=amount, is_reversal=is_reversal)
    if peeked is None:
        return None
    state, result = peeked
    if state.is_new:
        _INSERT_PROFILE.execute(conn, {**_row(state), **scope, "created_at": now, "updated_at": now})
    else:
        values = _row(state)
        values["pid"] = values.pop("id")
        _UPDATE_PROFILE.execute(conn, {**values, "updated_at": now})
    if result.new:
        _INSERT_IDENTIFIERS.execute_many(
            conn,
            [
                {**scope, "kind": i.kind, "value": i.value, "profile_id": state.id, "first_seen": now}
                for i in result.new
            ],
        )
    if result.conflicts:
        _INSERT_CONFLICTS.execute_many(
            conn,
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
    return wire.Profile(
        id=state.id,
        firstName=state.first_name,
        lastName=state.last_name,
        customerEmail=state.email,
        customerPhone=state.phone,
        salesPerson=sales_person,
        gender=state.gender,
    )


def _known(
    conn: Connection, identifiers: Sequence[Identifier], *, pos_system_id: str, company_id: str
) -> dict[Identifier, Stored]:
    """The known identifiers among ``identifiers``, each with its profile."""
    values = sorted({ident.value for ident in identifiers})
    params: dict[str, str] = {f"v{n}": value for n, value in enumerate(values)}
    params.update(pos=pos_system_id, company=company_id)
    wanted = set(identifiers)
    known = {}
    for kind, value, *profile in _known_query(len(values)).all(conn, params):
        if (ident := Identifier(kind, value)) in wanted:
            stored = Stored(*profile)
            # Raw driver values: SQLite hands back text for decimals and integers for booleans.
            known[ident] = stored._replace(
                lifetime_spend=Decimal(stored.lifetime_spend), has_card=bool(stored.has_card)
            )
    return known


def _row(state: ProfileState) -> dict[str, object]:
    return {
        "id": state.id,
        "first_name": state.first_name,
        "last_name": state.last_name,
        "email": state.email,
        "phone": state.phone,
        "gender": state.gender,
        "birth_date": state.birth_date,
        "visit_count": state.visit_count,
        "lifetime_spend": state.lifetime_spend,
        "has_card": state.has_card,
    }


def _spend_delta(amount: Decimal | None, is_reversal: bool) -> Decimal:
    if amount is None:
        return Decimal(0)
    return -abs(amount) if is_reversal else amount


def _clean(value: str | None) -> str | None:
    return value.strip() or None if value else None


def _date_part(value: str | None) -> str | None:
    """``YYYY-MM-DD`` from an ISO date or date-time (the transaction validator checked the form)."""
    return value.strip()[:10] if value and value.strip() else None
