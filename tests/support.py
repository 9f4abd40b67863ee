"""Test support for the service: a real database (SQLite file or PostgreSQL), the real ASGI app, HTTP."""

from __future__ import annotations

import asyncio
import base64
import copy
import gc
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

import pg_databases
from cmc import registry, sessions
from cmc.api.app import create_app
from cmc.api.services import Services
from cmc.clock import system_clock
from cmc.config import Settings
from cmc.store import migrate, statements
from cmc.store.database import Database
from cmc.store.statements import Statement

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = Path(__file__).with_name("registry.yaml")
SECRETS = {"pax": ("pax-demo", "s3cr3t!"), "clover": ("clover-demo", "cl0ver!"),
           "sleepy": ("sleepy-demo", "sl33py!"), "quiet": ("quiet-demo", "qu13t!!")}  # fmt: skip
MERCHANTS = Path(__file__).with_name("merchants.yaml")
MERCHANT_SECRETS = {"gl-viewer": "v13w3r!", "gl-editor": "3d1t0r!", "gl-publisher": "publ1sh!",
                    "bd-publisher": "blu3d00r!", "clover-merchant": "cl0v3rm!"}  # fmt: skip

SEED_TRANSACTION: dict[str, Any] = {
    "sessionId": "",
    "transactionId": "",
    "terminalId": "term5",
    "posLocationId": "loc5",
    "customer": {
        "id": "cust-1",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "birthDate": "1990-04-11T00:00:00Z",
        "contacts": [{"email": "Ada@Example.com", "phone": "(415) 555-0100"}],
    },
    "salesPerson": {"id": "sp-1", "firstName": "Sam", "lastName": "Seller"},
    "purchaseName": "legacy",
    "purchaseId": "legacy-1",
    "purchaseQuantity": 1,
    "purchasePrice": "9.99",
    "transactionType": "Sale",
    "transactionAmount": 23.47,
    "transactionDate": "2026-11-26T10:15:00",
    "products": [
        {
            "productId": "p-1",
            "productName": "Gummies",
            "manufacturer": "Acme",
            "productCategory": "Edibles",
            "quantity": 2,
        },
        {
            "productId": "p-2",
            "productName": "Tea",
            "manufacturer": "Leafy",
            "productCategory": "Drinks",
            "quantity": 1,
        },
        {
            "productId": "p-3",
            "productName": "Mug",
            "manufacturer": "Acme",
            "productCategory": "Gear",
            "quantity": 1,
        },
    ],
    "loyalty": {"cardNumber": "L-0001"},
}

_ids = itertools.count(1)


class ManualClock:
    """A clock tests move by hand (``create_app(clock=...)``): time passes only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        """Move the clock forward by ``timedelta(**delta)``."""
        self.now += timedelta(**delta)


def binding_tags_match(session_id: str, key: bytes, where: sessions.Where) -> tuple[bool, bool]:
    """Whether ``session_id`` carries the location and the terminal tag a session of ``where`` issued
    at the same instant with the same randomness would (``cmc.sessions``: 10-bit MACs)."""
    parts = sessions._parts(session_id)
    assert parts is not None, session_id
    expected = sessions._bindings(key, where, parts.millis, parts.random)
    return parts.location == expected[0], parts.terminal == expected[1]


def unique(prefix: str = "tx") -> str:
    """A transaction id no other test uses."""
    return f"{prefix}-{next(_ids)}"


def seed_transaction(**changes: Any) -> dict[str, Any]:
    """A fresh copy of the seed's full payload with ``changes`` applied."""
    body = copy.deepcopy(SEED_TRANSACTION)
    body["transactionId"] = unique()
    body.update(changes)
    return body


class Lifespan:
    """Runs an ASGI app's lifespan protocol (startup on enter, shutdown on exit)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._to_app: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Lifespan:
        self._task = asyncio.create_task(
            self.app(
                {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                self._to_app.get,
                self._from_app.put,
            )
        )
        await self._to_app.put({"type": "lifespan.startup"})
        message = await asyncio.wait_for(self._from_app.get(), 30)
        assert message["type"] == "lifespan.startup.complete", message
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._to_app.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(self._from_app.get(), 30)
        assert self._task is not None
        await self._task


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a test: a SQLite file under ``tmp_path``, quiet logs."""
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path}/cmc.db",
        "public_url": "http://cmc.test",
        "access_log": False,
        "log_level": "warning",
        "auth_tarpit": timedelta(0),  # refusals at once: tests count them, not wait for them
    }
    values.update(overrides)
    return Settings(**values)


def apply_registry(settings: Settings, path: Path = REGISTRY) -> registry.ApplyReport:
    """``cmc apply`` as a function: migrate, then load the file."""
    db = Database.open(settings.database_url)
    try:
        migrate.upgrade(db)
        return db.run_sync(registry.apply, registry.load_file(str(path)))
    finally:
        asyncio.run(db.close()) if not _in_loop() else None


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def basic(pos: str) -> str:
    client_id, secret = SECRETS[pos]
    return basic_of(client_id, secret)


def basic_of(client_id: str, secret: str) -> str:
    """``Authorization: Basic ...`` for a client id and secret."""
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


class Api:
    """A POS talking to the app: token, startInteraction, transaction."""

    def __init__(self, http: httpx2.AsyncClient, app: Any, settings: Settings) -> None:
        self.http = http
        self.app = app
        self.settings = settings
        self._tokens: dict[str, str] = {}

    async def token(self, pos: str = "pax") -> str:
        if pos not in self._tokens:
            answer = await self.http.post(
                "/connect/token",
                headers={"Authorization": basic(pos)},
                data={"grant_type": "client_credentials", "scope": "pos_integration"},
            )
            assert answer.status_code == 200, answer.text
            self._tokens[pos] = answer.json()["access_token"]
        return self._tokens[pos]

    async def post(self, path: str, body: Any, *, pos: str = "pax", **kwargs: Any) -> httpx2.Response:
        headers = {"Authorization": f"Bearer {await self.token(pos)}", **kwargs.pop("headers", {})}
        return await self.http.post(path, json=body, headers=headers, **kwargs)

    async def start(
        self, *, pos: str = "pax", terminal: str = "term5", location: str = "loc5"
    ) -> httpx2.Response:
        return await self.post(
            f"/pos/{pos}/startInteraction", {"terminalId": terminal, "posLocationId": location}, pos=pos
        )

    async def session(self, **kwargs: Any) -> str:
        answer = await self.start(**kwargs)
        assert answer.status_code == 200, answer.text
        session_id: str = answer.json()["data"]["sessionId"]
        return session_id

    async def session_told_apart(self, at: sessions.Where, used_at: sessions.Where) -> str:
        """A session for terminal ``at`` whose bindings differ from those ``used_at`` would have in
        every field where the two differ: 1 session in 1,024 per field is not told apart, and
        accepted there (``test_sessions`` shows it); that is not what the caller tests."""
        keys = Services.of_app(self.app.app).directory.current.session_keys
        while True:
            session = await self.session(
                pos=at.pos_system_id, terminal=at.terminal_id, location=at.location_id
            )
            location_tag, terminal_tag = binding_tags_match(session, keys[0], used_at)
            if (at.terminal_id == used_at.terminal_id or not terminal_tag) and (
                at.location_id == used_at.location_id or not location_tag
            ):
                return session

    async def send(self, body: dict[str, Any], *, pos: str = "pax", **kwargs: Any) -> httpx2.Response:
        return await self.post(f"/pos/{pos}/transaction", body, pos=pos, **kwargs)

    async def tender(self, body: dict[str, Any] | None = None, *, pos: str = "pax") -> httpx2.Response:
        """The real two-call tender: a new session, then the transaction with it."""
        body = seed_transaction() if body is None else body
        body["sessionId"] = await self.session(
            pos=pos, terminal=body["terminalId"], location=body["posLocationId"]
        )
        return await self.send(body, pos=pos)

    def db(self) -> Database:
        return Database.open(self.settings.database_url)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """Store tests run on both engines; PostgreSQL only when CMC_TEST_POSTGRES_URL names a server."""
    if request.param == "postgresql" and not pg_databases.POSTGRES_URL:
        pytest.skip("PostgreSQL variant: set CMC_TEST_POSTGRES_URL to run it")
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of the test's backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/cmc.db"
        return
    url = pg_databases.create()
    try:
        yield url
    finally:
        pg_databases.drop(url)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if pg_databases.POSTGRES_URL:
        pg_databases.drop_template()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url=database_url)


@pytest.fixture
def api_factory(tmp_path: Path, database_url: str) -> Callable[..., Any]:
    """Start the app with settings overrides; yields an ``Api``."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def start(
        *, clock: ManualClock | None = None, registry: Path = REGISTRY, **overrides: Any
    ) -> AsyncIterator[Api]:
        settings = make_settings(tmp_path, **{"database_url": database_url, **overrides})
        await asyncio.to_thread(apply_registry, settings, registry)
        app = create_app(settings, clock=clock or system_clock)
        async with Lifespan(app):
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://cmc.test") as http:
                yield Api(http, app, settings)

    return start


@pytest.fixture
async def api(api_factory: Callable[..., Any]) -> AsyncIterator[Api]:
    async with api_factory() as api:
        yield api


async def count_rows(api: Api, table: str) -> int:
    from sqlalchemy import text

    db = api.db()
    try:
        return int(await db.read(lambda conn: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()))
    finally:
        await db.close()


__all__ = ["SEED_TRANSACTION", "Api", "Lifespan", "ManualClock", "apply_registry", "count_rows",
           "make_settings", "seed_transaction", "timedelta", "unique"]  # fmt: skip


@pytest.fixture
def made_statement() -> Iterator[Callable[..., Statement[Any]]]:
    """``made_statement(clause, name=...)``: a driver statement for one test, gone from
    ``statements.ALL`` after it (the contract and the query-plan tests walk that list)."""
    made: list[Statement[Any]] = []

    def make(clause: Any, *, name: str) -> Statement[Any]:
        statement: Statement[Any] = Statement(clause, name=name, only="postgresql")
        made.append(statement)
        return statement

    yield make
    statements.ALL[:] = [s for s in statements.ALL if not any(s is m for m in made)]


@pytest.fixture
def garbage_collected() -> Iterator[None]:
    """Collect garbage right after the test, at a quiet moment.

    The network-cut tests abandon work midway (SQLAlchemy's greenlets among it). Collected later,
    at an arbitrary moment, such leftovers can land inside CPython 3.11's AST constructor, which
    then reports a spurious ``SystemError: AST constructor recursion depth mismatch``
    (python/cpython#106905), and pytest, parsing a traceback or a module, crashes with it."""
    yield
    gc.collect()
