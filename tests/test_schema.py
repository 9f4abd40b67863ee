"""The Alembic migrations, applied to an empty database, build exactly ``store/tables.py``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Connection, Integer, MetaData, text

from cmc.store import migrate, tables
from cmc.store.database import Database


def drift(conn: Connection, metadata: MetaData) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migrations_build_the_declared_schema(database_url: str) -> None:
    db = Database.open(database_url)
    try:
        await asyncio.to_thread(migrate.upgrade, db)
        assert await asyncio.to_thread(db.run_sync, drift, tables.metadata) == []
        # The comparison sees a difference when there is one.
        changed = MetaData(naming_convention=tables.metadata.naming_convention)
        for table in tables.metadata.tables.values():
            table.to_metadata(changed)
        changed.tables["meta"].append_column(Column("extra", Integer))
        found = await asyncio.to_thread(db.run_sync, drift, changed)
        assert [(d[0], d[2], d[3].name) for d in found] == [("add_column", "meta", "extra")]
    finally:
        await db.close()


async def test_each_companys_applied_setup_becomes_its_version_1(database_url: str) -> None:
    """A database from before versions: ``companies.config`` moves to ``marketing_versions``, live."""
    db = Database.open(database_url)
    rule = {"name": "r", "priority": 0, "then": {"qrWidget": 1}}
    setup = {"widgets": [], "cfsTemplates": [], "messageTemplates": [], "rules": [rule]}
    company = "INSERT INTO companies (pos_system_id, id, name, config) VALUES ('pax', 'comp5', 'Green', :c)"
    pos = "INSERT INTO pos_systems (id, name, status, settings) VALUES ('pax', 'PAX', 'Accepted', '{}')"
    location = ("INSERT INTO locations (pos_system_id, id, company_id, name, timezone, country) "
                "VALUES ('pax', 'loc5', 'comp5', 'Downtown', 'UTC', 'US')")  # fmt: skip

    def before_versions(conn: Connection) -> None:
        command.upgrade(migrate.alembic_config(conn), "head")
        command.downgrade(migrate.alembic_config(conn), "0003")  # (test databases come migrated)
        conn.execute(text(pos))
        conn.execute(text(company), {"c": json.dumps(setup)})
        conn.execute(text(location))

    def locations(conn: Connection) -> int:
        return int(conn.execute(text("SELECT count(*) FROM locations")).scalar_one())

    def moved(conn: Connection) -> list[Any]:
        return list(conn.execute(text(
            "SELECT v.version, v.source, v.document, a.version FROM marketing_versions v "
            "JOIN marketing_active a ON a.pos_system_id = v.pos_system_id AND a.company_id = v.company_id"
        )))  # fmt: skip

    try:
        await asyncio.to_thread(db.run_sync, before_versions)
        await asyncio.to_thread(migrate.upgrade, db)
        [(version, source, document, active)] = await asyncio.to_thread(db.run_sync, moved)
        document = json.loads(document) if isinstance(document, str) else document
        assert (version, source, active, document) == (1, "cli", 1, setup)
        # Nothing the companies hold went with the column (on SQLite a copied table would cascade).
        assert await asyncio.to_thread(db.run_sync, locations) == 1
    finally:
        await db.close()
