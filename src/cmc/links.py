"""Short links: ``/s/{code}`` redirects to a widget's landing page and counts the scan.

Codes are unguessable (128 random bits). The URL builders are pure (the base URL is passed in:
``Settings.base_url``); every statement on ``short_links`` is here. The pages that answer these
URLs live in ``cmc.api.links``.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple, TypedDict

from sqlalchemy import bindparam, insert, select, update

from cmc.store import tables
from cmc.store.driver import Tx
from cmc.store.statements import Statement
from cmc.store.types import UtcDateTime

if TYPE_CHECKING:
    from cmc.registry.setup import Widget
    from cmc.sale import Sale

__all__ = [
    "LinkPage",
    "ShortLinkUrls",
    "create",
    "new_code",
    "page_of",
    "qr_svg_url",
    "record_scan",
    "short_link_urls",
]

_CODE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_s = tables.short_links
_INSERT = Statement(insert(_s), name="links.insert", keys=[c.name for c in _s.columns])
_SCAN = Statement(
    update(_s)
    .where(_s.c.code == bindparam("scanned"))
    .values(scans=_s.c.scans + 1, last_scan_at=bindparam("now", type_=UtcDateTime))
    .returning(_s.c.target_url),
    name="links.scan",
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


async def create(tx: Tx, sale: Sale, widget: Widget) -> str:
    """A new short link of ``sale`` to the widget's landing page (``{code}`` becomes the code)."""
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
    }
    await tx.execute(_INSERT, row)
    return code


async def record_scan(tx: Tx, code: str, *, now: datetime) -> str | None:
    """Count one scan of ``code``; its target URL, or None for an unknown code."""
    if not _CODE.match(code):
        return None
    row = await tx.first(_SCAN, {"scanned": code, "now": now})
    return None if row is None else str(row[0])


async def page_of(tx: Tx, code: str) -> LinkPage | None:
    """The widget title and company of short link ``code``, or None when there is no such link."""
    if not _CODE.match(code):
        return None
    return await tx.first(_PAGE, {"code": code})
