"""``/u/{token}``: the opt-out link every email and SMS carries.

No token needed beyond the link's own: it is unguessable and names one message's recipient.
"""

from __future__ import annotations

from litestar import Response, get, post
from litestar.params import FromPath

from cmc.api import HttpRequest
from cmc.api.html import page
from cmc.api.services import Services
from cmc.outbox import optouts


@get("/u/{token:str}")
async def unsubscribe(request: HttpRequest, token: FromPath[str]) -> Response[bytes]:
    """Opt the message's recipient out of that merchant's messages on that channel, and say so."""
    return await _unsubscribe(request, token)


@post("/u/{token:str}", status_code=200)
async def unsubscribe_one_click(request: HttpRequest, token: FromPath[str]) -> Response[bytes]:
    """RFC 8058 one-click unsubscribe (``List-Unsubscribe-Post``): the same as visiting the link."""
    return await _unsubscribe(request, token)


async def _unsubscribe(request: HttpRequest, token: str) -> Response[bytes]:
    services = Services.of(request)
    contact = await services.db.write(optouts.unsubscribe, token, now=services.clock())
    if contact is None:
        lines = ["This unsubscribe link is not valid. It may have been mistyped."]
        return page("message.html", heading="Link not found", lines=lines, status=404, cache="no-store")
    company = services.directory.current.companies.get((contact.pos_system_id, contact.company_id))
    sender = company.name if company else "this store"
    kind = {"sms": "text messages", "email": "emails"}.get(contact.channel, "messages")
    lines = [
        f"{mask(contact.recipient)} will receive no more {kind} from {sender}.",
        "You can close this page.",
    ]
    return page("message.html", heading="You are unsubscribed", lines=lines, cache="no-store")


def mask(recipient: str) -> str:
    """``ada@example.com`` → ``a••@example.com``; ``+14155550100`` → ``••••••••0100``."""
    name, at, domain = recipient.partition("@")
    if at:
        return f"{name[:1]}{'•' * min(max(len(name) - 1, 2), 6)}@{domain}"
    return "•" * max(len(recipient) - 4, 2) + recipient[-4:]


ROUTES = [unsubscribe, unsubscribe_one_click]
