"""``cmc apply FILE``: make the database hold what a parsed registry declares.

Idempotent and declarative per POS system: a POS system named in the file ends up exactly as written
(its companies, locations, terminals and clients missing from the file are removed); POS systems not
in the file are left alone; transactions, sessions and profiles are never deleted. The writes share
one database transaction; the file was validated as a whole before (``spec.parse``).
"""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import Connection

from cmc import credentials
from cmc.registry import store
from cmc.registry.spec import PosSystemSpec, Registry
from cmc.registry.store import ApplyReport


def apply(conn: Connection, registry: Registry) -> ApplyReport:
    """Make the registry tables match ``registry`` for every POS system it names."""
    report = ApplyReport()
    for pos in registry.posSystems:
        _sync_pos_system(conn, pos, registry, report)
    if report.changed:
        store.bump_version(conn)
    return report


def _sync_pos_system(conn: Connection, pos: PosSystemSpec, registry: Registry, report: ApplyReport) -> None:
    scope = {"pos_system_id": pos.id}
    pos_row = {
        "id": pos.id,
        "name": pos.name,
        "status": pos.status,
        "settings": msgspec.to_builtins(pos.settings),
    }
    store.sync_rows(conn, "pos_systems", [pos_row], scope={"id": pos.id}, report=report)
    companies = [
        {
            "pos_system_id": pos.id,
            "id": c.id,
            "name": c.name,
            "config": registry.setups[(pos.id, c.id)].to_data(),
        }
        for c in pos.companies
    ]
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


def _client_rows(conn: Connection, pos: PosSystemSpec) -> list[dict[str, Any]]:
    """Desired client rows, keeping the stored hash when the secret still verifies (hashes are salted)."""
    stored = store.client_hashes(conn, [c.clientId for c in pos.clients])
    rows = []
    for client in pos.clients:
        old = stored.get(client.clientId)
        keep = old is not None and credentials.verify_secret(client.secret, old)
        secret_hash = old if keep and old else credentials.hash_secret(client.secret)
        rows.append({"client_id": client.clientId, "pos_system_id": pos.id, "secret_hash": secret_hash})
    return rows
