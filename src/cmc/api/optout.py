"""``/u/{token}``: the opt-out link every email and SMS carries.

No token needed beyond the link's own: it is unguessable and names one message's recipient. A GET
only asks (mail scanners and link previews fetch links nobody clicked); the page's button, or a mail
client's RFC 8058 one-click POST (``List-Unsubscribe-Post``), records the opt-out.
"""

from __future__ import annotations

from litestar import Response, get, post
from litestar.params import FromPath

from cmc.api import HttpRequest
from cmc.api.html import page
from cmc.api.services import Services
from cmc.outbox import optouts, queue
from cmc.outbox.optouts import Contact
from cmc.registry import Company
from cmc.web import company_look

KINDS = {"sms": "text messages", "email": "emails"}


@get("/u/{token:str}")
async def unsubscribe_page(request: HttpRequest, token: FromPath[str]) -> Response[bytes]:
    """Ask whether to opt the message's recipient out (changes nothing)."""
    services = Services.of(request)
    contact = await services.db.read(queue.contact_of, token)
    if contact is None:
        return _not_found()
    company = _company(services, contact)
    sender = company.name if company else "this store"
    if await services.db.read(optouts.is_opted_out, **vars(contact)):
        lines = [f"{mask(contact.recipient)} already receives no {_kind(contact)} from {sender}."]
        return _page(company, "You are unsubscribed", lines)
    lines = [f"{mask(contact.recipient)} will receive no more {_kind(contact)} from {sender}."]
    return _page(company, f"Unsubscribe from {sender}?", lines, confirm="Unsubscribe")


@post("/u/{token:str}", status_code=200)
async def unsubscribe(request: HttpRequest, token: FromPath[str]) -> Response[bytes]:
    """Opt the recipient out of that merchant's messages on that channel (the page's button, RFC 8058)."""
    services = Services.of(request)
    contact = await services.db.write(optouts.unsubscribe, token, now=services.clock())
    if contact is None:
        return _not_found()
    company = _company(services, contact)
    sender = company.name if company else "this store"
    lines = [f"{mask(contact.recipient)} will receive no more {_kind(contact)} from {sender}."]
    return _page(company, "You are unsubscribed", [*lines, "You can close this page."])


def mask(recipient: str) -> str:
    """``ada@example.com`` → ``a••@example.com``; ``+14155550100`` → ``••••••••0100``."""
    name, at, domain = recipient.partition("@")
    if at:
        return f"{name[:1]}{'•' * min(max(len(name) - 1, 2), 6)}@{domain}"
    return "•" * max(len(recipient) - 4, 2) + recipient[-4:]


def _page(
    company: Company | None, heading: str, lines: list[str], *, confirm: str | None = None
) -> Response[bytes]:
    """The message page in the merchant's look; ``confirm`` labels a button that POSTs to this URL."""
    look = company_look(company)
    return page("message.html", look=look, heading=heading, lines=lines, confirm=confirm, cache="no-store")


def _not_found() -> Response[bytes]:
    lines = ["This unsubscribe link is not valid. It may have been mistyped."]
    return page(
        "message.html", heading="Link not found", lines=lines, confirm=None, status=404, cache="no-store"
    )


def _company(services: Services, contact: Contact) -> Company | None:
    return services.directory.current.companies.get((contact.pos_system_id, contact.company_id))


def _kind(contact: Contact) -> str:
    return KINDS.get(contact.channel, "messages")


ROUTES = [unsubscribe_page, unsubscribe]
