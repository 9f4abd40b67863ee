"""What the routes need, built once per app: settings, store, directory, tokens, metrics, marketing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from cmc import transactions
from cmc.api import HttpRequest
from cmc.api.edge import Metrics
from cmc.auth import Tokens
from cmc.cfs_feed import CfsFeed
from cmc.clock import Clock, system_clock
from cmc.config import Settings
from cmc.directory import Company, DirectoryCache, Location, PosSystem
from cmc.store.database import Database
from cmc_client import wire


@dataclass
class Services:
    """The app's collaborators, kept in ``app.state.services``."""

    settings: Settings
    db: Database
    directory: DirectoryCache
    tokens: Tokens
    metrics: Metrics
    marketing: transactions.Marketing = transactions.no_marketing
    feed: CfsFeed | None = None
    """The live CFS feed (``cmc.cfs_feed``); started with the app."""
    clock: Clock = system_clock
    """Where every route reads the time (tests pass their own)."""

    @staticmethod
    def of(request: HttpRequest) -> Services:
        """The services of the app serving ``request``."""
        services: Services = request.app.state.services
        return services

    async def record(
        self,
        tx: wire.TransactionRequest,
        *,
        pos: PosSystem,
        company: Company,
        location: Location,
        now: datetime,
    ) -> transactions.Outcome:
        """Record a transaction; a concurrent duplicate (unique key race) is answered as a replay."""
        where = {
            "pos": pos,
            "company": company,
            "location": location,
            "now": now,
            "marketing": self.marketing,
        }
        try:
            return await self.db.write(transactions.record, tx, **where)
        except IntegrityError:
            # Another process stored the same transaction first; the retry finds it and replays it.
            return await self.db.write(transactions.record, tx, **where)
