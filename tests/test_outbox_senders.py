"""Senders against real servers: aiosmtpd for SMTP, a stdlib HTTP server for the SMS API.

The server helpers here are shared with ``test_outbox_dispatch``.
"""

from __future__ import annotations

import base64
import contextlib
import email
import email.policy
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx2
import pytest
import structlog
from aiosmtpd.controller import Controller

from cmc.outbox.senders import (
    LogSender,
    Outgoing,
    PermanentFailure,
    SmsSender,
    SmtpSender,
    TemporaryFailure,
    email_html,
)
from cmc.registry.setup import Branding, Colors
from cmc.web import look_of


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Mail:
    """One email as the SMTP server received it."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class Inbox:
    """An aiosmtpd handler that keeps what it accepts; ``data_reply``/``rcpt_reply`` force refusals."""

    data_reply: str = "250 OK"
    rcpt_reply: str | None = None
    received: list[Mail] = field(default_factory=list)
    data_calls: int = 0
    url: str = ""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_calls += 1
        if self.data_reply.startswith("250"):
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            self.received.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message))
        return self.data_reply


@contextlib.contextmanager
def smtp_server(**replies: Any) -> Iterator[Inbox]:
    """A real SMTP server on 127.0.0.1 for the duration of the block."""
    inbox = Inbox(**replies)
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    inbox.url = f"smtp://127.0.0.1:{controller.port}"
    try:
        yield inbox
    finally:
        controller.stop()


@dataclass
class SmsRequest:
    path: str
    authorization: str | None
    content_type: str
    form: dict[str, str]


@dataclass
class SmsApi:
    """A Twilio-style SMS endpoint: answers each POST with the next of ``statuses`` (the last repeats)."""

    statuses: list[int]
    requests: list[SmsRequest] = field(default_factory=list)
    port: int = 0

    def url(self, credentials: str = "AC123:s3cret") -> str:
        userinfo = f"{credentials}@" if credentials else ""
        return f"http://{userinfo}127.0.0.1:{self.port}/2010-04-01/Accounts/AC123/Messages.json"


@contextlib.contextmanager
def sms_server(*statuses: int) -> Iterator[SmsApi]:
    """A real HTTP server on 127.0.0.1 (a thread) recording every form POST."""
    api = SmsApi(list(statuses or (201,)))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
            api.requests.append(
                SmsRequest(self.path, self.headers.get("Authorization"), self.headers["Content-Type"], form)
            )
            status = api.statuses.pop(0) if len(api.statuses) > 1 else api.statuses[0]
            payload = b'{"sid": "SM1", "status": "queued"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def outgoing(channel: str = "email", **changes: Any) -> Outgoing:
    values: dict[str, Any] = {
        "id": "0190c6d4-0000-7000-8000-000000000001",
        "channel": channel,
        "recipient": "ada@example.com" if channel == "email" else "+14155550100",
        "subject": "Your coupon" if channel == "email" else None,
        "body": "Hi Ada, here it is: https://cmc.test/s/abc\n\nUnsubscribe: https://cmc.test/u/tok",
        "optout_url": "https://cmc.test/u/tok",
    }
    values.update(changes)
    return Outgoing(**values)


def basic(userinfo: str) -> str:
    return "Basic " + base64.b64encode(userinfo.encode()).decode()


async def test_smtp_sender_delivers_text_and_a_branded_html_alternative() -> None:
    with smtp_server() as inbox:
        await SmtpSender(inbox.url, sender="Coffee Co <shop@example.com>").send(outgoing())
    [mail] = inbox.received
    assert mail.mail_from == "shop@example.com"
    assert mail.rcpt_tos == ["ada@example.com"]
    assert mail.message["Subject"] == "Your coupon"
    assert mail.message["From"] == "Coffee Co <shop@example.com>"
    assert mail.message["To"] == "ada@example.com"
    assert mail.message["List-Unsubscribe"] == "<https://cmc.test/u/tok>"
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"  # RFC 8058 one-click
    assert mail.message["Message-ID"] == "<0190c6d4-0000-7000-8000-000000000001@example.com>"
    assert mail.message.get_content_type() == "multipart/alternative"
    plain, html = mail.message.get_body(("plain",)), mail.message.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content().strip().startswith("Hi Ada, here it is: https://cmc.test/s/abc")
    page = html.get_content()
    assert "Hi Ada, here it is: " in page and '<a href="https://cmc.test/s/abc"' in page
    assert "Noto Color Emoji" in page  # the font stack falls back to CJK and emoji fonts


def test_the_html_part_is_escaped_and_branded() -> None:
    look = look_of(
        "Green Leaf", Branding(logoUrl="https://cdn.example/logo.png", colors=Colors(primary="#123abc"))
    )
    body = 'Hi <b>Ada</b> & "friends"\nline two https://x.test/s/a?b=1&c=2\n\nNo more messages: https://cmc.test/u/tok'
    page = email_html(outgoing(body=body, look=look))
    assert "&lt;b&gt;Ada&lt;/b&gt; &amp; &#34;friends&#34;<br>line two" in page and "<b>Ada" not in page
    assert '<a href="https://x.test/s/a?b=1&amp;c=2"' in page
    assert '<img src="https://cdn.example/logo.png" alt="Green Leaf"' in page and "#123abc" in page
    # The opt-out paragraph is the footer, after the message's card.
    assert page.index("No more messages") > page.index("</table>")


async def test_smtp_refusals_are_classified() -> None:
    with (
        smtp_server(data_reply="451 4.3.0 try again later") as inbox,
        pytest.raises(TemporaryFailure) as temporary,
    ):
        await SmtpSender(inbox.url, sender="shop@example.com").send(outgoing())
    assert temporary.value.code == "smtp-451"
    with (
        smtp_server(rcpt_reply="550 5.1.1 no such user") as inbox,
        pytest.raises(PermanentFailure) as permanent,
    ):
        await SmtpSender(inbox.url, sender="shop@example.com").send(outgoing())
    assert permanent.value.code == "smtp-550"
    assert "no such user" in permanent.value.detail


async def test_smtp_unreachable_is_temporary() -> None:
    with pytest.raises(TemporaryFailure) as failure:
        await SmtpSender(f"smtp://127.0.0.1:{free_port()}", sender="shop@example.com").send(outgoing())
    assert failure.value.code == "network"


async def test_header_injection_is_permanent() -> None:
    sender = SmtpSender("smtp://127.0.0.1:1", sender="shop@example.com")
    with pytest.raises(PermanentFailure):
        await sender.send(outgoing(subject="Hi\r\nBcc: everyone@example.com"))


async def test_sms_sender_posts_the_form_with_basic_auth() -> None:
    with sms_server(201) as api:
        sender = SmsSender(api.url("AC123:s3cret"), sender="+15550001111")
        await sender.send(outgoing("sms"))
        await sender.aclose()
    [request] = api.requests
    assert request.path == "/2010-04-01/Accounts/AC123/Messages.json"
    assert request.authorization == basic("AC123:s3cret")
    assert request.content_type == "application/x-www-form-urlencoded"
    assert request.form == {"To": "+14155550100", "From": "+15550001111", "Body": outgoing("sms").body}


@pytest.mark.parametrize(
    ("status", "kind"),
    [(429, TemporaryFailure), (500, TemporaryFailure), (503, TemporaryFailure),
     (400, PermanentFailure), (401, PermanentFailure), (404, PermanentFailure)],
)  # fmt: skip
async def test_sms_statuses_are_classified(status: int, kind: type[Exception]) -> None:
    transport = httpx2.MockTransport(lambda request: httpx2.Response(status, text="nope"))
    sender = SmsSender("https://sms.example/send", sender="CMC", transport=transport)
    with pytest.raises(kind) as failure:
        await sender.send(outgoing("sms"))
    assert failure.value.code == f"http-{status}"  # type: ignore[attr-defined]
    await sender.aclose()


async def test_sms_network_faults_are_temporary() -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    sender = SmsSender("https://sms.example/send", sender="CMC", transport=httpx2.MockTransport(refuse))
    with pytest.raises(TemporaryFailure) as failure:
        await sender.send(outgoing("sms"))
    assert failure.value.code == "network"
    await sender.aclose()


async def test_log_sender_never_logs_the_contact_or_body() -> None:
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with structlog.testing.capture_logs() as logs:
            await LogSender().send(outgoing("sms"))
    finally:
        structlog.configure(**saved)
    [entry] = logs
    assert entry["event"] == "message sent (log sender)"
    assert entry["message_id"] == outgoing().id
    assert entry["channel"] == "sms"
    assert "+14155550100" not in repr(entry)
    assert "Hi Ada" not in repr(entry)
