"""The registry snapshot: POS systems, clients, companies, locations and terminals, in memory.

The registry changes rarely (``cmc apply``) and is read on every request, so each process keeps an
immutable snapshot and swaps in a new one when the registry version in the database moves. A
background task checks the version every ``CMC_REGISTRY_REFRESH_SECONDS``, so an ``apply`` reaches
every process, on every node, within that time and without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import zoneinfo
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from sqlalchemy import Connection

from cmc import screens
from cmc.quiet_hours import QuietHours, parse_window
from cmc.registry import setup, store
from cmc.registry.setup import Setup
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


@dataclass(frozen=True)
class Client:
    """An API client: the POS system it acts for and its secret's hash."""

    client_id: str
    pos_system_id: str
    secret_hash: str


@dataclass(frozen=True)
class Directory:
    """One consistent snapshot of the registry."""

    version: int = 0
    pos_systems: dict[str, PosSystem] = field(default_factory=dict)
    companies: dict[tuple[str, str], Company] = field(default_factory=dict)
    locations: dict[tuple[str, str], Location] = field(default_factory=dict)
    clients: dict[str, Client] = field(default_factory=dict)
    screens: Mapping[str, Screen] = field(default_factory=dict)
    """Pairing token → its customer-facing screen: a token not here opens nothing."""


def load(conn: Connection) -> Directory:
    """Read the whole registry in one transaction and build the snapshot."""
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
    return Directory(
        version=rows.version,
        pos_systems={
            row.id: PosSystem(id=row.id, name=row.name, status=row.status, settings=dict(row.settings))
            for row in rows.pos_systems
        },
        companies={
            (row.pos_system_id, row.id): Company(
                pos_system_id=row.pos_system_id,
                id=row.id,
                name=row.name,
                setup=setup.load(row.config, locations=company_locations[(row.pos_system_id, row.id)]),
            )
            for row in rows.companies
        },
        locations=locations,
        clients={
            row.client_id: Client(row.client_id, row.pos_system_id, row.secret_hash) for row in rows.clients
        },
        screens={
            token: Screen(loc.pos_system_id, loc.id, terminal)
            for loc in locations.values()
            for terminal, token in loc.screen_tokens.items()
        },
    )


class DirectoryCache:
    """The current snapshot, refreshed in the background when the registry version moves."""

    def __init__(self, db: Database, *, refresh: timedelta) -> None:
        self._db = db
        self._refresh = refresh.total_seconds()
        self.current = Directory()
        self._task: asyncio.Task[None] | None = None
        self._nudge = asyncio.Event()

    async def start(self) -> None:
        """Load the first snapshot and start watching for changes."""
        await self.reload()
        self._task = asyncio.create_task(self._watch(), name="cmc-directory-refresh")

    async def stop(self) -> None:
        """Stop watching."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def reload(self) -> None:
        """Load a fresh snapshot now."""
        self.current = await self._db.read(load)

    def wake(self) -> None:
        """Check the registry version now rather than at the next tick (a NOTIFY said it moved)."""
        self._nudge.set()

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudge.wait(), self._refresh)
            self._nudge.clear()
            try:
                version = await self._db.read(store.current_version)
                if version != self.current.version:
                    await self.reload()
                    log.info("registry reloaded", version=self.current.version)
            except Exception:
                # A database hiccup must not kill the watcher; the next tick tries again.
                log.exception("registry refresh failed")
