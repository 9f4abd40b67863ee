"""Senders: the edge that hands one message to the outside world (SMTP, an SMS API, the log).

A sender returns when the message was accepted (with the provider's id for it, when the provider
gives one: an SMS API's ``sid``) and raises ``TemporaryFailure`` (worth retrying: a 4xx SMTP reply,
HTTP 429/5xx, a network error) or ``PermanentFailure`` (retrying cannot help: HTTP 4xx), of which
``Bounced`` is the address's own refusal (a 5xx SMTP reply to the recipient or content). Senders
never log a recipient or body.
"""

from __future__ import annotations

import email.utils
import functools
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import SplitResult, unquote, urlsplit

import aiosmtplib
import httpx2
import structlog

from cmc.config import Settings
from cmc.errors import CmcError
from cmc.outbox.status import callback_url
from cmc.web import NEUTRAL, Look, render

SMTP_TIMEOUT = 30.0
SMS_TIMEOUT = 15.0
_URL = re.compile(r"https?://[^\s<>\"']+")


class DeliveryFailed(CmcError):
    """The message could not be delivered."""

    permanent = False
    final = "dead"
    """The message's state when this is its last attempt."""

    def __init__(self, detail: str | None = None, *, code: str = "error") -> None:
        super().__init__(detail)
        self.code = code
        """A short, contact-free label safe to log (``smtp-451``, ``http-503``, ``network``)."""


class TemporaryFailure(DeliveryFailed):
    """The message could not be delivered this time; a later attempt may succeed."""


class PermanentFailure(DeliveryFailed):
    """The message can never be delivered as it is."""

    permanent = True


class Bounced(PermanentFailure):
    """The recipient's server refused the message for good (a 5xx SMTP reply to RCPT or DATA)."""

    final = "bounced"


@dataclass(frozen=True)
class Outgoing:
    """What a sender needs to deliver one message."""

    id: str
    channel: str
    recipient: str
    subject: str | None
    body: str
    optout_url: str | None = None
    look: Look = NEUTRAL
    """The sending company's look, for the email's HTML part."""


class Sender(Protocol):
    """Delivers messages of one channel."""

    async def send(self, message: Outgoing) -> str | None:
        """Deliver ``message`` or raise ``DeliveryFailed``; the provider's id for it, if it gave one."""

    async def aclose(self) -> None:
        """Release connections."""


class LogSender:
    """Stands in for a channel without a provider: logs that a message would go out, counts it sent."""

    def __init__(self) -> None:
        self._log = structlog.get_logger(__name__)

    async def send(self, message: Outgoing) -> str | None:
        self._log.info("message sent (log sender)", message_id=message.id, channel=message.channel)
        return None

    async def aclose(self) -> None:
        return None


class SmtpSender:
    """Email over SMTP: ``smtp://[user:pass@]host[:port]`` (STARTTLS when offered) or ``smtps://``."""

    def __init__(self, url: str, *, sender: str, tls_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
            raise CmcError("CMC_SMTP_URL must be smtp://[user:password@]host[:port] or smtps://...")
        self._implicit_tls = parts.scheme == "smtps"
        self._host = parts.hostname
        self._port = parts.port or (465 if self._implicit_tls else 25)
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._sender = sender
        self._tls_context = tls_context

    def compose(self, message: Outgoing) -> EmailMessage:
        """The email for ``message``: plain text and a branded HTML alternative.

        It carries RFC 8058 one-click unsubscribe headers; header injection is a ``PermanentFailure``.
        """
        mail = EmailMessage()
        try:
            mail["From"] = self._sender
            mail["To"] = message.recipient
            mail["Subject"] = message.subject or ""
            mail["Date"] = email.utils.formatdate(usegmt=True)
            mail["Message-ID"] = f"<{message.id}@{_domain(self._sender)}>"
            if message.optout_url:
                mail["List-Unsubscribe"] = f"<{message.optout_url}>"
                mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            mail.set_content(message.body)
            mail.add_alternative(email_html(message), subtype="html")
        except (ValueError, TypeError) as exc:
            raise PermanentFailure(f"cannot build the email: {exc}", code="bad-message") from None
        return mail

    async def send(self, message: Outgoing) -> str | None:
        mail = self.compose(message)
        try:
            await aiosmtplib.send(
                mail,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                use_tls=self._implicit_tls,
                start_tls=False if self._implicit_tls else None,
                tls_context=self._tls_context,
                timeout=SMTP_TIMEOUT,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refused.code for refused in exc.recipients]
            raise _smtp_failure(min(codes, default=450), str(exc)) from None
        except (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPDataError) as exc:
            raise _smtp_failure(exc.code, str(exc)) from None
        except aiosmtplib.SMTPResponseException as exc:
            # Refused sender, failed login, ...: the server or our settings, not this message.
            raise TemporaryFailure(f"SMTP {exc.code}: {exc.message}", code=f"smtp-{exc.code}") from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise TemporaryFailure(f"SMTP: {exc}", code="network") from None
        return None  # SMTP hands back no id worth keeping: the Message-ID is ours

    async def aclose(self) -> None:
        return None


class SmsSender:
    """SMS through a Twilio-style HTTP API: a form POST of ``To``, ``From`` and ``Body``.

    Credentials come from the URL (``https://sid:token@api.example.com/...``) as HTTP Basic auth.
    With ``status_url`` each SMS asks for delivery reports at ``status_url(message id)``
    (``StatusCallback``); the ``sid`` of the provider's JSON answer is the message's provider id.
    """

    def __init__(
        self,
        url: str,
        *,
        sender: str,
        status_url: Callable[[str], str] | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise CmcError("CMC_SMS_URL must be an http(s) URL")
        auth = None
        if parts.username is not None:
            auth = httpx2.BasicAuth(unquote(parts.username), unquote(parts.password or ""))
        self._url = _without_credentials(parts)
        self._sender = sender
        self._status_url = status_url
        self._client = httpx2.AsyncClient(auth=auth, timeout=SMS_TIMEOUT, transport=transport)

    async def send(self, message: Outgoing) -> str | None:
        form = {"To": message.recipient, "From": self._sender, "Body": message.body}
        if self._status_url is not None:
            form["StatusCallback"] = self._status_url(message.id)
        try:
            answer = await self._client.post(self._url, data=form)
        except httpx2.HTTPError as exc:
            raise TemporaryFailure(f"SMS API: {type(exc).__name__}: {exc}", code="network") from None
        if answer.is_success:
            return _sid(answer)
        detail = f"SMS API answered {answer.status_code}: {answer.text[:500]}"
        if answer.status_code == 429 or answer.status_code >= 500:
            raise TemporaryFailure(detail, code=f"http-{answer.status_code}")
        raise PermanentFailure(detail, code=f"http-{answer.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()


def email_html(message: Outgoing) -> str:
    """The HTML part of an email: the text's paragraphs in the company's look, links clickable.

    The opt-out paragraph (the one linking ``optout_url``) goes to the footer.
    """
    paragraphs = [_linked(block) for block in re.split(r"\n[ \t]*\n", message.body.strip()) if block.strip()]
    footer = [
        p for p in paragraphs if any(href == message.optout_url for line in p for _, href in line if href)
    ]
    return render(
        "email.html",
        look=message.look,
        subject=message.subject or "",
        paragraphs=[p for p in paragraphs if p not in footer],
        footer=footer,
    )


def _linked(block: str) -> list[list[tuple[str, str | None]]]:
    """A paragraph's lines, each as pieces of text and links: ``(text, href or None)``."""
    lines = []
    for line in block.strip().splitlines():
        pieces: list[tuple[str, str | None]] = []
        at = 0
        for match in _URL.finditer(line):
            if match.start() > at:
                pieces.append((line[at : match.start()], None))
            pieces.append((match[0], match[0]))
            at = match.end()
        if at < len(line):
            pieces.append((line[at:], None))
        lines.append(pieces)
    return lines


def senders_from(settings: Settings) -> dict[str, Sender]:
    """One sender per channel: the configured provider, or the log sender when there is none.

    SMS ask for delivery reports when CMC can check their signature (``Settings.sms_callback_key``).
    """
    email_sender: Sender = (
        SmtpSender(settings.smtp_url, sender=settings.smtp_from) if settings.smtp_url else LogSender()
    )
    status_url = functools.partial(callback_url, settings.base_url) if settings.sms_callback_key else None
    sms_sender: Sender = (
        SmsSender(settings.sms_url, sender=settings.sms_from, status_url=status_url)
        if settings.sms_url
        else LogSender()
    )
    return {"email": email_sender, "sms": sms_sender}


def _sid(answer: httpx2.Response) -> str | None:
    """The provider's id of an accepted SMS: ``sid`` in a JSON answer (Twilio's), else none."""
    try:
        sid = answer.json().get("sid")
    except (ValueError, AttributeError):
        return None
    return sid[:100] if isinstance(sid, str) and sid else None


def _smtp_failure(code: int, detail: str) -> DeliveryFailed:
    kind = Bounced if 500 <= code < 600 else TemporaryFailure
    return kind(f"SMTP {detail}", code=f"smtp-{code}")


def _domain(address: str) -> str:
    _, addr = email.utils.parseaddr(address)
    return addr.rpartition("@")[2] or "cmc.localhost"


def _without_credentials(parts: SplitResult) -> str:
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc).geturl()
