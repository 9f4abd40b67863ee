"""What a customer-facing screen shows: its idle slides, or the sale just made at it (pure).

    idle (the template's slides, rotating)
      ──a sale at this screen──► sale (the thank-you line, the QR and the widget title together)
      ──its display time──► idle (nothing of the sale stays)

A sale whose rules chose a QR stays up for its template's ``displaySeconds`` (45 by default); a sale
without one shows the thank-you line alone for ``THANKS_SECONDS`` (less when the template's display
time is shorter). A screen that connects (or reconnects) is told the state it should be in now: the
sale with the time it has left, or idle. A state carries only what the screen shows: the thank-you
line, the widget title, the QR image's URL and the time left; never a transaction id or a contact.

The page (``web/templates/cfs.html``) shows the states; ``cmc.marketing`` writes ``sale_payload``
into each sale's CFS event; ``cmc.api.cfs`` computes ``state`` from a screen's newest event.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cmc import links
from cmc.cfs_feed import CfsEvent
from cmc.placeholders import fill
from cmc.registry.setup import CfsTemplate, Setup, Slide

__all__ = ["THANKS_SECONDS", "WELCOME", "idle_slides", "sale_payload", "screen_template", "state"]

THANKS_SECONDS = 6
"""How long a sale without a QR shows its thank-you line."""
_ID = re.compile(r"[0-9]{1,9}")
"""A template id in a URL (``int()`` of a long digit string would raise)."""
WELCOME = CfsTemplate(id=0, name="Welcome", slides=(Slide(title="Welcome"),))
"""The template of a company that has none."""


def sale_payload(
    *, first_name: str | None, code: str | None, title: str | None, template_id: int | None
) -> dict[str, Any]:
    """What a sale's CFS event stores (absent fields left out: one small row per sale)."""
    fields = {"firstName": first_name, "code": code, "title": title, "templateId": template_id}
    return {key: value for key, value in fields.items() if value}


def screen_template(setup: Setup, wanted: str | None) -> tuple[CfsTemplate, bool]:
    """The template a screen opened with ``?template=wanted`` shows, and whether it is pinned.

    An unknown or missing id is not pinned: the company's first template, which a sale may replace.
    """
    if wanted is not None and _ID.fullmatch(wanted) and (found := setup.cfs_templates.get(int(wanted))):
        return found, True
    return next(iter(setup.cfs_templates.values()), WELCOME), False


def idle_slides(template: CfsTemplate, values: Mapping[str, str]) -> list[dict[str, str | None]]:
    """The template's idle slides as shown (``{companyName}``, ``{locationName}`` filled)."""
    slides = template.slides or WELCOME.slides
    return [
        {"title": fill(s.title, values), "body": fill(s.body, values), "imageUrl": s.imageUrl} for s in slides
    ]


def state(
    event: CfsEvent | None,
    template: CfsTemplate,
    *,
    setup: Setup,
    pinned: bool,
    values: Mapping[str, str],
    base_url: str,
    now: datetime,
) -> dict[str, Any]:
    """What the screen on ``template`` shows at ``now``, given its newest event.

    A sale that chose a template moves an unpinned screen to it (the sale and the idle slides after it).
    """
    payload = event.payload if event else {}
    chosen = setup.cfs_templates.get(payload.get("templateId", -1))
    if chosen is not None and not pinned:
        template = chosen
    idle = {"state": "idle", "template": str(template.id)}
    if event is None:
        return idle
    code = payload.get("code")
    seconds = template.displaySeconds if code else min(THANKS_SECONDS, template.displaySeconds)
    left = seconds - (now - event.created_at).total_seconds()
    if left <= 0:
        return idle
    return {
        **idle,
        "state": "sale",
        "thanks": fill(template.thanks, {**values, "firstName": payload.get("firstName") or ""}),
        "title": payload.get("title") if code else None,
        "qr": links.qr_svg_url(base_url, code) if code else None,
        "ms": int(left * 1000),
    }
