"""Schema migrations: ``cmc migrate`` and ``cmc serve`` bring the database to the newest revision."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from cmc.store.database import Database

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(conn: Connection) -> Config:
    """An Alembic config bound to ``conn`` (no alembic.ini: the package knows where its scripts are)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def upgrade(db: Database) -> None:
    """Apply every pending migration."""
    db.run_sync(lambda conn: command.upgrade(alembic_config(conn), "head"))


def is_current(conn: Connection) -> bool:
    """The database is at the newest revision."""
    head = ScriptDirectory.from_config(alembic_config(conn)).get_current_head()
    return MigrationContext.configure(conn).get_current_revision() == head
