"""Short links: ``/s/{code}`` redirects to a widget's landing page and records the scan.

Codes are unguessable (128 random bits). A link remembers the sale, merchant, store, terminal and
rule that made it; each visit adds one ``scans`` row with those and who scanned (the browser family
and whether it is a bot, from ua-parser: ``agent_of``), in the redirect's one transaction. The URL
builders are pure (the base URL is passed in: ``Settings.base_url``); every statement on
``short_links`` and ``scans`` is here. The pages that answer these URLs live in ``cmc.api.links``.

User agents are classified by ua-parser (the uap-core rules every ua-parser port shares, kept up
to date upstream; its Rust matcher when installed): its device family ``Spider`` marks crawlers and
link previewers. A request without a User-Agent counts as a bot too: every phone browser sends one.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict

import msgspec
import ua_parser
from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Select,
    bindparam,
    case,
    func,
    insert,
    select,
    update,
)

from cmc.store import buckets, tables
from cmc.store.buckets import Span
from cmc.store.driver import Tx
from cmc.store.statements import Statement, Write
from cmc.store.types import UtcDateTime

if TYPE_CHECKING:
    from cmc.registry.setup import Widget
    from cmc.sale import Sale

__all__ = [
    "Agent",
    "LinkPage",
    "Scan",
    "ScanCount",
    "ShortLinkUrls",
    "agent_of",
    "create",
    "links_made",
    "new_code",
    "page_of",
    "prune_targets",
    "qr_svg_url",
    "record_scan",
    "scan_buckets",
    "scan_counts",
    "scan_totals",
    "scans_of_sales",
    "short_link_urls",
]

_CODE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_s = tables.short_links
_v = tables.scans
_INSERT = Write.insert(_s, name="links.insert", prefix="link_")
"""Deferred: the sale's insert carries it on PostgreSQL (nobody can scan a code before the sale commits)."""
_SCANNED = ("pos_system_id", "company_id", "rule", "location_id", "terminal_id")
"""What a scan copies from its link."""
_SCAN = Statement(
    update(_s)
    .where(_s.c.code == bindparam("scanned"))
    .values(scans=_s.c.scans + 1, last_scan_at=bindparam("now", type_=UtcDateTime))
    .returning(_s.c.target_url, *(_s.c[name] for name in _SCANNED)),
    name="links.scan",
)
_RECORD_SCAN = Statement(
    insert(_v), name="links.record_scan", keys=[c.name for c in _v.columns if c.name != "id"]
)


class LinkPage(NamedTuple):
    """What a link's QR page shows: the widget title, in the colours of the link's company."""

    title: str
    pos_system_id: str
    company_id: str


_PAGE = Statement(
    select(_s.c.title, _s.c.pos_system_id, _s.c.company_id).where(_s.c.code == bindparam("code")),
    name="links.page",
    into=LinkPage,
)


class ShortLinkUrls(TypedDict):
    """The four URLs of a ``qrCodeWidget``, named as in the SendTransaction response."""

    shortLinkUrl: str
    qrCodeLinkUrl: str
    qrCodeHtmlLinkUrl: str
    qrCodePreviewLinkUrl: str


def new_code() -> str:
    """An unguessable short link code: 22 URL-safe characters (128 random bits)."""
    return secrets.token_urlsafe(16)


def short_link_urls(base_url: str, code: str) -> ShortLinkUrls:
    """The ``qrCodeWidget`` URLs of ``code``: the link itself, its QR as PNG, the QR page, the preview."""
    base = base_url.rstrip("/")
    return ShortLinkUrls(
        shortLinkUrl=f"{base}/s/{code}",
        qrCodeLinkUrl=f"{base}/qr/{code}.png",
        qrCodeHtmlLinkUrl=f"{base}/qr/{code}",
        qrCodePreviewLinkUrl=f"{base}/qr/{code}/preview",
    )


def qr_svg_url(base_url: str, code: str) -> str:
    """The QR of ``code`` as SVG (scales to any screen; what the CFS page shows)."""
    return f"{base_url.rstrip('/')}/qr/{code}.svg"


async def create(tx: Tx, sale: Sale, widget: Widget, *, rule: str) -> str:
    """A new short link of ``sale`` to the widget's landing page (``{code}`` becomes the code).

    ``rule`` is the rule whose QR widget it is: its scans count for that rule.
    """
    code = new_code()
    row = {
        "code": code,
        "pos_system_id": sale.pos.id,
        "company_id": sale.company.id,
        "location_id": sale.location.id,
        "terminal_id": sale.request.terminalId,
        "transaction_id": sale.id,
        "widget_id": widget.id,
        "title": widget.title,
        "target_url": widget.landingUrl.replace("{code}", code),
        "scans": 0,
        "created_at": sale.now,
        "last_scan_at": None,
        "rule": rule,
    }
    await tx.defer(_INSERT, row)
    return code


class Agent(NamedTuple):
    """Who scanned: the browser family of the User-Agent, and whether it is a bot."""

    family: str
    bot: bool


@functools.lru_cache(maxsize=4096)
def agent_of(user_agent: str | None) -> Agent:
    """Classify a User-Agent header (ua-parser; pure, cached: phones send few distinct ones)."""
    text = (user_agent or "").strip()
    if not text:
        return Agent("Other", True)
    parsed = ua_parser.parse(text[:1000])
    family = parsed.user_agent.family if parsed.user_agent else "Other"
    return Agent(family[:100], parsed.device is not None and parsed.device.family == "Spider")


async def record_scan(tx: Tx, code: str, *, now: datetime, agent: Agent) -> str | None:
    """Count and record one scan of ``code`` by ``agent``; its target URL, or None for an unknown code."""
    if not _CODE.match(code):
        return None
    row = await tx.first(_SCAN, {"scanned": code, "now": now})
    if row is None:
        return None
    target, *scanned = row
    values = dict(zip(_SCANNED, scanned, strict=True))
    await tx.execute(
        _RECORD_SCAN, {**values, "code": code, "scanned_at": now, "agent": agent.family, "bot": agent.bot}
    )
    return str(target)


async def page_of(tx: Tx, code: str) -> LinkPage | None:
    """The widget title and company of short link ``code``, or None when there is no such link."""
    if not _CODE.match(code):
        return None
    return await tx.first(_PAGE, {"code": code})


def prune_targets(before: datetime) -> list[tuple[Column[Any], ColumnElement[bool]]]:
    """What ``cmc prune`` deletes here: scans older than ``before`` (links stay, with their counters)."""
    return [(_v.c.id, _v.c.scanned_at < before)]


class ScanCount(NamedTuple):
    """A rule's scans in a window: by people, and by bots (crawlers, link previewers)."""

    rule: str | None
    """None: links made before links remembered their rule."""
    people: int
    bots: int


def scan_counts(
    conn: Connection, *, pos_system_id: str, company_id: str, since: datetime, until: datetime
) -> Sequence[ScanCount]:
    """Scans of the merchant's links in ``[since, until)``, per rule (for analytics)."""
    bots = func.sum(case((_v.c.bot, 1), else_=0))
    query = (
        select(_v.c.rule, func.count() - bots, bots)
        .where(
            _v.c.pos_system_id == pos_system_id,
            _v.c.company_id == company_id,
            _v.c.scanned_at >= since,
            _v.c.scanned_at < until,
        )
        .group_by(_v.c.rule)
        .order_by(_v.c.rule)
    )
    return [ScanCount(rule, int(people), int(bots)) for rule, people, bots in conn.execute(query)]


# --- analytics: a merchant's scans and links in a window, a customer's scans ----------------------------


def scan_totals(conn: Connection, span: Span) -> tuple[int, int]:
    """(scans by people, scans by bots) of the merchant's links in the span (``ix_scans_company_time``)."""
    bots = func.coalesce(func.sum(case((_v.c.bot, 1), else_=0)), 0)
    total, bot = conn.execute(select(func.count(), bots).where(*span.where(_v, "scanned_at"))).one()
    return int(total) - int(bot), int(bot)


def links_made(conn: Connection, span: Span) -> int:
    """Short links (QRs handed out) made in the span (``ix_short_links_company_time``)."""
    return int(conn.execute(select(func.count()).where(*span.where(_s, "created_at"))).scalar_one())


def made_by_hour(conn: Connection, span: Span) -> dict[datetime, int]:
    """Short links made per UTC hour in the span (for the roll-up)."""
    return buckets.counts(conn, _s, "created_at", span, "hour")


def earliest(conn: Connection, *, pos_system_id: str, company_id: str) -> datetime | None:
    """When the merchant's first short link was made."""
    return buckets.earliest(conn, _s, "created_at", pos_system_id, company_id)


def scan_buckets(conn: Connection, span: Span, bucket: str, rule: str | None = None) -> dict[datetime, int]:
    """Scans by people (bots left out) per UTC ``bucket`` in the span, of one rule or all."""
    where = [_v.c.bot.is_(False), *([] if rule is None else [_v.c.rule == rule])]
    return buckets.counts(conn, _v, "scanned_at", span, bucket, *where)


class Scan(msgspec.Struct, frozen=True, rename="camel"):
    """One visit of a customer's link, and who made it."""

    scanned_at: datetime
    code: str
    rule: str | None
    agent: str
    bot: bool


def scans_of_sales(conn: Connection, sales: Select[tuple[str]], *, limit: int) -> list[Scan]:
    """The scans of the links the sales ``sales`` selects made, newest first.

    The sales' links by ``ix_short_links_transaction``, their scans by ``ix_scans_code``.
    """
    codes = select(_s.c.code).where(_s.c.transaction_id.in_(sales))
    query = (
        select(_v.c.scanned_at, _v.c.code, _v.c.rule, _v.c.agent, _v.c.bot)
        .where(_v.c.code.in_(codes))
        .order_by(_v.c.scanned_at.desc(), _v.c.id.desc())
        .limit(limit)
    )
    return [Scan(*row) for row in conn.execute(query)]
