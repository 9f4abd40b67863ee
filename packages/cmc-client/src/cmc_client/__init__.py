"""cmc_client: the POS SDK for CMC. Post every tender in real time; lose none when CMC is down.

::

    from cmc_client import Client, Tender

    with Client(url, "pax", "pax-demo", "s3cr3t!", outbox_path="cmc-outbox.sqlite3").start() as cmc:
        result = cmc.post_tender(Tender(transactionId="T-1", terminalId="term5", posLocationId="loc5"))
        if result.status == "delivered" and result.qr_link:
            show_qr(result.qr_link)

Everything public is here (``__all__``), in :mod:`cmc_client.wire` (the wire contract shared with the
CMC server) and in :mod:`cmc_client.simulate` (the shop simulator). Modules whose names start with
``_`` are internal.
"""

from cmc_client import wire
from cmc_client._async_client import AsyncClient
from cmc_client._client import Client
from cmc_client._errors import (
    AuthenticationError,
    CmcClientError,
    DuplicateTransactionError,
    InvalidTenderError,
    OutboxError,
    TransientError,
)
from cmc_client._outbox import Outbox, OutboxEntry, OutboxState, OutboxStatus
from cmc_client._results import (
    Discrepancy,
    DiscrepancyKind,
    DrainReport,
    TenderResult,
    TenderStatus,
    VerifyReport,
)
from cmc_client._tender import TenderInput
from cmc_client.wire import Contact, Customer, Loyalty, Product, SalesPerson, Tender

__all__ = [
    "AsyncClient",
    "AuthenticationError",
    "Client",
    "CmcClientError",
    "Contact",
    "Customer",
    "Discrepancy",
    "DiscrepancyKind",
    "DrainReport",
    "DuplicateTransactionError",
    "InvalidTenderError",
    "Loyalty",
    "Outbox",
    "OutboxEntry",
    "OutboxError",
    "OutboxState",
    "OutboxStatus",
    "Product",
    "SalesPerson",
    "Tender",
    "TenderInput",
    "TenderResult",
    "TenderStatus",
    "TransientError",
    "VerifyReport",
    "wire",
]
