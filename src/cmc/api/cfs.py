"""The customer-facing screen (CFS): ``/cfs/{token}`` and its event stream ``/cfs/{token}/events``.

The token is the screen's pairing credential (``cmc.screens``): without a valid one both answer 404,
the same 404 whether the screen does not exist, has no CFS or was rotated. The page shows the idle
slides of the screen's template; the stream tells it what to show (``cmc.screen_state``): the current
state at once on (re)connecting, then each sale at this screen as it happens. A stream whose token
stops being valid ends, and the page's reconnect gets the 404.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass

import msgspec
from litestar import Response, get
from litestar.params import FromPath
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage

from cmc import screen_state, screens
from cmc.api import HttpRequest
from cmc.api.html import page
from cmc.api.services import Services
from cmc.cfs_feed import CfsEvent, CfsFeed, last_event
from cmc.errors import ApiError, NotFound
from cmc.registry import Company, Directory, Location
from cmc.screens import Screen
from cmc.web import company_look

KEEPALIVE_SECONDS = 15.0
CHECK_SECONDS = 1.0
"""How often an open stream checks that its token is still valid (a rotation ends it this fast)."""
RECONNECT_MS = 2000
DEFAULT_INTERVAL = 6.0


class FeedNotRunning(ApiError):
    """The live CFS feed is not running in this process."""

    status, title, slug = 503, "Service Unavailable", "cfs-feed-down"


@dataclass(frozen=True)
class Paired:
    """The screen a valid token opens, with its location and company."""

    screen: Screen
    location: Location
    company: Company

    @property
    def values(self) -> dict[str, str]:
        """What the screen's merchant text may name outside a sale."""
        return {"companyName": self.company.name, "locationName": self.location.name}


def paired(directory: Directory, token: str) -> Paired:
    """The screen of ``token`` in the registry snapshot; 404 (saying nothing more) otherwise."""
    screen = directory.screens.get(token)
    location = directory.locations.get((screen.pos_system_id, screen.location_id)) if screen else None
    company = directory.companies.get((location.pos_system_id, location.company_id)) if location else None
    if screen is None or location is None or company is None:
        raise NotFound("No such screen.")
    return Paired(screen, location, company)


@get("/cfs/{token:str}")
async def cfs_page(request: HttpRequest, token: FromPath[str]) -> Response[bytes]:
    """The screen's page: its template's idle slides, rotating; the event stream does the rest."""
    services = Services.of(request)
    found = paired(services.directory.current, token)
    setup = found.company.setup
    template, pinned = screen_state.screen_template(setup, request.query_params.get("template"))
    templates = [*setup.cfs_templates.values()] or [screen_state.WELCOME]
    slides = {str(t.id): screen_state.idle_slides(t, found.values) for t in templates}
    events = screens.events_path(token) + (f"?template={template.id}" if pinned else "")
    config = {
        "templates": slides,
        "current": str(template.id),
        "intervalMs": int(_interval(request.query_params.get("interval")) * 1000),
        "events": events,
    }
    return page(
        "cfs.html",
        look=company_look(found.company),
        slides=slides[str(template.id)],
        config=config,
        cache="no-store",
    )


@get("/cfs/{token:str}/events")
async def cfs_events(request: HttpRequest, token: FromPath[str]) -> ServerSentEvent:
    """Server-sent events for the screen's page: ``ready``, the current ``state``, then one per sale."""
    services = Services.of(request)
    paired(services.directory.current, token)
    if services.feed is None:
        raise FeedNotRunning()
    stream = _stream(services, services.feed, token, request.query_params.get("template"))
    return ServerSentEvent(stream, headers={"Cache-Control": "no-store"})


async def _stream(
    services: Services, feed: CfsFeed, token: str, wanted: str | None
) -> AsyncIterator[ServerSentEventMessage]:
    screen = paired(services.directory.current, token).screen
    with feed.subscribe(screen) as subscription:
        # Subscribed before the current state is read: a sale committed meanwhile still arrives.
        yield ServerSentEventMessage(event="ready", data="{}", retry=RECONNECT_MS)
        newest = await services.db.read(last_event, screen)
        yield _state(services, token, newest, wanted)
        seen = newest.id if newest else 0
        quiet = 0.0
        while True:
            event = await subscription.next(CHECK_SECONDS)
            if services.directory.current.screens.get(token) != screen:
                return  # rotated or unregistered: the page's reconnect gets a 404
            if event is not None and event.id > seen:
                yield _state(services, token, event, wanted)
                quiet = 0.0
            elif (quiet := quiet + CHECK_SECONDS) >= KEEPALIVE_SECONDS:
                yield ServerSentEventMessage(comment="keep-alive", data=None)
                quiet = 0.0


def _state(
    services: Services, token: str, event: CfsEvent | None, wanted: str | None
) -> ServerSentEventMessage:
    """What the screen shows now, with the registry as it is now."""
    found = paired(services.directory.current, token)
    setup = found.company.setup
    template, pinned = screen_state.screen_template(setup, wanted)
    shown = screen_state.state(
        event,
        template,
        setup=setup,
        pinned=pinned,
        values=found.values,
        base_url=services.settings.base_url,
        now=services.clock(),
    )
    return ServerSentEventMessage(event="state", data=msgspec.json.encode(shown).decode())


def _interval(raw: str | None) -> float:
    """``?interval=`` seconds, kept between 1 and 300; the default when missing or not a number."""
    try:
        seconds = float(raw) if raw else DEFAULT_INTERVAL
    except ValueError:
        seconds = DEFAULT_INTERVAL
    return DEFAULT_INTERVAL if math.isnan(seconds) else min(max(seconds, 1.0), 300.0)


ROUTES = [cfs_page, cfs_events]
