"""The registry snapshot: POS systems, clients, console users, companies with their live marketing
setups, locations and terminals, in memory.

The registry changes rarely (``cmc apply``, a merchant's activation) and is read on every request, so
each process keeps an immutable snapshot and swaps in a new one when the registry version in the
database moves. A background task checks the version every ``CMC_REGISTRY_REFRESH_SECONDS`` (and on
PostgreSQL a NOTIFY wakes it at once), so a change reaches every process, on every node, within that
time and without a restart. ``catch_up`` checks at once, for a caller that must not act on a stale
snapshot (a token whose credential fingerprint the snapshot does not know yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import zoneinfo
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from sqlalchemy import Connection

from cmc import background, holdout, screens, sessions
from cmc.credentials import fingerprint
from cmc.errors import RegistryError
from cmc.merchant import versions
from cmc.quiet_hours import QuietHours, parse_window
from cmc.registry import setup, store
from cmc.registry.setup import Setup
from cmc.roles import Role
from cmc.screens import Screen
from cmc.store.database import Database

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PosSystem:
    """A POS vendor integration (the ``{posSystemId}`` path segment)."""

    id: str
    name: str
    status: str
    settings: dict[str, bool]

    @property
    def accepted(self) -> bool:
        """Only an Accepted POS system may open sessions and send transactions."""
        return self.status == "Accepted"


@dataclass(frozen=True)
class Location:
    """A store of a company, with its time zone, phone region and terminals."""

    pos_system_id: str
    id: str
    company_id: str
    name: str
    timezone: zoneinfo.ZoneInfo
    country: str
    quiet_hours: QuietHours
    terminals: frozenset[str]
    cfs_terminals: frozenset[str]
    screen_tokens: Mapping[str, str] = field(default_factory=dict)
    """Terminal id → the pairing token of its customer-facing screen (``cmc.screens``)."""


@dataclass(frozen=True)
class Company:
    """A merchant account with its marketing setup (compiled once per snapshot)."""

    pos_system_id: str
    id: str
    name: str
    setup: Setup
    marketing_version: int = 0
    """The live marketing version ``setup`` was compiled from (0: none yet)."""
    holdout_salt: bytes = b""
    """What its rules' holdout assignments are keyed with (``cmc.holdout``)."""


@dataclass(frozen=True)
class Client:
    """An API client: the POS system it acts for and its secret's hash.

    A merchant client (scope ``merchant``) is also bound to one company, with a role.
    """

    client_id: str
    pos_system_id: str
    secret_hash: str
    company_id: str | None = None
    role: Role | None = None

    @functools.cached_property
    def fingerprint(self) -> str:
        """What tokens issued to this client carry: a new secret makes them invalid (computed once)."""
        return fingerprint(self.secret_hash)


@dataclass(frozen=True)
class ConsoleUser:
    """A merchant's console user, with a role."""

    pos_system_id: str
    company_id: str
    email: str
    password_hash: str
    role: Role

    @functools.cached_property
    def fingerprint(self) -> str:
        """What tokens issued to this user carry: a new password makes them invalid."""
        return fingerprint(self.password_hash)


@dataclass(frozen=True)
class Directory:
    """One consistent snapshot of the registry."""

    version: int = 0
    pos_systems: dict[str, PosSystem] = field(default_factory=dict)
    companies: dict[tuple[str, str], Company] = field(default_factory=dict)
    locations: dict[tuple[str, str], Location] = field(default_factory=dict)
    clients: dict[str, Client] = field(default_factory=dict)
    users: dict[tuple[str, str, str], ConsoleUser] = field(default_factory=dict)
    """(posSystemId, companyId, email) → the console user."""
    session_keys: tuple[bytes, ...] = ()
    """The keys sessions are signed with, newest (the signing one) first (``cmc.sessions``)."""
    screens: Mapping[str, Screen] = field(default_factory=dict)
    """Pairing token → its customer-facing screen: a token not here opens nothing."""

    def company_locations(self, pos_system_id: str, company_id: str) -> list[str]:
        """The ids of the company's locations (what its rules may name)."""
        return [
            loc.id
            for loc in self.locations.values()
            if loc.pos_system_id == pos_system_id and loc.company_id == company_id
        ]


def load(conn: Connection, *, session_keys: tuple[bytes, ...] | None = None) -> Directory:
    """Read the whole registry in one transaction and build the snapshot.

    ``session_keys`` are the configured ones (``CMC_SESSION_SECRETS``); without them, the keys kept
    in the database (generated on first start, rotated by ``cmc sessions rotate-key``).
    """
    rows = store.load_rows(conn)
    signer = screens.signer(conn)
    terminals: dict[tuple[str, str], list[tuple[str, bool]]] = defaultdict(list)
    for row in rows.terminals:
        terminals[(row.pos_system_id, row.location_id)].append((row.id, row.cfs))
    locations = {}
    for row in rows.locations:
        terms = terminals[(row.pos_system_id, row.id)]
        tokens = signer.tokens(Screen(row.pos_system_id, row.id, term) for term, cfs in terms if cfs)
        locations[(row.pos_system_id, row.id)] = Location(
            pos_system_id=row.pos_system_id,
            id=row.id,
            company_id=row.company_id,
            name=row.name,
            timezone=zoneinfo.ZoneInfo(row.timezone),
            country=row.country,
            quiet_hours=parse_window(row.quiet_hours),
            terminals=frozenset(term for term, _ in terms),
            cfs_terminals=frozenset(term for term, cfs in terms if cfs),
            screen_tokens={screen.terminal_id: token for screen, token in tokens.items()},
        )
    company_locations: dict[tuple[str, str], list[str]] = defaultdict(list)
    for loc in locations.values():
        company_locations[(loc.pos_system_id, loc.company_id)].append(loc.id)
    live = versions.active_documents(conn)
    secret = holdout.stored_secret(conn)
    companies = {}
    for row in rows.companies:
        key = (row.pos_system_id, row.id)
        number, document = live.get(key, (0, {}))
        companies[key] = Company(
            pos_system_id=row.pos_system_id,
            id=row.id,
            name=row.name,
            setup=_compiled(key, number, document, company_locations[key]),
            marketing_version=number,
            holdout_salt=holdout.company_salt(secret, row.pos_system_id, row.id),
        )
    return Directory(
        version=rows.version,
        pos_systems={
            row.id: PosSystem(id=row.id, name=row.name, status=row.status, settings=dict(row.settings))
            for row in rows.pos_systems
        },
        companies=companies,
        locations=locations,
        clients={
            row.client_id: Client(row.client_id, row.pos_system_id, row.secret_hash, row.company_id, row.role)
            for row in rows.clients
        },
        users={
            (row.pos_system_id, row.company_id, row.email): ConsoleUser(
                row.pos_system_id, row.company_id, row.email, row.password_hash, row.role
            )
            for row in rows.users
        },
        session_keys=session_keys or sessions.stored_keys(conn),
        screens={
            token: Screen(loc.pos_system_id, loc.id, terminal)
            for loc in locations.values()
            for terminal, token in loc.screen_tokens.items()
        },
    )


def _compiled(key: tuple[str, str], number: int, document: dict[str, object], locations: list[str]) -> Setup:
    """The live setup; one that no longer compiles (a location removed meanwhile) must not stop the rest.

    Activation and ``cmc apply`` refuse such a version, so this only guards a race between the two.
    """
    try:
        return setup.load(document, locations=locations)
    except RegistryError as exc:
        log.error(
            "marketing version does not compile; its rules are off",
            company=key,
            version=number,
            error=str(exc),
        )
        return setup.EMPTY


class DirectoryCache:
    """The current snapshot, refreshed in the background when the registry version moves."""

    def __init__(
        self, db: Database, *, refresh: timedelta, session_keys: tuple[bytes, ...] | None = None
    ) -> None:
        self._db = db
        self._session_keys = session_keys
        self._refresh = refresh.total_seconds()
        self.current = Directory()
        self._task: asyncio.Task[None] | None = None
        self._nudge = asyncio.Event()
        self._checking = asyncio.Lock()
        self._checks = 0

    async def start(self) -> None:
        """Load the first snapshot and start watching for changes."""
        await self.reload()
        self._task = asyncio.create_task(self._watch(), name="cmc-directory-refresh")

    async def stop(self) -> None:
        """Stop watching."""
        await background.cancel(self._task)

    async def reload(self) -> None:
        """Load a fresh snapshot now."""
        self.current = await self._db.read(load, session_keys=self._session_keys)

    async def catch_up(self) -> None:
        """Reload now if the registry version moved; callers arriving together share one check."""
        seen = self._checks
        async with self._checking:
            if self._checks != seen:
                return  # someone checked while this caller waited
            await self._check()
            self._checks += 1

    async def _check(self) -> None:
        version = await self._db.read(store.current_version)
        if version != self.current.version:
            await self.reload()
            log.info("registry reloaded", version=self.current.version)

    def wake(self) -> None:
        """Check the registry version now rather than at the next tick (a NOTIFY said it moved)."""
        self._nudge.set()

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudge.wait(), self._refresh)
            self._nudge.clear()
            try:
                await self.catch_up()
            except Exception:
                # A database hiccup must not kill the watcher; the next tick tries again.
                log.exception("registry refresh failed")
