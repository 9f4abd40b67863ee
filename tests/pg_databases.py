"""Throw-away PostgreSQL databases for tests, cloned from one migrated template per test session.

Set ``CMC_TEST_POSTGRES_URL`` (a server URL whose user may create databases, e.g.
``postgresql://postgres@127.0.0.1:5432/test``) to run the store tests on PostgreSQL as well.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import asyncpg
from sqlalchemy.engine import make_url

from cmc.store import migrate
from cmc.store.database import Database

POSTGRES_URL = os.environ.get("CMC_TEST_POSTGRES_URL", "")
_lock = threading.Lock()
_template: str | None = None
_runner = ThreadPoolExecutor(1, thread_name_prefix="pg-admin")


def _admin(sql: str) -> None:
    """Run one statement on the server's maintenance database (outside any event loop)."""

    async def run() -> None:
        conn = await asyncpg.connect(_dsn(POSTGRES_URL))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    _runner.submit(asyncio.run, run()).result()


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _url_for(name: str) -> str:
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


def _ensure_template() -> str:
    global _template
    with _lock:
        if _template is None:
            name = f"cmc_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
            _admin(f'CREATE DATABASE "{name}"')
            db = Database.open(_url_for(name))
            try:
                _runner.submit(migrate.upgrade, db).result()
            finally:
                _runner.submit(asyncio.run, db.close()).result()
            _template = name
        return _template


def create() -> str:
    """A new, migrated, empty database; returns its URL."""
    name = f"cmc_t_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}" TEMPLATE "{_ensure_template()}"')
    return _url_for(name)


def drop(url: str) -> None:
    """Drop a database made by ``create`` (closing whatever still holds it)."""
    name = make_url(url).database
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def drop_template() -> None:
    """Drop the session's template (at the end of the run)."""
    global _template
    if _template is not None:
        _admin(f'DROP DATABASE IF EXISTS "{_template}" WITH (FORCE)')
        _template = None
