"""``cmc apply FILE``: make the database hold what a parsed registry declares.

Idempotent and declarative per POS system: a POS system named in the file ends up exactly as written
(its companies, locations, terminals, clients and console users missing from the file are removed);
POS systems not in the file are left alone; transactions, sessions and profiles are never deleted.
A company's marketing sections go through the merchant service like any API change: when they differ
from what the last apply wrote, they become a new version, active at once (source ``cli``), with an
audit entry. The writes share one database transaction; the file was validated as a whole before
(``spec.parse``).
"""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import Connection

from cmc import credentials
from cmc.clock import Clock, system_clock
from cmc.merchant import service
from cmc.profiles import normalize_email
from cmc.registry import store
from cmc.registry.spec import PosSystemSpec, Registry
from cmc.registry.store import ApplyReport


def apply(conn: Connection, registry: Registry, *, clock: Clock = system_clock) -> ApplyReport:
    """Make the registry tables match ``registry`` for every POS system it names."""
    report = ApplyReport()
    for pos in registry.posSystems:
        _sync_pos_system(conn, pos, registry, report, clock)
    if report.changed:
        store.bump_version(conn)
    return report


def _sync_pos_system(
    conn: Connection, pos: PosSystemSpec, registry: Registry, report: ApplyReport, clock: Clock
) -> None:
    scope = {"pos_system_id": pos.id}
    pos_row = {
        "id": pos.id,
        "name": pos.name,
        "status": pos.status,
        "settings": msgspec.to_builtins(pos.settings),
    }
    store.sync_rows(conn, "pos_systems", [pos_row], scope={"id": pos.id}, report=report)
    companies = [{"pos_system_id": pos.id, "id": c.id, "name": c.name} for c in pos.companies]
    store.sync_rows(conn, "companies", companies, scope=scope, report=report)
    locations: list[dict[str, Any]] = []
    terminals: list[dict[str, Any]] = []
    for company in pos.companies:
        for loc in company.locations:
            locations.append(
                {
                    "pos_system_id": pos.id,
                    "id": loc.id,
                    "company_id": company.id,
                    "name": loc.name,
                    "timezone": loc.timezone,
                    "country": loc.country.upper(),
                    "quiet_hours": loc.quietHours,
                }
            )
            terminals += [
                {"pos_system_id": pos.id, "location_id": loc.id, "id": term.id, "cfs": term.cfs}
                for term in loc.terminals
            ]
    store.sync_rows(conn, "locations", locations, scope=scope, report=report)
    store.sync_rows(conn, "terminals", terminals, scope=scope, report=report)
    store.sync_rows(conn, "api_clients", _client_rows(conn, pos), scope=scope, report=report)
    store.sync_rows(conn, "console_users", _user_rows(conn, pos), scope=scope, report=report)
    report.inserted.setdefault("marketing_versions", 0)
    for company in pos.companies:
        made = service.apply_document(
            conn,
            pos.id,
            company.id,
            registry.setups[(pos.id, company.id)],
            locations=[loc.id for loc in company.locations],
            now=clock(),
        )
        report.inserted["marketing_versions"] += made


def _client_rows(conn: Connection, pos: PosSystemSpec) -> list[dict[str, Any]]:
    """Desired client rows, POS and merchant ones (hashes are salted: a secret that still verifies
    keeps its stored hash, so re-applying changes nothing and issued tokens stay valid)."""
    wanted = [(c.clientId, c.secret, None, None) for c in pos.clients] + [
        (c.clientId, c.secret, company.id, c.role)
        for company in pos.companies
        for c in company.merchantClients
    ]
    stored = store.client_hashes(conn, [client_id for client_id, *_ in wanted])
    rows = []
    for client_id, secret, company_id, role in wanted:
        old = stored.get(client_id)
        keep = old is not None and credentials.verify_secret(secret, old)
        rows.append(
            {
                "client_id": client_id,
                "pos_system_id": pos.id,
                "secret_hash": old if keep and old else credentials.hash_secret(secret),
                "company_id": company_id,
                "role": role,
            }
        )
    return rows


def _user_rows(conn: Connection, pos: PosSystemSpec) -> list[dict[str, Any]]:
    """Console users: ``password`` hashed unless the stored hash verifies it; ``passwordHash`` kept."""
    stored = store.user_hashes(conn, pos.id)
    rows = []
    for company in pos.companies:
        for user in company.users:
            email = normalize_email(user.email) or user.email
            password_hash = user.passwordHash
            if password_hash is None:
                assert user.password is not None  # the file was checked: exactly one of the two
                old = stored.get((company.id, email))
                keep = old is not None and credentials.verify_password(user.password, old)
                password_hash = old if keep and old else credentials.hash_password(user.password)
            rows.append(
                {
                    "pos_system_id": pos.id,
                    "company_id": company.id,
                    "email": email,
                    "password_hash": password_hash,
                    "role": user.role,
                }
            )
    return rows
