"""What the SDK tells the POS: the result of one tender, and of one drain pass."""

from __future__ import annotations

from typing import Literal

import msgspec

from cmc_client import wire

TenderStatus = Literal["delivered", "queued", "rejected", "disabled", "not-accepted"]
"""Where a tender stands.

``delivered``: CMC accepted it (``response`` holds its answer). ``queued``: kept in the outbox and
delivered later. ``rejected``: CMC refused it with a 4xx retrying cannot fix (``problem`` says why).
``disabled``: CMC settings say ``isTransactionsEnabled: false``, so it was not sent. ``not-accepted``:
startInteraction answered a ``posStatus`` other than ``Accepted``, so it was not sent.
"""


class TenderResult(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of ``post_tender`` (or of looking a tender up in the outbox)."""

    status: TenderStatus
    transaction_id: str
    outbox_id: int
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
    """Why the pass stopped early (CMC unreachable, credentials refused), if it did."""
