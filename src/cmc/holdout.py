"""Holdouts: which customers a rule leaves out on purpose, so that its lift can be measured.

A rule with ``holdoutPercent: P`` (0 to 50) fires for every customer as usual, but for P% of its
customers (the holdout) nothing is shown or sent: the firing is recorded with variant ``holdout``
and its messages as ``suppressed`` (reason ``holdout``). The others are the ``treatment``.

The assignment is a hash, stored nowhere: a keyed BLAKE2b of the rule name and the profile id,
keyed by the company's salt, read as a bucket ``0 <= b < 10,000``; the customer is held out when
``b < P * 100``. So it is stable (the same customer and rule always land in the same bucket), it
differs from rule to rule (a customer held out of one rule is not held out of all), and nobody who
lacks the salt can predict it. The salt of a company is derived from one service secret kept in the
``meta`` table (generated on first start) and the company's key; nothing per customer is stored.
An anonymous sale has no profile id to hash: it is never held out (it gets the rule, as treatment),
and the lift, which follows customers, leaves it out.

Pure but for the two functions at the end, which keep the service secret (through ``store.meta``).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Literal, TypeAlias

from sqlalchemy import Connection

from cmc.rules.ruleset import BUCKETS
from cmc.store import meta
from cmc.store.database import Database

Variant: TypeAlias = Literal["treatment", "holdout"]
VARIANTS: tuple[Variant, ...] = ("treatment", "holdout")
META_KEY = "holdout_secret"
"""The ``meta`` key of the service secret every company's salt derives from."""


def company_salt(secret: bytes, pos_system_id: str, company_id: str) -> bytes:
    """The salt of one merchant account (POS system and company), derived from the service secret."""
    data = f"{pos_system_id}\0{company_id}".encode()
    return hashlib.blake2b(data, key=secret[:64], digest_size=32, person=b"cmc-holdout").digest()


def bucket(salt: bytes, rule: str, profile_id: str) -> int:
    """The customer's bucket for ``rule``: ``0 <= bucket < BUCKETS``, the same on every call."""
    digest = hashlib.blake2b(f"{rule}\0{profile_id}".encode(), key=salt[:64], digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def threshold(percent: int) -> int:
    """Buckets below this are held out."""
    return percent * BUCKETS // 100


def variant_of(salt: bytes, rule: str, profile_id: str, percent: int) -> Variant:
    """Whether this customer is in the rule's holdout or its treatment."""
    return "holdout" if bucket(salt, rule, profile_id) < threshold(percent) else "treatment"


# --- the service secret ---------------------------------------------------------------------------


def stored_secret(conn: Connection) -> bytes:
    """The service secret (empty until the first start made it: ``ensure_secret``)."""
    value = meta.get(conn, META_KEY)
    return bytes.fromhex(value) if value else b""


async def ensure_secret(db: Database) -> None:
    """Make the service secret unless there is one; two processes starting at once keep one."""

    def make(conn: Connection) -> None:
        meta.get_or_create(conn, META_KEY, secrets.token_hex(32))

    await db.write(make)
