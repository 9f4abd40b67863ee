"""What the routes need, built once per app: settings, store, directory, tokens, login, metrics, marketing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from litestar import Litestar

from cmc.api import HttpRequest
from cmc.api.metrics import Metrics
from cmc.auth import Tokens
from cmc.cfs_feed import CfsFeed
from cmc.clock import Clock, system_clock
from cmc.config import Settings
from cmc.login import Login
from cmc.registry import DirectoryCache
from cmc.sale import React, no_reaction
from cmc.store.database import Database


@dataclass
class Services:
    """The app's collaborators, kept in ``app.state.services``."""

    settings: Settings
    db: Database
    directory: DirectoryCache
    tokens: Tokens
    login: Login
    """Checks client secrets (``/connect/token``) and console passwords."""
    metrics: Metrics
    react: React = no_reaction
    """What marketing does with each sale (``cmc.marketing.react`` with the public URL)."""
    feed: CfsFeed | None = None
    """The live CFS feed (``cmc.cfs_feed``); started with the app."""
    clock: Clock = system_clock
    """Where every route reads the time (tests pass their own)."""
    simulations: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    """One simulation at a time per process: a replay is CPU work that sales must not queue behind."""

    @staticmethod
    def of(request: HttpRequest) -> Services:
        """The services of the app serving ``request``."""
        return Services.of_app(request.app)

    @staticmethod
    def of_app(app: Litestar) -> Services:
        """The services of ``app`` (set by its lifespan)."""
        services: Services = app.state.services
        return services
