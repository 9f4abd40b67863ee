"""Short link codes and the public URLs built on them (pure: no I/O, the base URL is passed in).

``base_url`` is ``Settings.base_url`` (``CMC_PUBLIC_URL`` without a trailing slash). The routes that
answer these URLs live in ``cmc.api.pages``.
"""

from __future__ import annotations

import secrets
from typing import TypedDict
from urllib.parse import quote, urlencode

__all__ = [
    "ShortLinkUrls",
    "cfs_carousel_url",
    "cfs_events_path",
    "new_code",
    "qr_svg_url",
    "short_link_urls",
]


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


def cfs_carousel_url(
    base_url: str, pos_system_id: str, terminal_id: str, *, template_id: int | str | None = None
) -> str:
    """``cfsTemplate.cfsCarouselUrl``: the terminal's customer-facing screen page, on ``template_id``."""
    url = f"{base_url.rstrip('/')}{cfs_page_path(pos_system_id, terminal_id)}"
    return url if template_id is None else f"{url}?{urlencode({'template': template_id})}"


def cfs_page_path(pos_system_id: str, terminal_id: str) -> str:
    """``/cfs/{posSystemId}/{terminalId}``, each id percent-encoded."""
    return f"/cfs/{quote(pos_system_id, safe='')}/{quote(terminal_id, safe='')}"


def cfs_events_path(pos_system_id: str, terminal_id: str) -> str:
    """The server-sent events stream the CFS page listens to."""
    return f"{cfs_page_path(pos_system_id, terminal_id)}/events"
