"""The customer-facing screen (CFS): ``/cfs/{posSystemId}/{terminalId}`` and its event stream.

The page rotates the terminal's template slides and shows the QR of each sale live, fed by
server-sent events from ``cmc.cfs_feed``.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec
from litestar import Response, get
from litestar.params import FromPath
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage

from cmc import screens
from cmc.api import HttpRequest
from cmc.api.html import page
from cmc.api.services import Services
from cmc.cfs_feed import CfsEvent, CfsFeed, events_after, last_event
from cmc.errors import ApiError, NotFound
from cmc.placeholders import fill
from cmc.registry import Company, Directory
from cmc.registry.setup import Setup

QR_SECONDS = 45
"""How long the CFS page shows a QR before going back to the slides (unless another event comes)."""
GREETING_WINDOW = timedelta(minutes=2)
"""A CFS page opened this soon after a sale on its terminal greets that customer (and shows the QR)."""
KEEPALIVE_SECONDS = 15.0
RECONNECT_MS = 2000
REPLAY_WINDOW = timedelta(minutes=1)
"""A reconnecting CFS page (``Last-Event-ID``) gets the events it missed within this window."""
DEFAULT_INTERVAL = 6.0
WELCOME = [{"title": "Welcome", "body": ""}]


class FeedNotRunning(ApiError):
    """The live CFS feed is not running in this process."""

    status, title, slug = 503, "Service Unavailable", "cfs-feed-down"


@dataclass(frozen=True)
class Slide:
    """One carousel slide, as shown (placeholders filled)."""

    title: str
    body: str


@get("/cfs/{pos_system_id:str}/{terminal_id:str}")
async def cfs_page(
    request: HttpRequest, pos_system_id: FromPath[str], terminal_id: FromPath[str]
) -> Response[bytes]:
    """The CFS carousel of a terminal: the template's slides, then the QR of each sale, live."""
    services = Services.of(request)
    company = terminal_company(services.directory.current, pos_system_id, terminal_id)
    templates = cfs_templates(company.setup)
    wanted = request.query_params.get("template")
    pinned = wanted is not None and wanted in templates
    current = wanted if pinned else next(iter(templates), None)
    now = services.clock()
    last = await services.db.read(last_event, (pos_system_id, terminal_id), since=now - GREETING_WINDOW)
    if last is not None and not pinned and str(last.payload.get("templateId")) in templates:
        current = str(last.payload.get("templateId"))
    values = scalars(last.payload) if last else {}
    raw = templates.get(current, WELCOME) if current else WELCOME
    initial_qr = _initial_qr(last, now)
    config = {
        "templates": templates,
        "current": current,
        "pinned": pinned,
        "welcome": WELCOME,
        "intervalMs": int(_interval(request.query_params.get("interval")) * 1000),
        "qrMs": QR_SECONDS * 1000,
        "initialQrMs": initial_qr["ms"] if initial_qr else 0,
        "events": screens.events_path(pos_system_id, terminal_id),
    }
    slides = [Slide(fill(s["title"], values), fill(s["body"], values)) for s in raw]
    return page(
        "cfs.html",
        company_name=company.name,
        slides=slides,
        config=config,
        initial_qr=initial_qr,
        cache="no-store",
    )


@get("/cfs/{pos_system_id:str}/{terminal_id:str}/events")
async def cfs_events(
    request: HttpRequest, pos_system_id: FromPath[str], terminal_id: FromPath[str]
) -> ServerSentEvent:
    """Server-sent events for the terminal's CFS page: ``ready``, then one event per sale to show."""
    services = Services.of(request)
    terminal_company(services.directory.current, pos_system_id, terminal_id)
    if services.feed is None:
        raise FeedNotRunning()
    after = _event_id(request.headers.get("last-event-id"))
    stream = _stream(services, services.feed, (pos_system_id, terminal_id), after=after)
    return ServerSentEvent(stream, headers={"Cache-Control": "no-store"})


async def _stream(
    services: Services, feed: CfsFeed, key: tuple[str, str], *, after: int | None
) -> AsyncIterator[ServerSentEventMessage]:
    with feed.subscribe(*key) as subscription:
        # Subscribed before "ready" is sent: whatever happens after the page sees it reaches the page.
        yield ServerSentEventMessage(event="ready", data="{}", retry=RECONNECT_MS)
        seen = 0
        if after is not None:
            since = services.clock() - REPLAY_WINDOW
            for event in await services.db.read(events_after, after, limit=20, key=key, since=since):
                yield _message(event)
                seen = event.id
        while True:
            live = await subscription.next(KEEPALIVE_SECONDS)
            if live is None:
                yield ServerSentEventMessage(comment="keep-alive", data=None)
            elif live.id > seen:
                yield _message(live)


def _message(event: CfsEvent) -> ServerSentEventMessage:
    return ServerSentEventMessage(
        event=event.type, id=event.id, data=msgspec.json.encode(event.payload).decode()
    )


def terminal_company(directory: Directory, pos_system_id: str, terminal_id: str) -> Company:
    """The company whose location has this terminal (the first location, when ids repeat)."""
    for (pos, _), location in sorted(directory.locations.items()):
        if pos == pos_system_id and terminal_id in location.terminals:
            company = directory.companies.get((pos, location.company_id))
            if company is not None:
                return company
    raise NotFound(f"Terminal {terminal_id!r} is not registered for POS system {pos_system_id!r}.")


def cfs_templates(setup: Setup) -> dict[str, list[dict[str, str]]]:
    """The company's CFS templates by id (as text), each a list of ``{title, body}`` slides."""
    return {
        str(template.id): [{"title": s.title, "body": s.body} for s in template.slides] or WELCOME
        for template in setup.cfs_templates.values()
    }


def scalars(payload: Mapping[str, Any]) -> dict[str, str]:
    """The payload's text and number fields, as placeholder values."""
    return {
        key: str(value)
        for key, value in payload.items()
        if isinstance(value, str | int | float) and not isinstance(value, bool)
    }


def _interval(raw: str | None) -> float:
    """``?interval=`` seconds, kept between 1 and 300; the default when missing or not a number."""
    try:
        seconds = float(raw) if raw else DEFAULT_INTERVAL
    except ValueError:
        seconds = DEFAULT_INTERVAL
    return DEFAULT_INTERVAL if math.isnan(seconds) else min(max(seconds, 1.0), 300.0)


def _initial_qr(last: CfsEvent | None, now: datetime) -> dict[str, Any] | None:
    """The QR of the terminal's last sale while it should still be up: title, image URL, ms left."""
    if last is None or last.type != "qr":
        return None
    src = last.payload.get("qrSvgUrl") or last.payload.get("qrCodeLinkUrl")
    left = int((QR_SECONDS - (now - last.created_at).total_seconds()) * 1000)
    if not src or left <= 0:
        return None
    return {"title": str(last.payload.get("title") or ""), "src": str(src), "ms": left}


def _event_id(raw: str | None) -> int | None:
    return int(raw) if raw and raw.isdigit() else None


ROUTES = [cfs_page, cfs_events]
