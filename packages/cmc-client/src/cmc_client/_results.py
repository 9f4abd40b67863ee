"""What the SDK tells the POS: the result of one tender, of one drain pass, of one verification."""

from __future__ import annotations

from typing import Literal

import msgspec

from cmc_client import wire
from cmc_client._outbox import OutboxEntry

TenderStatus = Literal["delivered", "queued", "rejected", "disabled", "not-accepted"]
"""Where a tender stands.

``delivered``: CMC accepted it (``response`` holds its answer). ``queued``: kept in the outbox and
delivered later. ``rejected``: CMC refused it with a 4xx retrying cannot fix (``problem`` says why).
``disabled``: CMC settings say ``isTransactionsEnabled: false``, so it was not sent. ``not-accepted``:
CMC answered a ``posStatus`` other than ``Accepted``, so it was not sent.
"""


class TenderResult(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of ``post_tender`` (or of looking a tender up in the outbox)."""

    status: TenderStatus
    transaction_id: str
    outbox_id: int
    """The tender's row in the outbox (for ``retry()``)."""
    response: wire.TransactionResponse | None = None
    """CMC's typed answer, when ``delivered``."""
    problem: wire.Problem | None = None
    """CMC's RFC 9457 problem detail, when ``rejected``."""
    reason: str | None = None
    """Why the tender is queued, disabled or not accepted (human-readable)."""

    @property
    def qr_link(self) -> str | None:
        """The short link of the QR widget a POS Rule produced, if any."""
        widget = self.response.data.qrCodeWidget if self.response else None
        return widget.shortLinkUrl if widget else None

    @property
    def cfs_carousel_url(self) -> str | None:
        """The customer-facing-screen carousel URL a POS Rule chose, if any."""
        template = self.response.data.cfsTemplate if self.response else None
        return template.cfsCarouselUrl if template else None


class DrainReport(msgspec.Struct, frozen=True, kw_only=True):
    """What one drain pass did."""

    delivered: int = 0
    rejected: int = 0
    skipped: int = 0
    """Tenders not sent because of settings or ``posStatus`` (states ``disabled``/``not-accepted``)."""
    remaining: int = 0
    """Tenders still queued after the pass."""
    error: str | None = None
    """Why the pass stopped early (CMC unreachable, credentials refused, the client closing), if it did."""


DiscrepancyKind = Literal["missing", "different", "unverifiable"]
"""How a delivered tender disagrees with CMC.

``missing``: CMC has no such transaction. ``different``: CMC's stored answer is not the one the outbox
recorded. ``unverifiable``: CMC would not say (for example two companies share the transactionId).
"""


class Discrepancy(msgspec.Struct, frozen=True, kw_only=True):
    """A delivered tender whose record in CMC does not match the outbox."""

    kind: DiscrepancyKind
    entry: OutboxEntry
    detail: str
    """What CMC answered, in words."""


class VerifyReport(msgspec.Struct, frozen=True, kw_only=True):
    """What ``verify()`` found: every delivered tender of the outbox checked against CMC."""

    checked: int = 0
    confirmed: int = 0
    """Delivered tenders CMC holds with the very answer the outbox recorded."""
    discrepancies: list[Discrepancy] = []

    @property
    def ok(self) -> bool:
        """Whether CMC confirmed every delivered tender."""
        return not self.discrepancies

    @property
    def missing(self) -> list[OutboxEntry]:
        """The delivered tenders CMC has no record of."""
        return [d.entry for d in self.discrepancies if d.kind == "missing"]


def result_of(entry: OutboxEntry) -> TenderResult:
    """The result a stored row stands for (used when the POS posts a tender the outbox already has)."""
    if entry.state == "delivered" and entry.response is not None:
        response = msgspec.json.decode(entry.response, type=wire.TransactionResponse)
        return _result(entry, "delivered", response=response)
    if entry.state == "rejected" and entry.problem is not None:
        return rejected(entry, msgspec.json.decode(entry.problem, type=wire.Problem))
    return _result(entry, entry.state, reason=entry.last_error)


def delivered(entry: OutboxEntry, response: wire.TransactionResponse) -> TenderResult:
    """The result for a tender CMC accepted."""
    return _result(entry, "delivered", response=response)


def rejected(entry: OutboxEntry, problem: wire.Problem) -> TenderResult:
    """The result for a tender CMC refused."""
    return _result(entry, "rejected", problem=problem, reason=problem.title)


def not_sent(entry: OutboxEntry, status: Literal["disabled", "not-accepted"], reason: str) -> TenderResult:
    """The result for a tender CMC's settings or ``posStatus`` kept from being sent."""
    return _result(entry, status, reason=reason)


def queued(entry: OutboxEntry, reason: str) -> TenderResult:
    """The result for a tender left in the outbox."""
    return _result(entry, "queued", reason=reason)


def _result(
    entry: OutboxEntry,
    status: TenderStatus,
    *,
    response: wire.TransactionResponse | None = None,
    problem: wire.Problem | None = None,
    reason: str | None = None,
) -> TenderResult:
    return TenderResult(
        status=status,
        transaction_id=entry.transaction_id,
        outbox_id=entry.id,
        response=response,
        problem=problem,
        reason=reason,
    )
