"""The Alembic migrations, applied to an empty database, build exactly ``store/tables.py``."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Connection, Integer, MetaData

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
