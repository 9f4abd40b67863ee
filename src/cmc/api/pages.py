"""Public pages: short links, QR images and pages, the customer-facing screen (CFS), opt-out.

None of these need a token: a customer's phone opens ``/s/{code}`` and ``/u/{token}``, and the CFS
iframe opens ``/cfs/...``. Merchant text (widget titles, slides) is data: it fills our Jinja2
templates through autoescaped variables and is never compiled as a template itself. Every page may
be framed by any page (the POS shows them in iframes) and runs only our own inline script
and style, allowed by a per-response nonce.
"""

from __future__ import annotations

import functools
import math
import re
import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
import msgspec
from litestar import Response, get, post
from litestar.params import FromPath
from litestar.response import Redirect, ServerSentEvent
from litestar.response.sse import ServerSentEventMessage
from markupsafe import Markup
from sqlalchemy import Connection, select, update

from cmc import links
from cmc.api import HttpRequest
from cmc.api.services import Services
from cmc.cfs_feed import CfsEvent, CfsFeed, events_after, last_event
from cmc.directory import Company, Directory
from cmc.errors import ApiError, NotFound
from cmc.outbox.optouts import opt_out
from cmc.placeholders import fill
from cmc.qr import qr_png, qr_svg
from cmc.store import tables

TEMPLATES = Path(__file__).resolve().parent.parent / "web" / "templates"
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
)

QR_SECONDS = 45
"""How long the CFS page shows a QR before going back to the slides (unless another event comes)."""
GREETING_WINDOW = timedelta(minutes=2)
"""A CFS page opened this soon after a sale on its terminal greets that customer (and shows the QR)."""
KEEPALIVE_SECONDS = 15.0
RECONNECT_MS = 2000
REPLAY_WINDOW = timedelta(minutes=1)
"""A reconnecting CFS page (``Last-Event-ID``) gets the events it missed within this window."""
DEFAULT_INTERVAL = 6.0
IMMUTABLE = "public, max-age=31536000, immutable"
_CODE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
WELCOME = [{"title": "Welcome", "body": ""}]


class FeedNotRunning(ApiError):
    """The live CFS feed is not running in this process."""

    status, title, slug = 503, "Service Unavailable", "cfs-feed-down"


# --- short links and QR -------------------------------------------------------------------------


@get("/s/{code:str}")
async def short_link(request: HttpRequest, code: FromPath[str]) -> Redirect:
    """Count the scan and redirect to the widget's landing page."""
    services = Services.of(request)
    target = await services.db.write(record_scan, code, now=services.clock())
    if target is None:
        raise NotFound("No such short link.")
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    return Redirect(target, status_code=302, headers=headers)


@get("/qr/{name:str}")
async def qr(request: HttpRequest, name: FromPath[str]) -> Response[bytes]:
    """``/qr/{code}.png`` and ``.svg``: the QR of the short link; ``/qr/{code}``: the full-screen page."""
    code, dot, kind = name.partition(".")
    if dot and kind not in {"png", "svg"}:
        raise NotFound("No such QR image format (use .png or .svg).")
    services = Services.of(request)
    title = await _link_title(services, code)
    url = links.short_link_urls(services.settings.base_url, code)["shortLinkUrl"]
    if kind == "png":
        return Response(_image(url, "png"), media_type="image/png", headers={"Cache-Control": IMMUTABLE})
    if kind == "svg":
        return Response(_image(url, "svg"), media_type="image/svg+xml", headers={"Cache-Control": IMMUTABLE})
    return _page("qr.html", title=title, svg=Markup(_image(url, "svg").decode()))  # noqa: S704


@get("/qr/{code:str}/preview")
async def qr_preview(request: HttpRequest, code: FromPath[str]) -> Response[bytes]:
    """A small QR with the title and the short URL, for the cashier's screen."""
    services = Services.of(request)
    title = await _link_title(services, code)
    url = links.short_link_urls(services.settings.base_url, code)["shortLinkUrl"]
    svg = Markup(_image(url, "svg").decode())  # noqa: S704 - our own SVG, no merchant text in it
    return _page("qr_preview.html", title=title, svg=svg, short_url=url)


def record_scan(conn: Connection, code: str, *, now: datetime) -> str | None:
    """Count one scan of ``code``; its target URL, or None for an unknown code."""
    if not _CODE.match(code):
        return None
    s = tables.short_links
    query = (
        update(s)
        .where(s.c.code == code)
        .values(scans=s.c.scans + 1, last_scan_at=now)
        .returning(s.c.target_url)
    )
    target: str | None = conn.execute(query).scalar()
    return target


def link_title(conn: Connection, code: str) -> str | None:
    """The widget title of short link ``code``, or None when there is no such link."""
    if not _CODE.match(code):
        return None
    s = tables.short_links
    title: str | None = conn.execute(select(s.c.title).where(s.c.code == code)).scalar()
    return title


async def _link_title(services: Services, code: str) -> str:
    title = await services.db.read(link_title, code)
    if title is None:
        raise NotFound("No such short link.")
    return title


@functools.lru_cache(maxsize=512)
def _image(url: str, kind: str) -> bytes:
    """The QR of ``url`` as png or svg (with a viewBox: it scales to the box CSS gives it)."""
    if kind == "png":
        return qr_png(url, scale=10, border=4)
    return _scalable(qr_svg(url, scale=10, border=4))


def _scalable(svg: bytes) -> bytes:
    """Add a viewBox so the SVG scales to whatever box CSS gives it (segno only sets width/height)."""
    match = re.match(rb'<svg([^>]*?) width="(\d+)" height="(\d+)"', svg)
    if match is None:
        return svg
    width, height = match[2].decode(), match[3].decode()
    box = f' viewBox="0 0 {width} {height}"'.encode()
    return svg[: match.end()] + box + svg[match.end() :]


# --- the customer-facing screen ------------------------------------------------------------------


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
    templates = cfs_templates(company.config)
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
        "events": links.cfs_events_path(pos_system_id, terminal_id),
    }
    slides = [Slide(fill(s["title"], values), fill(s["body"], values)) for s in raw]
    return _page(
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


def cfs_templates(config: Mapping[str, Any]) -> dict[str, list[dict[str, str]]]:
    """The company's CFS templates by id (as text), each a list of ``{title, body}`` slides."""
    templates: dict[str, list[dict[str, str]]] = {}
    for template in config.get("cfsTemplates") or []:
        if not isinstance(template, Mapping) or template.get("id") is None:
            continue
        slides = [
            {"title": _text(slide.get("title")), "body": _text(slide.get("body"))}
            for slide in template.get("slides") or []
            if isinstance(slide, Mapping)
        ]
        templates[str(template["id"])] = slides or WELCOME
    return templates


def scalars(payload: Mapping[str, Any]) -> dict[str, str]:
    """The payload's text and number fields, as placeholder values."""
    return {
        key: str(value)
        for key, value in payload.items()
        if isinstance(value, str | int | float) and not isinstance(value, bool)
    }


def _text(value: Any) -> str:
    return "" if value is None else str(value)


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


# --- opt-out -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contact:
    """Who a message went to, and from which merchant."""

    pos_system_id: str
    company_id: str
    channel: str
    recipient: str


@get("/u/{token:str}")
async def unsubscribe(request: HttpRequest, token: FromPath[str]) -> Response[bytes]:
    """Opt the message's recipient out of that merchant's messages on that channel, and say so."""
    return await _unsubscribe(request, token)


@post("/u/{token:str}", status_code=200)
async def unsubscribe_one_click(request: HttpRequest, token: FromPath[str]) -> Response[bytes]:
    """RFC 8058 one-click unsubscribe (``List-Unsubscribe-Post``): the same as visiting the link."""
    return await _unsubscribe(request, token)


async def _unsubscribe(request: HttpRequest, token: str) -> Response[bytes]:
    services = Services.of(request)
    contact = await services.db.write(opt_out_contact, token, now=services.clock())
    if contact is None:
        lines = ["This unsubscribe link is not valid. It may have been mistyped."]
        return _page("message.html", heading="Link not found", lines=lines, status=404, cache="no-store")
    company = services.directory.current.companies.get((contact.pos_system_id, contact.company_id))
    sender = company.name if company else "this store"
    kind = {"sms": "text messages", "email": "emails"}.get(contact.channel, "messages")
    lines = [
        f"{mask(contact.recipient)} will receive no more {kind} from {sender}.",
        "You can close this page.",
    ]
    return _page("message.html", heading="You are unsubscribed", lines=lines, cache="no-store")


def opt_out_contact(conn: Connection, token: str, *, now: datetime) -> Contact | None:
    """Record the opt-out of the message carrying ``token`` (idempotent); None for an unknown token."""
    m = tables.messages
    row = conn.execute(
        select(m.c.pos_system_id, m.c.company_id, m.c.channel, m.c.recipient).where(m.c.optout_token == token)
    ).first()
    if row is None or not opt_out(conn, token, now=now):
        return None
    return Contact(row.pos_system_id, row.company_id, row.channel, row.recipient)


def mask(recipient: str) -> str:
    """``ada@example.com`` → ``a••@example.com``; ``+14155550100`` → ``••••••••0100``."""
    name, at, domain = recipient.partition("@")
    if at:
        return f"{name[:1]}{'•' * min(max(len(name) - 1, 2), 6)}@{domain}"
    return "•" * max(len(recipient) - 4, 2) + recipient[-4:]


# --- rendering -----------------------------------------------------------------------------------


def _page(
    template: str, *, status: int = 200, cache: str = "public, max-age=300", **context: Any
) -> Response[bytes]:
    """Render ``template`` with a fresh CSP nonce: our inline code only; frameable by any page.

    No ``frame-ancestors`` (nor ``X-Frame-Options``): ``frame-ancestors *`` would still refuse
    parents on ``file:``, ``about:`` or an app's own scheme, which is how many POS apps embed a CFS.
    """
    nonce = secrets.token_urlsafe(16)
    html = _env.get_template(template).render(nonce=nonce, **context)
    csp = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "img-src 'self' data: http: https:; connect-src 'self'; base-uri 'none'; form-action 'self'"
    )
    headers = {
        "Content-Security-Policy": csp,
        "Cache-Control": cache,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    return Response(html.encode(), status_code=status, media_type="text/html; charset=utf-8", headers=headers)


ROUTES = [short_link, qr, qr_preview, cfs_page, cfs_events, unsubscribe, unsubscribe_one_click]
