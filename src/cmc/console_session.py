"""The merchant console's browser session: its cookie, its CSRF token and the same-origin check (pure).

The session cookie carries the console user's access token itself (``auth.Tokens.issue_for_user``),
so the console keeps no session state: every request verifies the token as the merchant API does,
which ends the session at once when the user's password changes or the user is removed, and at the
token's expiry (``CMC_TOKEN_TTL_SECONDS``) in any case. The cookie is ``HttpOnly`` (no script reads
it), ``SameSite=Lax`` (another site's form or fetch does not carry it; following a link to the
console does), ``Secure`` when CMC's public URL is https, and lives no longer than its token.

Every state-changing request also needs:

- the session's CSRF token (a form field, or the ``X-CSRF-Token`` header htmx sends): an HMAC of
  the session's token, so a page that cannot read the cookie cannot know it, and it changes with
  every login;
- an ``Origin`` (or, where a browser sends ``Origin: null`` or none, a ``Referer``) of CMC itself.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

COOKIE = "cmc_console"
PATH = "/console"
"""The cookie goes to the console's pages only, never to the POS or merchant APIs."""
CSRF_FIELD = "_csrf"
CSRF_HEADER = "x-csrf-token"
_CSRF_PURPOSE = b"cmc console csrf v1"


@dataclass(frozen=True)
class Cookie:
    """The attributes of the session cookie (what ``Set-Cookie`` says besides the value)."""

    secure: bool
    max_age: int
    path: str = PATH
    httponly: bool = True
    samesite: Literal["lax", "strict", "none"] = "lax"


def cookie_for(public_url: str, *, max_age: int) -> Cookie:
    """The cookie's attributes for a CMC served at ``public_url``: ``Secure`` when that is https."""
    return Cookie(secure=urlsplit(public_url).scheme == "https", max_age=max(0, max_age))


def csrf_token(session: str) -> str:
    """The CSRF token of a session (its cookie's value): what the session's forms must send back."""
    return hmac.new(session.encode(), _CSRF_PURPOSE, hashlib.sha256).hexdigest()


def csrf_matches(session: str, sent: str | None) -> bool:
    """Whether ``sent`` is the session's CSRF token (compared in constant time)."""
    return sent is not None and hmac.compare_digest(csrf_token(session), sent.strip())


def origin_of(url: str | None) -> str | None:
    """``scheme://host[:port]`` of a URL, lower-cased; None when it has none (or is ``null``)."""
    if not url or url == "null":
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # e.g. an unclosed IPv6 bracket: no origin of ours
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(origin: str | None, referer: str | None, *, ours: Collection[str]) -> bool:
    """Whether a request comes from one of ``ours`` (origins): its ``Origin``, else its ``Referer``.

    A request with neither is refused: every browser sends one of them with a form or htmx POST, so
    only a client that is not a browser (and has no session cookie to abuse) sends none.
    """
    allowed = {o.lower() for o in ours}
    seen = origin_of(origin)
    if seen is None:
        seen = origin_of(referer)
    return seen is not None and seen in allowed


def safe_next(target: str | None, *, base: str) -> str:
    """Where to go after logging in: ``target`` when it is a page of this console (``base``), else ``base``.

    Anything else (another site, ``//evil.example``, another company's console) is an open redirect.
    """
    inside = bool(target) and (target == base or str(target).startswith((base + "/", base + "?")))
    controls = any(ord(c) < 32 or ord(c) == 127 for c in target or "")
    if target and inside and not controls and not any(bad in target for bad in ("\\", "//", "..")):
        return target
    return base
