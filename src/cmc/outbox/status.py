"""SMS delivery reports: the provider's status callback, authenticated and read (pure).

CMC asks the provider for a callback on every SMS (Twilio's ``StatusCallback``) at
``{CMC_PUBLIC_URL}/sms/status/{messageId}``. The provider POSTs a form with ``MessageSid``,
``MessageStatus`` and, on failure, ``ErrorCode``, signed with ``X-Twilio-Signature``: the Base64
HMAC-SHA1, keyed by the account's auth token, of the full URL followed by every form field's name
and value, sorted by name. ``CMC_SMS_AUTH_TOKEN`` is that key (unset: the password of
``CMC_SMS_URL``, which for Twilio is the auth token).

Only the final word of the provider moves a message: ``delivered`` (and ``read``) to delivered;
``undelivered``, ``failed`` and ``canceled`` to failed, the reason being ``ErrorCode`` when it
gave one. Progress reports (``accepted``, ``queued``, ``sending``, ``sent``, ``scheduled``) change
nothing: CMC already counts a message sent when the provider accepted it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

SIGNATURE_HEADER = "X-Twilio-Signature"
PATH = "/sms/status"

FINAL: dict[str, Literal["delivered", "failed"]] = {
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "failed",
    "failed": "failed",
    "canceled": "failed",
}
"""The provider's final statuses and the message state each means."""


@dataclass(frozen=True)
class Report:
    """What one callback says: the provider's id, its status, and the state it moves the message to."""

    provider_id: str
    status: str
    state: Literal["delivered", "failed"] | None
    """None: a progress report, which changes nothing."""
    reason: str | None


def callback_url(base_url: str, message_id: str) -> str:
    """Where the provider reports on ``message_id`` (what the signature covers)."""
    return f"{base_url.rstrip('/')}{PATH}/{quote(message_id, safe='')}"


def signature(key: bytes, url: str, params: Sequence[tuple[str, str]]) -> str:
    """The ``X-Twilio-Signature`` of a form POST to ``url`` with ``params``."""
    payload = url + "".join(name + value for name, value in sorted(set(params)))
    return base64.b64encode(hmac.new(key, payload.encode(), hashlib.sha1).digest()).decode()


def verified(key: bytes, url: str, params: Sequence[tuple[str, str]], given: str | None) -> bool:
    """Whether ``given`` is the signature of this callback (compared in constant time)."""
    return given is not None and hmac.compare_digest(signature(key, url, params).encode(), given.encode())


def read(params: Sequence[tuple[str, str]]) -> Report | dict[str, list[str]]:
    """The report in a callback's form, or the problems of a form that is not one (per field)."""
    form = dict(params)
    sid = (form.get("MessageSid") or form.get("SmsSid") or "").strip()
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
    problems = {
        name: ["is required"] for name, value in (("MessageSid", sid), ("MessageStatus", status)) if not value
    }
    if len(sid) > 100:
        problems["MessageSid"] = ["is longer than 100 characters"]
    if problems:
        return problems
    state = FINAL.get(status)
    code = (form.get("ErrorCode") or "").strip()[:40]
    reason = None if state != "failed" else (f"provider-{code}" if code else status)
    return Report(provider_id=sid, status=status, state=state, reason=reason)
