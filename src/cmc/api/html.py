"""HTML pages: our templates (``cmc.web``) rendered with a fresh CSP nonce per response.

Every shopper page may be framed by any page (the POS shows them in iframes) and runs only our own
inline script and style, allowed by the nonce. Merchant console pages are never framed (they act
with a merchant's session) and may also load our own static scripts and style sheets.
"""

from __future__ import annotations

import secrets
from typing import Any

from litestar import Response

from cmc.web import NEUTRAL, Look, render


def page(
    template: str,
    *,
    look: Look = NEUTRAL,
    status: int = 200,
    cache: str = "public, max-age=300",
    **context: Any,
) -> Response[bytes]:
    """Render ``template`` in a company's ``look``: our inline code only; frameable by any page.

    No ``frame-ancestors`` (nor ``X-Frame-Options``): ``frame-ancestors *`` would still refuse
    parents on ``file:``, ``about:`` or an app's own scheme, which is how many POS apps embed a CFS.
    """
    nonce = secrets.token_urlsafe(16)
    headers = {
        "Content-Security-Policy": _csp(nonce, sources="", framing=""),
        "Cache-Control": cache,
        "Referrer-Policy": "no-referrer",
    }
    return _respond(template, nonce, headers, status=status, look=look, context=context)


def console_page(
    template: str, *, look: Look, status: int = 200, headers: dict[str, str] | None = None, **context: Any
) -> Response[bytes]:
    """Render a merchant console page: never framed, never cached, scripts only from our static files.

    ``Referrer-Policy: same-origin``, not ``no-referrer``: a browser sends ``Origin: null`` with the
    POSTs of a no-referrer page, and the console's CSRF check needs its real origin.
    """
    nonce = secrets.token_urlsafe(16)
    policy = {
        "Content-Security-Policy": _csp(nonce, sources="'self' ", framing="; frame-ancestors 'none'"),
        "Cache-Control": "no-store",
        "Referrer-Policy": "same-origin",
        "X-Frame-Options": "DENY",
    }
    return _respond(template, nonce, {**policy, **(headers or {})}, status=status, look=look, context=context)


def _csp(nonce: str, *, sources: str, framing: str) -> str:
    return (
        f"default-src 'none'; script-src {sources}'nonce-{nonce}'; style-src {sources}'nonce-{nonce}'; "
        "img-src 'self' data: http: https:; connect-src 'self'; base-uri 'none'; form-action 'self'" + framing
    )


def _respond(
    template: str, nonce: str, headers: dict[str, str], *, status: int, look: Look, context: dict[str, Any]
) -> Response[bytes]:
    html = render(template, nonce=nonce, look=look, **context)
    headers = {**headers, "X-Content-Type-Options": "nosniff"}
    # Litestar adds "; charset=utf-8" to text media types itself.
    return Response(html.encode(), status_code=status, media_type="text/html", headers=headers)
