"""``create_app()``: the ASGI application, wired from settings."""

from __future__ import annotations

import asyncio
import functools
import gc
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from litestar import Litestar, Response
from litestar.exceptions import HTTPException

from cmc import background, holdout, logs, screens, sessions, throttle
from cmc.api import (
    HttpRequest,
    analytics,
    cfs,
    console,
    delivery,
    links,
    merchant,
    ops,
    optout,
    params,
    pos,
    token,
)
from cmc.api.edge import Edge
from cmc.api.hot import HotRoutes
from cmc.api.metrics import Metrics
from cmc.api.problems import handle_api_error, handle_http_exception, handle_unexpected
from cmc.api.services import Services
from cmc.auth import Tokens
from cmc.cfs_feed import CfsFeed
from cmc.clock import Clock, system_clock
from cmc.config import Settings
from cmc.errors import ApiError
from cmc.login import Login
from cmc.marketing import react
from cmc.outbox import Dispatcher
from cmc.registry import DirectoryCache
from cmc.rollup import Rollups
from cmc.store import meta, migrate, notifications
from cmc.store.database import libpq_dsn
from cmc.store.statistics import Statistics

JWT_KEY = "jwt_secret"
"""The ``meta`` key of the generated token signing key (when ``CMC_JWT_SECRET`` is unset)."""
ROUTES = [
    token.token,
    *pos.ROUTES,
    *merchant.ROUTES,
    *analytics.ROUTES,
    *ops.ROUTES,
    *links.ROUTES,
    *cfs.ROUTES,
    *optout.ROUTES,
    *delivery.ROUTES,
    *console.ROUTES,
]


def _http_exception(request: HttpRequest, exc: HTTPException) -> Response[bytes]:
    """A framework error: a page on the console's paths (even one no route matched), else a problem."""
    if console.is_console_path(request.url.path):
        return console.framework_error_page(request, exc)
    return handle_http_exception(request, exc)


def create_app(settings: Settings | None = None, *, clock: Clock = system_clock) -> Edge:
    """The CMC service as an ASGI app (uvicorn's ``--factory`` target); ``clock`` is its only time source."""
    settings = settings or Settings.from_env()
    logs.configure(settings.log_level)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        db = settings.open_database()
        await db.write(lambda conn: None)  # fail fast when the store is unreachable
        await asyncio.to_thread(migrate.upgrade, db)
        key = settings.jwt_secret
        if not key:
            key = await db.write(meta.get_or_create, JWT_KEY, secrets.token_urlsafe(48))
        if settings.session_keys is None:
            await db.write(sessions.ensure_key, now=clock())
        await db.write(screens.ensure_key)  # before the first snapshot: it signs the screen tokens
        await holdout.ensure_secret(db)  # before the snapshot: companies' holdout salts derive from it
        directory = DirectoryCache(db, refresh=settings.registry_refresh, session_keys=settings.session_keys)
        await directory.start()
        feed = CfsFeed(db, poll=settings.cfs_poll)
        await feed.start()
        listener = None
        if db.dialect == "postgresql":
            wake = {notifications.CFS_CHANNEL: feed.wake, notifications.REGISTRY_CHANNEL: directory.wake}
            listener = notifications.Listener(libpq_dsn(settings.database_url), wake)
            await listener.start()
        # The in-process outbox dispatcher; turn it off (CMC_DISPATCHER=0) when `cmc worker`s send.
        dispatcher = Dispatcher(db, settings, clock=clock) if settings.dispatcher else None
        if dispatcher is not None:
            await dispatcher.start()
        app.state.dispatcher = dispatcher
        # PostgreSQL: statistics for the busiest tables when autovacuum has not made them yet.
        statistics = Statistics(db) if db.dialect == "postgresql" else None
        if statistics is not None:
            await statistics.start()
        # The analytics roll-up (CMC_ROLLUP_SECONDS=0 turns it off: analytics count from the rows).
        rollups = None
        if settings.rollup_every > timedelta(0):
            rollups = Rollups(db, clock=clock, session_ttl=settings.session_ttl, every=settings.rollup_every)
            await rollups.start()
        limits = throttle.Limits(
            per_client=settings.auth_failures_per_client,
            per_address=settings.auth_failures_per_address,
            window=settings.auth_failure_window,
        )
        app.state.services = Services(
            settings=settings,
            db=db,
            directory=directory,
            tokens=Tokens(key, ttl=settings.token_ttl, directory=directory, db=db),
            login=Login(db, directory, limits=limits, clock=clock, tarpit=settings.auth_tarpit),
            metrics=metrics,
            react=functools.partial(react, base_url=settings.base_url),
            feed=feed,
            clock=clock,
        )
        # Everything built so far lives as long as the process: keep the collector from rescanning it.
        gc.freeze()
        # A tender allocates thousands of short-lived objects; collecting every 700 allocations
        # costs more than the garbage it finds. Cycles are still collected, less often.
        gc.set_threshold(20_000, 20, 20)
        try:
            yield
        finally:
            steps: list[background.Step] = []
            if rollups is not None:
                steps.append(("rollups", rollups.stop))
            if statistics is not None:
                steps.append(("statistics", statistics.stop))
            if dispatcher is not None:
                steps.append(("dispatcher", dispatcher.stop))
            if listener is not None:
                steps.append(("listener", listener.stop))
            steps += [("feed", feed.stop), ("directory", directory.stop), ("database", db.close)]
            await background.shut_down(steps)

    app = Litestar(
        route_handlers=ROUTES,
        before_request=params.refuse_nul,
        lifespan=[lifespan],
        exception_handlers={
            ApiError: handle_api_error,
            HTTPException: _http_exception,
            Exception: handle_unexpected,
        },
        request_max_body_size=settings.max_body_bytes,
        openapi_config=None,
        logging_config=None,
    )
    templates = [route.path for route in app.routes]
    hot = HotRoutes(lambda: Services.of_app(app))
    return Edge(app, templates=templates, metrics=metrics, access_log=settings.access_log, hot=hot)
