"""HTML pages: our Jinja2 templates rendered with a fresh CSP nonce per response.

Merchant text (widget titles, slides) is data: it fills our templates through autoescaped variables
and is never compiled as a template itself. Every page may be framed by any page (the POS shows them
in iframes) and runs only our own inline script and style, allowed by the nonce.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import jinja2
from litestar import Response

TEMPLATES = Path(__file__).resolve().parent.parent / "web" / "templates"
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
)


def page(
    template: str, *, status: int = 200, cache: str = "public, max-age=300", **context: Any
) -> Response[bytes]:
    """Render ``template``: our inline code only; frameable by any page.

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
