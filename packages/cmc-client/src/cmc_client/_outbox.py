"""The POS-side outbox: every tender is written here (fsync'd) before CMC is tried.

One SQLite file owned by the POS, in WAL mode with ``synchronous=FULL`` so a committed tender survives
a power cut. Rows drain oldest first. A row being delivered carries a lease (``lease_until``) so two
processes sharing the file (the POS and ``cmc-pos outbox drain``) never send it at the same time.
Time is always passed in (``now``, seconds since the epoch).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import msgspec

from cmc_client._errors import OutboxError

OutboxState = Literal["queued", "delivered", "rejected", "disabled", "not-accepted"]
"""An outbox row's state; the same words as :data:`cmc_client.TenderStatus`."""

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tender (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    transaction_id TEXT NOT NULL,
    company        TEXT NOT NULL,
    terminal_id    TEXT NOT NULL,
    location_id    TEXT NOT NULL,
    body           BLOB NOT NULL,
    state          TEXT NOT NULL,
    created_at     REAL NOT NULL,
    updated_at     REAL NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    lease_until    REAL,
    session_id     TEXT,
    last_error     TEXT,
    problem        BLOB,
    response       BLOB,
    UNIQUE (company, transaction_id)
);
CREATE INDEX IF NOT EXISTS tender_by_state ON tender (state, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_COLUMNS = (
    "id, transaction_id, company, terminal_id, location_id, body, state, created_at, updated_at,"
    " attempts, lease_until, session_id, last_error, problem, response"
)


class OutboxEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One tender in the outbox, as stored."""

    id: int
    transaction_id: str
    company: str
    terminal_id: str
    location_id: str
    body: bytes
    """The tender exactly as encoded once (every SendTransaction body is built from it)."""
    state: OutboxState
    created_at: float
    updated_at: float
    attempts: int
    lease_until: float | None
    session_id: str | None
    """The session the tender was (or is being) sent with; reused so a replay is identical."""
    last_error: str | None
    problem: bytes | None
    """CMC's problem+json body, for ``rejected``."""
    response: bytes | None
    """CMC's SendTransaction answer, for ``delivered``."""


class OutboxStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Counts per state, the age of the oldest queued tender and the last delivery error."""

    queued: int
    delivered: int
    rejected: int
    disabled: int
    not_accepted: int
    oldest_queued_age: float | None
    """Seconds since the oldest queued tender was written; ``None`` when nothing is queued."""
    last_error: str | None
    last_error_at: float | None


class Outbox:
    """A durable, ordered store of tenders in one SQLite file.

    Opening checks the file: a corrupt, unreadable or unwritable outbox raises :class:`OutboxError`
    here, never later as a silent drop. Safe to share between threads; several processes may share
    the file (SQLite locking plus row leases).
    """

    def __init__(self, path: str | Path, *, lease: float = 120.0) -> None:
        self.path = Path(path)
        self.lease = lease
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        try:
            self._prepare()
        except sqlite3.Error as exc:
            self._db.close()
            raise OutboxError(f"outbox {self.path} is not a usable SQLite file: {exc}") from exc

    def _prepare(self) -> None:
        db = self._db
        if db.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
            raise sqlite3.OperationalError("cannot switch to WAL journal mode")
        db.execute("PRAGMA synchronous=FULL")
        problems = [row[0] for row in db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError("integrity check failed: " + "; ".join(problems[:3]))
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"schema version {version} is newer than this SDK ({SCHEMA_VERSION})")
        db.executescript(_SCHEMA)
        # A real write proves the file and its directory are writable (WAL needs both).
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        with self._transaction():
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('opened', 'yes')")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox {self.path}: cannot {action}: {exc}") from exc

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    # --- writing -----------------------------------------------------------------------------

    def add(
        self,
        body: bytes,
        *,
        transaction_id: str,
        company: str,
        terminal_id: str,
        location_id: str,
        now: float,
        claim: bool = True,
    ) -> tuple[OutboxEntry, bool]:
        """Store a tender (committed and fsync'd before returning); return the row and whether it is new.

        With ``claim`` a new row is leased to the caller at once. A transactionId the outbox already
        holds (for ``company``) returns the existing row unchanged, whatever its body: whether it is the
        same sale is for the caller to decide.
        """
        lease_until = now + self.lease if claim else None
        with self._guard("store a tender"), self._transaction() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM tender WHERE company = ? AND transaction_id = ?",
                (company, transaction_id),
            ).fetchone()
            if row is not None:
                return _entry(row), False
            cursor = db.execute(
                "INSERT INTO tender (transaction_id, company, terminal_id, location_id, body, state,"
                " created_at, updated_at, lease_until) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?)"
                f" RETURNING {_COLUMNS}",
                (transaction_id, company, terminal_id, location_id, body, now, now, lease_until),
            )
            return _entry(cursor.fetchone()), True

    def claim(self, entry_id: int, *, now: float) -> OutboxEntry | None:
        """Lease a queued row for delivery; ``None`` if it is not queued or someone else holds it."""
        with self._guard("claim a tender"), self._transaction() as db:
            row = db.execute(
                "UPDATE tender SET lease_until = ? WHERE id = ? AND state = 'queued'"
                f" AND (lease_until IS NULL OR lease_until < ?) RETURNING {_COLUMNS}",
                (now + self.lease, entry_id, now),
            ).fetchone()
        return None if row is None else _entry(row)

    def claim_next(self, *, now: float, exclude: Collection[int] = ()) -> OutboxEntry | None:
        """Lease the oldest queued row nobody holds (skipping ``exclude``); ``None`` when there is none."""
        skip = ",".join(str(int(i)) for i in exclude) or "-1"
        with self._guard("claim a tender"), self._transaction() as db:
            row = db.execute(
                "UPDATE tender SET lease_until = ? WHERE id = (SELECT id FROM tender WHERE state = 'queued'"
                f" AND (lease_until IS NULL OR lease_until < ?) AND id NOT IN ({skip}) ORDER BY id LIMIT 1)"
                f" RETURNING {_COLUMNS}",
                (now + self.lease, now),
            ).fetchone()
        return None if row is None else _entry(row)

    def save_session(self, entry_id: int, session_id: str, *, now: float) -> None:
        """Remember the session a tender is about to be sent with (before it is sent)."""
        self._update(entry_id, now, "session_id = ?", (session_id,))

    def mark_delivered(self, entry_id: int, response: bytes, *, now: float) -> None:
        """Record CMC's answer; the tender is done."""
        self._update(
            entry_id,
            now,
            "state = 'delivered', response = ?, last_error = NULL, lease_until = NULL",
            (response,),
            attempt=True,
        )

    def mark_rejected(self, entry_id: int, problem: bytes, *, now: float) -> None:
        """Record CMC's refusal; the tender stays rejected until :meth:`retry`."""
        self._update(
            entry_id, now, "state = 'rejected', problem = ?, lease_until = NULL", (problem,), attempt=True
        )

    def mark_skipped(self, entry_id: int, state: OutboxState, reason: str, *, now: float) -> None:
        """Record that the tender was not sent (``disabled`` or ``not-accepted``) and why."""
        self._update(
            entry_id, now, "state = ?, last_error = ?, lease_until = NULL", (state, reason), attempt=True
        )

    def release(self, entry_id: int, error: str, *, now: float) -> None:
        """Give a queued tender back after a failed attempt, recording the error."""
        with self._guard("record an error"), self._transaction() as db:
            db.execute(
                "UPDATE tender SET last_error = ?, lease_until = NULL, attempts = attempts + 1,"
                " updated_at = ? WHERE id = ?",
                (error, now, entry_id),
            )
            _set_last_error(db, error, now)

    def retry(self, entry_id: int, *, now: float) -> OutboxEntry:
        """Move a rejected (or not sent) tender back to ``queued``; raise ``KeyError`` if there is none."""
        with self._guard("requeue a tender"), self._transaction() as db:
            row = db.execute(
                "UPDATE tender SET state = 'queued', problem = NULL, lease_until = NULL, updated_at = ?"
                f" WHERE id = ? AND state IN ('rejected', 'disabled', 'not-accepted') RETURNING {_COLUMNS}",
                (now, entry_id),
            ).fetchone()
        if row is None:
            raise KeyError(f"no rejected, disabled or not-accepted tender with outbox id {entry_id}")
        return _entry(row)

    def _update(
        self,
        entry_id: int,
        now: float,
        assignments: str,
        params: tuple[object, ...],
        *,
        attempt: bool = False,
    ) -> None:
        bump = ", attempts = attempts + 1" if attempt else ""
        with self._guard("update a tender"), self._transaction() as db:
            db.execute(
                f"UPDATE tender SET {assignments}{bump}, updated_at = ? WHERE id = ?",
                (*params, now, entry_id),
            )

    # --- reading -----------------------------------------------------------------------------

    def get(self, entry_id: int) -> OutboxEntry | None:
        """One row by outbox id."""
        with self._guard("read"), self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM tender WHERE id = ?", (entry_id,)).fetchone()
        return None if row is None else _entry(row)

    def entries(
        self, state: OutboxState | None = None, *, limit: int = 100, after: int = 0
    ) -> list[OutboxEntry]:
        """Rows oldest first, optionally of one state; ``after`` an outbox id pages on from that row."""
        where, params = ("AND state = ?", (after, state, limit)) if state else ("", (after, limit))
        with self._guard("read"), self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM tender WHERE id > ? {where} ORDER BY id LIMIT ?", params
            ).fetchall()
        return [_entry(row) for row in rows]

    def status(self, *, now: float) -> OutboxStatus:
        """Counts per state, oldest queued age and the last error."""
        with self._guard("read"), self._lock:
            counts = dict(self._db.execute("SELECT state, count(*) FROM tender GROUP BY state").fetchall())
            oldest = self._db.execute("SELECT min(created_at) FROM tender WHERE state = 'queued'").fetchone()[
                0
            ]
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        return OutboxStatus(
            queued=counts.get("queued", 0),
            delivered=counts.get("delivered", 0),
            rejected=counts.get("rejected", 0),
            disabled=counts.get("disabled", 0),
            not_accepted=counts.get("not-accepted", 0),
            oldest_queued_age=None if oldest is None else max(0.0, now - oldest),
            last_error=meta.get("last_error"),
            last_error_at=float(meta["last_error_at"]) if "last_error_at" in meta else None,
        )

    def prune(self, *, before: float) -> int:
        """Delete delivered rows last updated before ``before``; return how many."""
        with self._guard("prune"), self._transaction() as db:
            cursor = db.execute("DELETE FROM tender WHERE state = 'delivered' AND updated_at < ?", (before,))
        return cursor.rowcount


def _entry(row: tuple[object, ...]) -> OutboxEntry:
    return msgspec.convert(dict(zip(_COLUMNS.replace(" ", "").split(","), row, strict=True)), OutboxEntry)


def _set_last_error(db: sqlite3.Connection, error: str, now: float) -> None:
    db.executemany(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
        (("last_error", error), ("last_error_at", repr(now))),
    )
