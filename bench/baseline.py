"""Framework-free baseline for ``make bench``: the least a server must do for one durable tender.

A raw ASGI app (no framework), msgspec for JSON and either stdlib ``sqlite3`` in the event loop
(``--db FILE``) or an asyncpg pool (``--postgres URL``). It does the minimal *durable* work of the two
calls a POS makes after a sale, so that the real service's figures have a ceiling to be compared with:

- ``POST /pos/{pos}/startInteraction``: Bearer token check, terminal lookup in a dict, insert a session;
- ``POST /pos/{pos}/transaction``: decode the seed body into Structs, then in one SQLite transaction check
  the session, insert the transaction (``UNIQUE(pos, transaction_id)``), its products, upsert the
  customer by email, and mark the session used.

``POST /connect/token`` hands out a fixed token to anyone; ``GET /health`` answers 200.
No rules, no profiles matching, no problem details: whatever the real service adds on top is its cost.

On PostgreSQL the transaction is one database transaction too: lock the session row (``FOR UPDATE``),
upsert the customer, insert the transaction and its products (one ``executemany``), mark the session.

Run: ``python bench/baseline.py --port 8090 --db /tmp/baseline.db`` or ``--postgres postgresql://...``
"""

from __future__ import annotations

import argparse
import datetime as dt
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import uvicorn

SQLITE_PRAGMAS: tuple[str, ...] = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA foreign_keys=ON",
)
"""Durability settings; keep them equal to the real service's so the comparison is fair."""

TOKEN = "baseline-token"
"""The one bearer token the baseline accepts (and hands out to any token request)."""

SESSION_TTL_SECONDS = 15 * 60
"""Session lifetime, as the design's default."""

TERMINALS: dict[tuple[str, str], str] = {("pax", f"term{n}"): "loc5" for n in range(1, 17)}
"""(posSystemId, terminalId) -> posLocationId, the registry the demo file defines."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    pos TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    location_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS customers (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    phone TEXT,
    first_name TEXT,
    last_name TEXT,
    card_number TEXT,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS transactions (
    id INTEGER PRIMARY KEY,
    pos TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    customer_id INTEGER REFERENCES customers(id),
    transaction_type TEXT,
    amount TEXT,
    transaction_date TEXT,
    created_at REAL NOT NULL,
    UNIQUE (pos, transaction_id)
);
CREATE TABLE IF NOT EXISTS transaction_products (
    transaction_pk INTEGER NOT NULL REFERENCES transactions(id),
    line INTEGER NOT NULL,
    product_id TEXT,
    product_name TEXT,
    manufacturer TEXT,
    category TEXT,
    quantity TEXT,
    PRIMARY KEY (transaction_pk, line)
);
"""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class StartInteraction(msgspec.Struct):
    """StartInteraction request body."""

    terminalId: str
    posLocationId: str


class Contact(msgspec.Struct):
    """One customer contact (schema shape)."""

    email: str | None = None
    phone: str | None = None


class Customer(msgspec.Struct):
    """The customer block of the seed request."""

    id: str | None = None
    firstName: str | None = None
    lastName: str | None = None
    birthDate: str | None = None
    contacts: list[Contact] = []


class SalesPerson(msgspec.Struct):
    """The sales person block of the seed request."""

    id: str | None = None
    firstName: str | None = None
    lastName: str | None = None


class Product(msgspec.Struct):
    """One product line of the seed request."""

    productId: str | None = None
    productName: str | None = None
    manufacturer: str | None = None
    productCategory: str | None = None
    quantity: Decimal = Decimal(1)


class Loyalty(msgspec.Struct):
    """Loyalty block of the seed request."""

    cardNumber: str | None = None


class Transaction(msgspec.Struct):
    """SendTransaction request body (the seed's fields)."""

    sessionId: str
    transactionId: str
    terminalId: str
    posLocationId: str
    transactionType: str | None = None
    transactionAmount: Decimal | None = None
    transactionDate: dt.datetime | None = None
    customer: Customer | None = None
    salesPerson: SalesPerson | None = None
    products: list[Product] = []
    loyalty: Loyalty | None = None
    cardNumber: str | None = None


class HttpError(Exception):
    """An answer other than 200: status and a short message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


START_DECODER = msgspec.json.Decoder(StartInteraction)
TRANSACTION_DECODER = msgspec.json.Decoder(Transaction)
ENCODER = msgspec.json.Encoder()
JSON_HEADERS = [(b"content-type", b"application/json")]
MAX_BODY = 1 << 20


def open_db(path: str) -> sqlite3.Connection:
    """Open the database in autocommit mode (we issue BEGIN IMMEDIATE ourselves) and create the schema."""
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in SQLITE_PRAGMAS:
        db.execute(pragma)
    db.executescript(SCHEMA)
    return db


POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, pos TEXT NOT NULL, terminal_id TEXT NOT NULL, location_id TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL, used BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE IF NOT EXISTS customers (
    id BIGSERIAL PRIMARY KEY, email TEXT NOT NULL UNIQUE, phone TEXT, first_name TEXT, last_name TEXT,
    card_number TEXT, updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS transactions (
    id BIGSERIAL PRIMARY KEY, pos TEXT NOT NULL, transaction_id TEXT NOT NULL,
    session_id TEXT NOT NULL REFERENCES sessions(id), customer_id BIGINT REFERENCES customers(id),
    transaction_type TEXT, amount NUMERIC, transaction_date TEXT, created_at DOUBLE PRECISION NOT NULL,
    UNIQUE (pos, transaction_id)
);
CREATE TABLE IF NOT EXISTS transaction_products (
    transaction_pk BIGINT NOT NULL REFERENCES transactions(id), line INTEGER NOT NULL, product_id TEXT,
    product_name TEXT, manufacturer TEXT, category TEXT, quantity NUMERIC, PRIMARY KEY (transaction_pk, line)
);
"""


class PostgresStore:
    """The same durable work on PostgreSQL through an asyncpg pool (one round trip per statement)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        self.pool = await asyncpg.create_pool(self.url, min_size=4, max_size=10)
        async with self.pool.acquire() as conn:
            await conn.execute(POSTGRES_SCHEMA)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def start_interaction(self, pos: str, request: StartInteraction) -> str:
        assert self.pool is not None
        session_id = str(uuid.uuid4())
        await self.pool.execute(
            "INSERT INTO sessions (id, pos, terminal_id, location_id, expires_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            session_id,
            pos,
            request.terminalId,
            request.posLocationId,
            time.time() + SESSION_TTL_SECONDS,
        )
        return session_id

    async def record(self, pos: str, tx: Transaction, now: float) -> int:
        assert self.pool is not None
        async with self.pool.acquire() as conn, conn.transaction():
            session = await conn.fetchrow(
                "SELECT terminal_id, location_id, expires_at, used FROM sessions WHERE id = $1 AND pos = $2"
                " FOR UPDATE",
                tx.sessionId,
                pos,
            )
            check_session(session, tx, now)
            customer_id = await self._customer(conn, tx, now)
            try:
                transaction_pk = await conn.fetchval(
                    "INSERT INTO transactions (pos, transaction_id, session_id, customer_id,"
                    " transaction_type, amount, transaction_date, created_at)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                    pos,
                    tx.transactionId,
                    tx.sessionId,
                    customer_id,
                    tx.transactionType,
                    tx.transactionAmount,
                    None if tx.transactionDate is None else tx.transactionDate.isoformat(),
                    now,
                )
            except asyncpg.UniqueViolationError as exc:
                raise HttpError(409, "duplicate transactionId") from exc
            await conn.executemany(
                "INSERT INTO transaction_products VALUES ($1, $2, $3, $4, $5, $6, $7)",
                [
                    (
                        transaction_pk,
                        line,
                        p.productId,
                        p.productName,
                        p.manufacturer,
                        p.productCategory,
                        p.quantity,
                    )
                    for line, p in enumerate(tx.products)
                ],
            )
            await conn.execute("UPDATE sessions SET used = TRUE WHERE id = $1", tx.sessionId)
        return int(transaction_pk)

    async def _customer(self, conn: asyncpg.Connection, tx: Transaction, now: float) -> int | None:
        found = customer_fields(tx)
        if found is None:
            return None
        value = await conn.fetchval(
            "INSERT INTO customers (email, phone, first_name, last_name, card_number, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (email) DO UPDATE SET phone = coalesce(excluded.phone, customers.phone),"
            " first_name = coalesce(excluded.first_name, customers.first_name),"
            " last_name = coalesce(excluded.last_name, customers.last_name),"
            " card_number = coalesce(excluded.card_number, customers.card_number),"
            " updated_at = excluded.updated_at RETURNING id",
            *found,
            now,
        )
        return int(value)


def customer_fields(tx: Transaction) -> tuple[str, str | None, str | None, str | None, str | None] | None:
    """(email, phone, first name, last name, card) of the sale's customer; None without an email."""
    customer = tx.customer
    if customer is None:
        return None
    email = next((c.email.lower() for c in customer.contacts if c.email), None)
    if email is None:
        return None
    phone = next((c.phone for c in customer.contacts if c.phone), None)
    card = tx.loyalty.cardNumber if tx.loyalty else tx.cardNumber
    return email, phone, customer.firstName, customer.lastName, card


def check_session(session: Any, tx: Transaction, now: float) -> None:
    """The session checks both stores make."""
    if session is None:
        raise HttpError(404, "session not found")
    terminal_id, location_id, expires_at, used = session
    if used:
        raise HttpError(409, "session already used")
    if expires_at < now:
        raise HttpError(410, "session expired")
    if (terminal_id, location_id) != (tx.terminalId, tx.posLocationId):
        raise HttpError(400, "terminal or location does not match the session")


def check_token(scope: Scope) -> None:
    """Refuse the call unless it carries ``Authorization: Bearer <TOKEN>``."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            if value == b"Bearer " + TOKEN.encode():
                return
            break
    raise HttpError(401, "missing or invalid bearer token")


class SqliteStore:
    """The durable work on one SQLite connection, used only from the event loop thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.db: sqlite3.Connection | None = None

    async def open(self) -> None:
        self.db = open_db(self.path)

    async def close(self) -> None:
        if self.db is not None:
            self.db.close()

    async def start_interaction(self, pos: str, request: StartInteraction) -> str:
        assert self.db is not None
        session_id = str(uuid.uuid4())
        self.db.execute(
            "INSERT INTO sessions (id, pos, terminal_id, location_id, expires_at) VALUES (?, ?, ?, ?, ?)",
            (session_id, pos, request.terminalId, request.posLocationId, time.time() + SESSION_TTL_SECONDS),
        )
        return session_id

    async def record(self, pos: str, tx: Transaction, now: float) -> int:
        """Store one tender atomically: all of it commits or none of it does."""
        db = self.db
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        try:
            transaction_pk = record_transaction(db, pos, tx, now)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return transaction_pk


Store = SqliteStore | PostgresStore


async def start_interaction(store: Store, pos: str, body: bytes) -> dict[str, Any]:
    """Open a session for a known terminal."""
    request = START_DECODER.decode(body)
    if TERMINALS.get((pos, request.terminalId)) != request.posLocationId:
        raise HttpError(404, "terminal not found")
    session_id = await store.start_interaction(pos, request)
    return {
        "data": {
            "terminalId": request.terminalId,
            "posLocationId": request.posLocationId,
            "sessionId": session_id,
            "posStatus": "Accepted",
        }
    }


def upsert_customer(db: sqlite3.Connection, tx: Transaction, now: float) -> int | None:
    """Create or update the customer keyed by email; None when the sale has no email."""
    found = customer_fields(tx)
    if found is None:
        return None
    row = db.execute(
        "INSERT INTO customers (email, phone, first_name, last_name, card_number, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (email) DO UPDATE SET phone = coalesce(excluded.phone, phone),"
        " first_name = coalesce(excluded.first_name, first_name),"
        " last_name = coalesce(excluded.last_name, last_name),"
        " card_number = coalesce(excluded.card_number, card_number), updated_at = excluded.updated_at"
        " RETURNING id",
        (*found, now),
    ).fetchone()
    return int(row[0])


def record_transaction(db: sqlite3.Connection, pos: str, tx: Transaction, now: float) -> int:
    """The durable part of a tender, inside the caller's SQLite transaction; returns the row id."""
    session = db.execute(
        "SELECT terminal_id, location_id, expires_at, used FROM sessions WHERE id = ? AND pos = ?",
        (tx.sessionId, pos),
    ).fetchone()
    check_session(session, tx, now)
    customer_id = upsert_customer(db, tx, now)
    try:
        cursor = db.execute(
            "INSERT INTO transactions (pos, transaction_id, session_id, customer_id, transaction_type,"
            " amount, transaction_date, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                pos,
                tx.transactionId,
                tx.sessionId,
                customer_id,
                tx.transactionType,
                None if tx.transactionAmount is None else str(tx.transactionAmount),
                None if tx.transactionDate is None else tx.transactionDate.isoformat(),
                now,
            ),
        )
    except sqlite3.IntegrityError as exc:
        raise HttpError(409, "duplicate transactionId") from exc
    transaction_pk = int(cursor.lastrowid or 0)
    db.executemany(
        "INSERT INTO transaction_products VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                transaction_pk,
                line,
                p.productId,
                p.productName,
                p.manufacturer,
                p.productCategory,
                str(p.quantity),
            )
            for line, p in enumerate(tx.products)
        ],
    )
    db.execute("UPDATE sessions SET used = 1 WHERE id = ?", (tx.sessionId,))
    return transaction_pk


async def send_transaction(store: Store, pos: str, body: bytes) -> dict[str, Any]:
    """Store one tender durably and answer it."""
    tx = TRANSACTION_DECODER.decode(body)
    transaction_pk = await store.record(pos, tx, time.time())
    return {
        "data": {
            "id": str(transaction_pk),
            "qrCodeWidget": None,
            "cfsTemplate": None,
            "posStatus": "Accepted",
        }
    }


async def read_body(receive: Receive) -> bytes:
    """Collect the request body, refusing anything over 1 MiB."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise HttpError(413, "body too large")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


async def respond(send: Send, status: int, payload: object) -> None:
    """Send one complete JSON response."""
    body = ENCODER.encode(payload)
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def route(store: Store, scope: Scope, body: bytes) -> dict[str, Any]:
    """Dispatch on method and (case-insensitive) path."""
    parts = scope["path"].lower().strip("/").split("/")
    if scope["method"] == "GET" and parts == ["health"]:
        return {"status": "ok"}
    if scope["method"] != "POST":
        raise HttpError(405, "method not allowed")
    if parts == ["connect", "token"]:
        return {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600, "scope": "pos_integration"}
    if len(parts) == 3 and parts[0] == "pos":
        check_token(scope)
        pos = scope["path"].strip("/").split("/")[1]
        if parts[2] == "startinteraction":
            return await start_interaction(store, pos, body)
        if parts[2] == "transaction":
            return await send_transaction(store, pos, body)
    raise HttpError(404, "not found")


class BaselineApp:
    """The ASGI application over one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.ready = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve lifespan and HTTP; every failure becomes a JSON error, never a traceback."""
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        if scope["type"] != "http" or not self.ready:
            return
        try:
            payload = await route(self.store, scope, await read_body(receive))
        except HttpError as exc:
            await respond(send, exc.status, {"status": exc.status, "title": str(exc)})
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            await respond(send, 400, {"status": 400, "title": str(exc)})
        else:
            await respond(send, 200, payload)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        """Open the store at startup, close it at shutdown."""
        for _ in range(2):
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.store.open()
                self.ready = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.store.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def main() -> None:
    """Parse the command line and serve on loopback with one uvicorn worker."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--db", default="baseline.db", help="SQLite file (created if missing)")
    parser.add_argument("--postgres", help="a PostgreSQL URL: use it instead of the SQLite file")
    args = parser.parse_args()
    store: Store = PostgresStore(args.postgres) if args.postgres else SqliteStore(args.db)
    uvicorn.run(
        BaselineApp(store),
        host=args.host,
        port=args.port,
        workers=1,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
