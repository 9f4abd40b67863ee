"""Customer-facing screens (CFS): which terminals have one, and the credential that pairs a device.

A screen is a terminal registered with ``cfs: true``, named by (posSystemId, posLocationId,
terminalId): terminal ids are unique per location only, so the location is part of every key. A
device shows a screen by opening its URL, ``/cfs/{token}``. The token is the credential: an
HMAC-SHA256 of the screen's ids and its generation under a key generated once and kept in ``meta``,
so it can be neither guessed nor derived from another screen's.

Rotating a screen (``cmc screens rotate``) bumps its generation (a row in ``screens``; no row is
generation 0) and the registry version, so every process rebuilds its token index (the registry
snapshot holds it) and the old URL stops working within ``CMC_REGISTRY_REFRESH_SECONDS``.

Every statement on ``screens`` is here. The page and its event stream are ``cmc.api.cfs``; what a
screen shows comes from ``cmc.cfs_feed`` and ``cmc.screen_state``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import NamedTuple
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, Connection, and_, select, update

from cmc.store import meta, tables

__all__ = [
    "KEY",
    "Screen",
    "Signer",
    "ensure_key",
    "events_path",
    "generation",
    "page_path",
    "page_url",
    "rotate",
    "signer",
    "token",
]

KEY = "screen_key"
"""The ``meta`` key of the secret the screen tokens are signed with."""
TOKEN_BYTES = 18
"""144 bits of the HMAC: 24 URL-safe characters."""

_t = tables.screens


class Screen(NamedTuple):
    """A customer-facing screen: the terminal it belongs to."""

    pos_system_id: str
    location_id: str
    terminal_id: str

    def __str__(self) -> str:
        return "/".join(self)


def token(key: str, screen: Screen, generation: int) -> str:
    """The screen's credential for ``generation`` (pure)."""
    message = json.dumps([*screen, generation]).encode()
    digest = hmac.new(key.encode(), message, hashlib.sha256).digest()[:TOKEN_BYTES]
    return base64.urlsafe_b64encode(digest).decode()


class Signer:
    """Tokens of the screens as the database has them now (the key and every rotated generation)."""

    def __init__(self, key: str | None, generations: Mapping[Screen, int]) -> None:
        self._key = key
        self._generations = generations

    def token(self, screen: Screen) -> str | None:
        """The screen's current token; None before the key exists (no process has started yet)."""
        if self._key is None:
            return None
        return token(self._key, screen, self._generations.get(screen, 0))

    def tokens(self, screens: Iterable[Screen]) -> dict[Screen, str]:
        """The current token of each screen (none before the key exists)."""
        return {screen: t for screen in screens if (t := self.token(screen)) is not None}


def signer(conn: Connection) -> Signer:
    """Read the key and the generations (the registry snapshot builds its token index with this)."""
    generations = {
        Screen(row.pos_system_id, row.location_id, row.terminal_id): row.generation
        for row in conn.execute(select(_t))
    }
    return Signer(meta.get(conn, KEY), generations)


def ensure_key(conn: Connection) -> str:
    """The signing key, generated on first use and kept, so every process and ``cmc screens`` agree."""
    return meta.get_or_create(conn, KEY, secrets.token_urlsafe(32))


def generation(conn: Connection, screen: Screen) -> int:
    """The screen's current generation (0 until it is first rotated)."""
    found = conn.execute(select(_t.c.generation).where(_where(screen))).scalar()
    return int(found or 0)


def rotate(conn: Connection, screen: Screen, *, now: datetime) -> int:
    """Give the screen a new credential (the old URL stops working); returns the new generation.

    The registry version moves with it, so every process reloads its snapshot and its tokens.
    """
    from cmc.registry import store as registry_store  # here: the registry snapshot imports this module

    new = generation(conn, screen) + 1
    changed = conn.execute(update(_t).where(_where(screen)).values(generation=new, rotated_at=now))
    if not changed.rowcount:
        conn.execute(_t.insert().values(**screen._asdict(), generation=new, rotated_at=now))
    registry_store.bump_version(conn)
    return new


def page_path(token: str) -> str:
    """``/cfs/{token}``: the screen's page."""
    return f"/cfs/{token}"


def events_path(token: str) -> str:
    """The server-sent events stream the screen's page listens to."""
    return f"{page_path(token)}/events"


def page_url(base_url: str, token: str, *, template_id: int | str | None = None) -> str:
    """The screen's absolute URL (``cfsCarouselUrl``, the carousel endpoint), on ``template_id``."""
    url = f"{base_url.rstrip('/')}{page_path(token)}"
    return url if template_id is None else f"{url}?{urlencode({'template': template_id})}"


def _where(screen: Screen) -> ColumnElement[bool]:
    return and_(
        _t.c.pos_system_id == screen.pos_system_id,
        _t.c.location_id == screen.location_id,
        _t.c.terminal_id == screen.terminal_id,
    )
