"""The registry's rows: every statement on ``pos_systems``, ``companies``, ``locations``,
``terminals``, ``api_clients`` and ``console_users``, and the registry version in ``meta``.

``apply`` writes them (``sync_rows`` makes a table hold exactly the desired rows within a scope);
the snapshot reads them all (``load_rows``). Nothing else touches these tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Row,
    ScalarSelect,
    Table,
    and_,
    delete,
    insert,
    select,
    update,
)

from cmc.merchant import versions
from cmc.store import meta, notifications, tables

VERSION_KEY = "registry_version"

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        tables.pos_systems,
        tables.companies,
        tables.locations,
        tables.terminals,
        tables.api_clients,
        tables.console_users,
    )
}


@dataclass
class ApplyReport:
    """What ``apply`` changed, per table: rows inserted, updated and deleted."""

    inserted: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """Anything at all was written."""
        return any(self.inserted.values()) or any(self.updated.values()) or any(self.deleted.values())

    def summary(self) -> str:
        """One line for the CLI."""
        if not self.changed:
            return "registry unchanged"
        parts = []
        for verb, counts in (
            ("inserted", self.inserted),
            ("updated", self.updated),
            ("deleted", self.deleted),
        ):
            parts += [f"{n} {table} {verb}" for table, n in counts.items() if n]
        return "registry updated: " + ", ".join(parts)


@dataclass(frozen=True)
class Rows:
    """Every registry row, as the snapshot reads them."""

    pos_systems: list[Row[Any]]
    companies: list[Row[Any]]
    locations: list[Row[Any]]
    terminals: list[Row[Any]]
    clients: list[Row[Any]]
    users: list[Row[Any]]
    version: int


def load_rows(conn: Connection) -> Rows:
    """Read the whole registry (one transaction: a consistent view)."""
    t = tables
    return Rows(
        pos_systems=list(conn.execute(select(t.pos_systems))),
        companies=list(conn.execute(select(t.companies))),
        locations=list(conn.execute(select(t.locations))),
        terminals=list(conn.execute(select(t.terminals))),
        clients=list(conn.execute(select(t.api_clients))),
        users=list(conn.execute(select(t.console_users))),
        version=current_version(conn),
    )


def client_hashes(conn: Connection, client_ids: list[str]) -> dict[str, str]:
    """The stored secret hash of each of ``client_ids`` that exists."""
    c = tables.api_clients
    return dict(
        conn.execute(select(c.c.client_id, c.c.secret_hash).where(c.c.client_id.in_(client_ids))).all()
    )


def user_hashes(conn: Connection, pos_system_id: str) -> dict[tuple[str, str], str]:
    """(companyId, email) → the stored password hash of each console user of the POS system."""
    u = tables.console_users
    rows = conn.execute(
        select(u.c.company_id, u.c.email, u.c.password_hash).where(u.c.pos_system_id == pos_system_id)
    )
    return {(company, email): password_hash for company, email, password_hash in rows}


def sync_rows(
    conn: Connection,
    table: str,
    desired: Iterable[dict[str, Any]],
    *,
    scope: Mapping[str, str],
    report: ApplyReport,
) -> None:
    """Insert, update and delete rows of ``table`` within ``scope`` so that it holds ``desired``."""
    t = TABLES[table]
    keys = [c.name for c in t.primary_key.columns]
    where = [t.c[name] == value for name, value in scope.items()]
    existing = {
        tuple(row[k] for k in keys): dict(row) for row in conn.execute(select(t).where(*where)).mappings()
    }
    wanted = {tuple(row[k] for k in keys): row for row in desired}
    for counts in (report.inserted, report.updated, report.deleted):
        counts.setdefault(table, 0)
    for key, row in wanted.items():
        old = existing.get(key)
        pk_match = [t.c[k] == v for k, v in zip(keys, key, strict=True)]
        if old is None:
            # A key outside the scope (a client id moving between POS systems) is updated in place.
            if conn.execute(update(t).where(*pk_match).values(**row)).rowcount:
                report.updated[table] += 1
            else:
                conn.execute(insert(t).values(**row))
                report.inserted[table] += 1
        elif any(old.get(col) != value for col, value in row.items()):
            conn.execute(update(t).where(*pk_match).values(**row))
            report.updated[table] += 1
    for key in existing.keys() - wanted.keys():
        conn.execute(delete(t).where(*[t.c[k] == v for k, v in zip(keys, key, strict=True)]))
        report.deleted[table] += 1


def location_window_columns(
    pos_system_id: ColumnElement[str], location_id: ColumnElement[str]
) -> tuple[ScalarSelect[Any], ScalarSelect[Any]]:
    """The time zone and quiet hours of the location these columns name, for use inside a query.

    The outbox reads them when it claims a message, so an edited window applies to queued messages.
    """
    loc = tables.locations
    same = and_(loc.c.pos_system_id == pos_system_id, loc.c.id == location_id)
    return (
        select(loc.c.timezone).where(same).scalar_subquery(),
        select(loc.c.quiet_hours).where(same).scalar_subquery(),
    )


def company_look_columns(
    pos_system_id: ColumnElement[str], company_id: ColumnElement[str]
) -> tuple[ScalarSelect[Any], ScalarSelect[Any]]:
    """The name and branding of the company these columns name, for use inside a query.

    The outbox reads them when it claims a message, so a message wears the company's current look.
    """
    c = tables.companies
    same = and_(c.c.pos_system_id == pos_system_id, c.c.id == company_id)
    return (
        select(c.c.name).where(same).scalar_subquery(),
        versions.active_branding_column(pos_system_id, company_id),
    )


def current_version(conn: Connection) -> int:
    """The registry's version: bumped by every change, so every process reloads its snapshot."""
    return int(meta.get(conn, VERSION_KEY) or 0)


def bump_version(conn: Connection) -> int:
    """Mark the registry changed; on PostgreSQL every process hears it at commit."""
    version = meta.increment(conn, VERSION_KEY)
    notifications.notify(conn, notifications.REGISTRY_CHANNEL)
    return version


def company_keys(conn: Connection) -> list[tuple[str, str]]:
    """Every company, as (posSystemId, companyId)."""
    c = tables.companies
    return [(pos, company) for pos, company in conn.execute(select(c.c.pos_system_id, c.c.id))]


def company_countries(conn: Connection, pos_system_id: str, company_id: str) -> list[str]:
    """The countries of a company's locations (the default regions of its customers' phone numbers)."""
    loc = tables.locations
    query = (
        select(loc.c.country)
        .where(loc.c.pos_system_id == pos_system_id, loc.c.company_id == company_id)
        .distinct()
        .order_by(loc.c.country)
    )
    return list(conn.execute(query).scalars())
