"""SQLite's write path: group commit of one loop turn's units, and WAL checkpoints off the loop.

Real SQLite files, the real ``Database``; the units run real statements of the schema.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cmc import cfs_feed, profiles
from cmc.errors import DuplicateKey, StoreError, StoreUnavailable
from cmc.screens import Screen
from cmc.store import checkpoints, migrate
from cmc.store.database import Database, SqliteDatabase
from cmc.store.driver import Tx

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database.open(f"sqlite:///{tmp_path / 'cmc.db'}")
    migrate.upgrade(database)
    yield database
    await database.close()


def _file(db: Database) -> str:
    assert isinstance(db, SqliteDatabase) and db.url.database
    return db.url.database


def _outside(db: Database, sql: str) -> list[Any]:
    """What another connection (another process, say) sees: committed rows only."""
    with sqlite3.connect(_file(db)) as conn:
        return conn.execute(sql).fetchall()


async def _event(tx: Tx, terminal: str) -> str:
    await cfs_feed.publish(tx, Screen("pax", "loc5", terminal), {"n": terminal}, now=NOW, wake=False)
    return terminal


async def _event_then_fail(tx: Tx, terminal: str) -> str:
    await _event(tx, terminal)
    raise ValueError("the unit fails after its write")


async def _profile(tx: Tx, profile_id: str) -> None:
    row = {
        "id": profile_id, "pos_system_id": "pax", "company_id": "comp5", "first_name": "Ada",
        "last_name": None, "email": None, "phone": None, "birth_date": None, "gender": None, "visit_count": 1,
        "lifetime_spend": Decimal(1), "has_card": False, "created_at": NOW, "updated_at": NOW,
    }  # fmt: skip
    await tx.defer(profiles._INSERT_PROFILE, row)  # SQLite: at once


def _terminals(db: Database) -> list[str]:
    return sorted(row[0] for row in _outside(db, "SELECT terminal_id FROM cfs_events"))


async def test_each_unit_of_a_turn_gets_its_own_result_once_committed(db: Database) -> None:
    units = [db.transact(_event, f"t{n}") for n in range(20)]
    assert await asyncio.gather(*units) == [f"t{n}" for n in range(20)]
    # Every caller was answered after the commit: another connection sees all twenty.
    assert _terminals(db) == sorted(f"t{n}" for n in range(20))


async def test_a_failing_unit_undoes_its_own_writes_only(db: Database) -> None:
    results = await asyncio.gather(
        db.transact(_event, "a"),
        db.transact(_event_then_fail, "bad"),
        db.transact(_event, "b"),
        db.transact(_event_then_fail, "bad-too"),
        return_exceptions=True,
    )
    assert results[0] == "a" and results[2] == "b"
    assert isinstance(results[1], ValueError) and isinstance(results[3], ValueError)
    assert _terminals(db) == ["a", "b"]


async def test_a_failing_first_unit_leaves_the_turn_to_the_others(db: Database) -> None:
    results = await asyncio.gather(
        db.transact(_event_then_fail, "bad"), db.transact(_event, "a"), return_exceptions=True
    )
    assert isinstance(results[0], ValueError) and results[1] == "a"
    assert _terminals(db) == ["a"]


async def test_the_same_key_twice_in_one_turn_is_a_duplicate_for_the_second(db: Database) -> None:
    results = await asyncio.gather(
        db.transact(_profile, "p-1"), db.transact(_profile, "p-1"), return_exceptions=True
    )
    assert results[0] is None and isinstance(results[1], DuplicateKey)
    assert _outside(db, "SELECT id FROM profiles") == [("p-1",)]


async def test_a_failed_commit_fails_every_unit_of_its_turn(db: Database) -> None:
    # A deferred foreign key is checked at COMMIT: the only way to make SQLite refuse a commit here.
    with sqlite3.connect(_file(db)) as conn:
        conn.executescript(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
            "CREATE TABLE child (parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);"
        )

    async def orphan(tx: Tx) -> None:
        await tx._execute("INSERT INTO child VALUES (42)", [])

    results = await asyncio.gather(
        db.transact(_event, "a"), db.transact(orphan), db.transact(_event, "b"), return_exceptions=True
    )
    assert all(isinstance(result, StoreError) for result in results), results
    assert _terminals(db) == []
    # The next turn is a fresh transaction.
    assert await db.transact(_event, "c") == "c"
    assert _terminals(db) == ["c"]


async def test_a_core_write_commits_the_open_turn_first(db: Database) -> None:
    def count(conn: Any) -> int:
        return int(conn.exec_driver_sql("SELECT count(*) FROM cfs_events").scalar())

    async def unit_then_write() -> tuple[str, int]:
        pending = asyncio.ensure_future(db.transact(_event, "a"))
        await asyncio.sleep(0)  # the unit has run; its turn is still open
        assert not pending.done()
        seen = await db.write(count)
        return await pending, seen

    assert await unit_then_write() == ("a", 1)


async def test_a_turn_has_a_bounded_number_of_units(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from cmc.store import database

    commits = 0
    original = database._Turn.commit

    def counted(turn: Any) -> None:
        nonlocal commits
        commits += 1
        original(turn)

    monkeypatch.setattr(database._Turn, "commit", counted)
    await asyncio.gather(*(db.transact(_event, f"t{n}") for n in range(database.MAX_UNITS_PER_TURN * 2 + 1)))
    assert commits == 3
    assert len(_terminals(db)) == database.MAX_UNITS_PER_TURN * 2 + 1


def _wal_index(db: Database) -> tuple[int, int]:
    """(frames in the WAL, frames copied back), read from the WAL index without checkpointing.

    The ``-shm`` layout is SQLite's documented WAL-index format: ``mxFrame`` at byte 16 of the header,
    ``nBackfill`` at byte 96 (native byte order).
    """
    raw = Path(_file(db) + "-shm").read_bytes()
    return int.from_bytes(raw[16:20], sys.byteorder), int.from_bytes(raw[96:100], sys.byteorder)


async def test_the_wal_is_checkpointed_by_its_thread_not_by_the_commits(db: Database) -> None:
    assert isinstance(db, SqliteDatabase)
    await db.transact(_event, "first")
    assert db._inline_conn is not None and db._checkpointer is not None
    raw = db._inline_conn.connection.dbapi_connection
    assert raw is not None
    assert raw.execute("PRAGMA wal_autocheckpoint").fetchone() == (checkpoints.BACKSTOP_PAGES,)
    for n in range(30):
        await asyncio.gather(*(db.transact(_event, f"t{n}-{i}") for i in range(20)))
    frames, copied = _wal_index(db)
    assert frames > copied  # the commits left their frames to the thread
    rounds = db._checkpointer.rounds
    deadline = time.monotonic() + 10
    # Both, not the copy alone: the round counts itself after its checkpoint returns, so the copy
    # can be seen done a moment before the count moves (a full suite run caught that moment).
    while (_wal_index(db)[1] < frames or db._checkpointer.rounds <= rounds) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert _wal_index(db) == (frames, frames) and db._checkpointer.rounds > rounds
    thread = db._checkpointer._thread
    await db.close()
    assert not thread.is_alive()


def test_the_backstop_is_far_above_what_a_round_leaves() -> None:
    # A round every half second at ~10,000 frames a second (a fast machine's sales) leaves ~5,000.
    assert checkpoints.BACKSTOP_PAGES >= 10 * 5_000 * checkpoints.INTERVAL_SECONDS * 2


async def test_a_closed_store_refuses_work_instead_of_reopening(db: Database) -> None:
    await db.close()
    with pytest.raises(StoreUnavailable):
        await db.transact(_event, "late")
    with pytest.raises(StoreUnavailable):
        await db.write(lambda conn: None)
