"""Customer-facing screens (CFS): the carousel URLs of a terminal's screen (pure).

The page and its event stream are served by ``cmc.api.cfs``; what a screen shows comes from
``cmc.cfs_feed``.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

__all__ = ["carousel_url", "events_path", "page_path"]


def carousel_url(
    base_url: str, pos_system_id: str, terminal_id: str, *, template_id: int | str | None = None
) -> str:
    """``cfsTemplate.cfsCarouselUrl``: the terminal's customer-facing screen page, on ``template_id``."""
    url = f"{base_url.rstrip('/')}{page_path(pos_system_id, terminal_id)}"
    return url if template_id is None else f"{url}?{urlencode({'template': template_id})}"


def page_path(pos_system_id: str, terminal_id: str) -> str:
    """``/cfs/{posSystemId}/{terminalId}``, each id percent-encoded."""
    return f"/cfs/{quote(pos_system_id, safe='')}/{quote(terminal_id, safe='')}"


def events_path(pos_system_id: str, terminal_id: str) -> str:
    """The server-sent events stream the CFS page listens to."""
    return f"{page_path(pos_system_id, terminal_id)}/events"
