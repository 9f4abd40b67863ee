"""Short links and QR codes: ``/s/{code}``, ``/qr/{code}.png|.svg``, ``/qr/{code}`` and its preview.

No token needed: a customer's phone opens ``/s/{code}`` and the CFS shows ``/qr/...``; codes are
unguessable.
"""

from __future__ import annotations

import functools
import re

from litestar import Response, get
from litestar.params import FromPath
from litestar.response import Redirect
from markupsafe import Markup

from cmc import links
from cmc.api import HttpRequest
from cmc.api.html import page
from cmc.api.services import Services
from cmc.errors import NotFound
from cmc.qr import qr_png, qr_svg
from cmc.web import Look, company_look

IMMUTABLE = "public, max-age=31536000, immutable"


@get("/s/{code:str}")
async def short_link(request: HttpRequest, code: FromPath[str]) -> Redirect:
    """Record the scan and redirect to the widget's landing page."""
    services = Services.of(request)
    agent = links.agent_of(request.headers.get("user-agent"))
    target = await services.db.transact(links.record_scan, code, now=services.clock(), agent=agent)
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
    title, look = await _link_page(services, code)
    url = links.short_link_urls(services.settings.base_url, code)["shortLinkUrl"]
    if kind == "png":
        return Response(_image(url, "png"), media_type="image/png", headers={"Cache-Control": IMMUTABLE})
    if kind == "svg":
        return Response(_image(url, "svg"), media_type="image/svg+xml", headers={"Cache-Control": IMMUTABLE})
    svg = Markup(_image(url, "svg").decode())  # noqa: S704 - our own SVG, no merchant text in it
    return page("qr.html", look=look, title=title, svg=svg)


@get("/qr/{code:str}/preview")
async def qr_preview(request: HttpRequest, code: FromPath[str]) -> Response[bytes]:
    """A small QR with the title and the short URL, for the cashier's screen."""
    services = Services.of(request)
    title, look = await _link_page(services, code)
    url = links.short_link_urls(services.settings.base_url, code)["shortLinkUrl"]
    svg = Markup(_image(url, "svg").decode())  # noqa: S704 - our own SVG, no merchant text in it
    return page("qr_preview.html", look=look, title=title, svg=svg, short_url=url)


async def _link_page(services: Services, code: str) -> tuple[str, Look]:
    """The link's widget title and its company's look; 404 for an unknown code."""
    found = await services.db.query(links.page_of, code)
    if found is None:
        raise NotFound("No such short link.")
    company = services.directory.current.companies.get((found.pos_system_id, found.company_id))
    return found.title, company_look(company)


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


ROUTES = [short_link, qr, qr_preview]
