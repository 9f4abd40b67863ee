"""HTML pages: our templates (``cmc.web``) rendered with a fresh CSP nonce per response.

Every page may be framed by any page (the POS shows them in iframes) and runs only our own inline
script and style, allowed by the nonce.
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
    html = render(template, nonce=nonce, look=look, **context)
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
    # Litestar adds "; charset=utf-8" to text media types itself.
    return Response(html.encode(), status_code=status, media_type="text/html", headers=headers)
