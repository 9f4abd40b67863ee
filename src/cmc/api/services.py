"""What the routes need, built once per app: settings, store, directory, tokens, metrics, marketing."""

from __future__ import annotations

from dataclasses import dataclass

from litestar import Litestar

from cmc.api import HttpRequest
from cmc.api.metrics import Metrics
from cmc.auth import Tokens
from cmc.cfs_feed import CfsFeed
from cmc.clock import Clock, system_clock
from cmc.config import Settings
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
    metrics: Metrics
    react: React = no_reaction
    """What marketing does with each sale (``cmc.marketing.react`` with the public URL)."""
    feed: CfsFeed | None = None
    """The live CFS feed (``cmc.cfs_feed``); started with the app."""
    clock: Clock = system_clock
    """Where every route reads the time (tests pass their own)."""

    @staticmethod
    def of(request: HttpRequest) -> Services:
        """The services of the app serving ``request``."""
        return Services.of_app(request.app)

    @staticmethod
    def of_app(app: Litestar) -> Services:
        """The services of ``app`` (set by its lifespan)."""
        services: Services = app.state.services
        return services
