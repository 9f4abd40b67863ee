"""A company's marketing, versioned: the one layer the merchant API and ``cmc apply`` change it through.

Every change is a plain Core function ``fn(conn, ...)`` that writes the version, moves the active
pointer, records its audit entry and bumps the registry version in the caller's one transaction (so
every process reloads its snapshot, at once on PostgreSQL through NOTIFY). The API runs them with
``db.write`` (through ``idempotency.once``); ``cmc apply`` calls ``apply_document`` inside its own
transaction.

- A draft is validated as a whole first (``check_draft``): every problem at once, each with the
  path of its field, checked against the company's current locations.
- Activation is compare-and-set on the active version (``If-Match``): a stale one is 412.
  Activating an older version is the rollback.
- ``cmc apply`` makes a version (source ``cli``) only when the file's marketing sections differ
  from what the last apply wrote, so re-applying an unchanged file never undoes a merchant's
  activation.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from cmc import stored_text
from cmc.errors import PreconditionFailed, RegistryError, ValidationFailed, VersionNotFound, VersionUnfit
from cmc.merchant import audit, changes, versions, wire
from cmc.merchant.versions import Version
from cmc.merchant.wire import Source
from cmc.registry import setup
from cmc.registry import store as registry_store
from cmc.registry.setup import Document


@dataclass(frozen=True)
class Actor:
    """Who makes a change, as the audit trail names it, and through what."""

    name: str
    """``client:<clientId>``, ``user:<email>`` or ``cmc apply``."""
    source: Source


APPLY = Actor("cmc apply", "cli")


@dataclass(frozen=True)
class Activation:
    """The outcome of an activation: the version now live and the one before it."""

    version: int
    previous: int | None
    changed: bool
    """False when the version was already the active one (nothing written)."""


def problems_by_field(problems: list[setup.Problem]) -> dict[str, list[str]]:
    """Problems as the API's per-field ``errors``."""
    errors: dict[str, list[str]] = {}
    for problem in problems:
        errors.setdefault(problem.field or "document", []).append(setup.describe(problem))
    return errors


def check_draft(raw: object, *, locations: Collection[str]) -> Document:
    """The validated document of a draft, or ``ValidationFailed`` naming every problem at once."""
    if not isinstance(raw, Mapping):
        raise ValidationFailed(errors={"document": ["must be an object with the marketing sections"]})
    try:
        # Every way in (API, console, CLI) comes through here: a NUL would reach PostgreSQL's JSON.
        nul = stored_text.nul_paths(raw)
        document, problems = setup.validate(raw, locations=locations)
    except RecursionError:
        raise ValidationFailed(errors={"document": ["nests too deeply"]}) from None
    if problems or nul:
        errors = problems_by_field(problems)
        for path in nul:
            errors.setdefault(path, []).append(stored_text.NUL_PROBLEM)
        count = len(problems) + len(nul)
        raise ValidationFailed(f"The document has {count} problem{'s' if count > 1 else ''}.", errors=errors)
    return document


def active(conn: Connection, pos_system_id: str, company_id: str) -> Version:
    """The live version (every company has one once applied)."""
    found = versions.active(conn, pos_system_id, company_id)
    if found is None:
        raise VersionNotFound("This company has no active marketing version yet.")
    return found


def listing(conn: Connection, pos_system_id: str, company_id: str) -> list[Version]:
    """Every version of the company, newest first."""
    return versions.listing(conn, pos_system_id, company_id)


def version(conn: Connection, pos_system_id: str, company_id: str, number: int) -> Version:
    """Version ``number`` of the company, or ``VersionNotFound``."""
    found = versions.get(conn, pos_system_id, company_id, number)
    if found is None:
        raise VersionNotFound(f"This company has no marketing version {number}.")
    return found


def create_draft(
    conn: Connection,
    pos_system_id: str,
    company_id: str,
    document: Document,
    *,
    actor: Actor,
    note: str | None,
    now: datetime,
) -> int:
    """Store ``document`` (validated by ``check_draft``) as a new draft; returns its number."""
    live = versions.active(conn, pos_system_id, company_id)
    data = document.to_data()
    number = versions.create(
        conn, pos_system_id, company_id, data, source=actor.source, created_by=actor.name, note=note, now=now
    )
    against = f"against active {live.version}: " if live else ""
    summary = f"draft {number} {against}{changes.summary(live.document if live else None, data)}"
    _record(conn, pos_system_id, company_id, actor, "draft", number, summary, now)
    return number


def activate(
    conn: Connection,
    pos_system_id: str,
    company_id: str,
    number: int,
    *,
    expected: Collection[int] | None,
    actor: Actor,
    locations: Collection[str],
    now: datetime,
) -> Activation:
    """Make version ``number`` live if the active one is among ``expected`` (``If-Match``; None: ``*``)."""
    target = version(conn, pos_system_id, company_id, number)
    live = active(conn, pos_system_id, company_id)
    if expected is not None and live.version not in expected:
        named = ", ".join(str(n) for n in sorted(expected)) or "no version"
        raise PreconditionFailed(f"The active version is {live.version}, not {named}.")
    if number == live.version:
        return Activation(number, live.version, changed=False)
    _, problems = setup.validate(target.document, locations=locations)
    if problems:
        raise VersionUnfit(
            f"Version {number} no longer fits this company's registry.", errors=problems_by_field(problems)
        )
    if not versions.move_active(conn, pos_system_id, company_id, to=number, expected=live.version, now=now):
        raise PreconditionFailed(f"Another activation replaced version {live.version} first.")
    summary = (
        f"version {number} active (was {live.version}): {changes.summary(live.document, target.document)}"
    )
    _record(conn, pos_system_id, company_id, actor, "activate", number, summary, now)
    registry_store.bump_version(conn)
    return Activation(number, live.version, changed=True)


def apply_document(
    conn: Connection,
    pos_system_id: str,
    company_id: str,
    document: Document,
    *,
    locations: Collection[str],
    now: datetime,
) -> bool:
    """``cmc apply``'s path: a new live version when the file's sections changed; True when it made one.

    Whatever stays live must still fit the file's locations (a merchant's version naming a location
    the file removes is refused: nothing is applied).
    """
    data = document.to_data()
    last = versions.last_from(conn, pos_system_id, company_id, "cli")
    live = versions.active(conn, pos_system_id, company_id)
    made = last is None or last.document != data
    if made:
        number = versions.create(
            conn, pos_system_id, company_id, data, source="cli", created_by=APPLY.name, note=None, now=now
        )
        versions.move_active(
            conn, pos_system_id, company_id, to=number, expected=live.version if live else None, now=now
        )
        was = f" (was {live.version})" if live else ""
        summary = f"version {number} active{was}: {changes.summary(live.document if live else None, data)}"
        _record(conn, pos_system_id, company_id, APPLY, "apply", number, summary, now)
    elif live is not None and live.document != data:
        _refuse_unfit(live, locations, f"{pos_system_id}/{company_id}")
    return made


def _record(
    conn: Connection,
    pos_system_id: str,
    company_id: str,
    actor: Actor,
    action: wire.Action,
    number: int,
    summary: str,
    now: datetime,
) -> None:
    audit.record(
        conn,
        pos_system_id,
        company_id,
        wire.AuditEntry(now, actor.name, actor.source, action, number, summary),
    )


def _refuse_unfit(live: Version, locations: Collection[str], company: str) -> None:
    _, problems = setup.validate(live.document, locations=locations)
    if problems:
        first = problems[0]
        raise RegistryError(
            f"company {company}: its active marketing version {live.version} (from {live.source}) "
            f"{first.field}: {setup.describe(first)}; activate another version first"
        )
