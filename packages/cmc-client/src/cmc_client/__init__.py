"""cmc_client: the POS SDK for CMC. Post every tender in real time; lose none when CMC is down.

::

    from cmc_client import Client, Tender

    with Client(url, "pax", client_id, secret, outbox_path="cmc-outbox.sqlite3").start() as cmc:
        result = cmc.post_tender(Tender(transactionId="T-1", terminalId="T1", posLocationId="L1"))
        if result.status == "delivered" and result.qr_link:
            show_qr(result.qr_link)
"""

from cmc_client.async_client import AsyncClient
from cmc_client.client import Client
from cmc_client.errors import (
    AuthenticationError,
    CmcClientError,
    DuplicateTransactionError,
    InvalidTenderError,
    OutboxError,
    TransientError,
)
from cmc_client.outbox import Entry as OutboxEntry
from cmc_client.outbox import Outbox
from cmc_client.outbox import Status as OutboxStatus
from cmc_client.results import DrainReport, TenderResult, TenderStatus
from cmc_client.tender import Tender
from cmc_client.wire import Contact, Customer, Loyalty, Product, SalesPerson

__all__ = [
    "AsyncClient",
    "AuthenticationError",
    "Client",
    "CmcClientError",
    "Contact",
    "Customer",
    "DrainReport",
    "DuplicateTransactionError",
    "InvalidTenderError",
    "Loyalty",
    "Outbox",
    "OutboxEntry",
    "OutboxError",
    "OutboxStatus",
    "Product",
    "SalesPerson",
    "Tender",
    "TenderResult",
    "TenderStatus",
    "TransientError",
]
