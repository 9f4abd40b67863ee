"""The CMC wire contract: request and response bodies of the POS API, written once.

Field names follow ClearLine's "Post transaction data upon tender in real-time to CMC" document
(they are normative, hence the camelCase). The CMC server imports these Structs to decode requests
and encode responses, so the client and the server can never disagree on a name.

Unknown fields are ignored on decode, so newer servers and older clients interoperate.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

NonEmpty = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
"""An identifier the contract requires: at least one character."""

Text = Annotated[str, msgspec.Meta(max_length=1000)]
"""Free text from the POS, bounded so a bad client cannot store megabytes per field."""

Code = Annotated[str, msgspec.Meta(max_length=200)]
"""An id or code from the POS (product id, loyalty card number)."""

Label = Annotated[str, msgspec.Meta(max_length=100)]
"""A short label (transaction type, gender)."""

PosStatus = Literal["Accepted", "Disabled", "NotAvailable"]
"""Only an ``Accepted`` POS system may send transactions."""


class Struct(msgspec.Struct, kw_only=True):
    """Base for every wire type: keyword-only construction."""


# --- auth -------------------------------------------------------------------------------------


class TokenResponse(Struct):
    """``POST /connect/token`` answer (OAuth2 client credentials)."""

    access_token: str
    token_type: str = "Bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int = 3600
    scope: str = "pos_integration"


# --- startInteraction -------------------------------------------------------------------------


class StartInteractionRequest(Struct):
    """``POST /pos/{posSystemId}/startInteraction`` body."""

    terminalId: NonEmpty
    posLocationId: NonEmpty
    posCompanyId: NonEmpty | None = None


class StartInteractionData(Struct):
    """The session a POS passes on to SendTransaction; no ``sessionId`` unless ``Accepted``."""

    terminalId: str
    posLocationId: str
    sessionId: str | None
    posStatus: PosStatus


class StartInteractionResponse(Struct):
    """``{"data": {...}}`` envelope of StartInteraction."""

    data: StartInteractionData


# --- transaction ------------------------------------------------------------------------------


MAX_CONTACTS = 20
"""Contacts per customer: more is a broken or hostile client (a real customer has an email and a phone)."""

MAX_PRODUCTS = 1000
"""Basket lines per transaction."""


class Contact(Struct):
    """One customer contact, in either shape the public docs show.

    The schema form is ``{"email": ..., "phone": ...}``; the use-cases page sends
    ``{"type": "Email" | "Phone", "value": ...}``. Both are accepted and may be mixed.
    """

    email: Text | None = None
    phone: Text | None = None
    type: Text | None = None
    value: Text | None = None


class Customer(Struct):
    """The customer as the POS knows them."""

    id: Text | None = None
    firstName: Text | None = None
    lastName: Text | None = None
    birthDate: Text | None = None
    """ISO date or date-time; only the date part is kept."""
    gender: Label | None = None
    """Extension: not in the seed request, but the profile carries it."""
    contacts: Annotated[list[Contact], msgspec.Meta(max_length=MAX_CONTACTS)] | None = []
    """At most ``MAX_CONTACTS``; ``null`` is read as no contacts (always a list once decoded)."""

    def __post_init__(self) -> None:
        if self.contacts is None:
            self.contacts = []


class SalesPerson(Struct):
    """The sales person who rang up the sale."""

    id: Text | None = None
    firstName: Text | None = None
    lastName: Text | None = None


class Product(Struct):
    """One basket line. Products carry no price in the contract."""

    productId: Code | None = None
    productName: Text | None = None
    manufacturer: Text | None = None
    productCategory: Text | None = None
    quantity: Decimal | None = Decimal(1)
    """``null`` or absent is one (always a Decimal once decoded)."""

    def __post_init__(self) -> None:
        if self.quantity is None:
            self.quantity = Decimal(1)


class Loyalty(Struct):
    """Loyalty program details of the transaction."""

    cardNumber: Code | None = None


class Tender(Struct):
    """One paid sale as the POS reports it: SendTransaction's body without the ``sessionId``.

    The SDK takes a ``Tender`` (it obtains the session itself); the server decodes
    :class:`TransactionRequest`, which is this plus ``sessionId``: one definition, one set of bounds.
    """

    transactionId: NonEmpty
    """The POS's own id of the sale; the same sale must always keep the same id."""
    terminalId: NonEmpty
    posLocationId: NonEmpty
    transactionType: Label | None = None
    """Free text from the POS: ``Sale``/``Undefined`` are sales; ``Refund``/``Return``/``Void`` reverse."""
    transactionAmount: Decimal | None = None
    """Exact decimal; accepted as a JSON number or a numeric string; never passes through float."""
    transactionDate: dt.datetime | None = None
    """A date-time without offset is read in the location's timezone."""
    customer: Customer | None = None
    salesPerson: SalesPerson | None = None
    products: Annotated[list[Product], msgspec.Meta(max_length=MAX_PRODUCTS)] | None = []
    """At most ``MAX_PRODUCTS``; ``null`` is read as none (always a list once decoded)."""
    loyalty: Loyalty | None = None
    cardNumber: Code | None = None
    """Loyalty card number, also accepted at the top level."""
    posCompanyId: Text | None = None
    purchaseName: Text | None = None
    """Deprecated by ClearLine; accepted and ignored."""
    purchaseId: Text | None = None
    """Deprecated by ClearLine; accepted and ignored."""
    purchaseQuantity: Decimal | None = None
    """Deprecated by ClearLine; accepted and ignored."""
    purchasePrice: Text | float | None = None
    """Deprecated by ClearLine (a string in its schema, a number in some POS); accepted and ignored."""

    def __post_init__(self) -> None:
        if self.products is None:
            self.products = []


class TransactionRequest(Tender, kw_only=True):
    """``POST /pos/{posSystemId}/transaction`` body (SendTransaction): a :class:`Tender` in a session."""

    sessionId: NonEmpty


class Profile(Struct):
    """The CMC customer profile the transaction resolved to (seed field names)."""

    id: str
    firstName: str | None = None
    lastName: str | None = None
    customerEmail: str | None = None
    customerPhone: str | None = None
    salesPerson: str | None = None
    gender: str | None = None
    purchaseName: str | None = None
    """Deprecated by ClearLine; always null."""
    purchaseId: str | None = None
    """Deprecated by ClearLine; always null."""
    purchaseCategory: str | None = None
    """Deprecated by ClearLine; always null."""
    purchasePrice: str | None = None
    """Deprecated by ClearLine; always null."""


class QrCodeLinks(Struct):
    """The nested ``qrCode`` block of ClearLine's API reference rendering (same URLs as the flat fields)."""

    htmlLinkUrl: str
    previewHtmlLinkUrl: str


class QrCodeWidget(Struct):
    """QR code widget a POS Rule produced for this transaction."""

    widgetId: int
    shortLinkUrl: str
    qrCodeLinkUrl: str
    qrCodeHtmlLinkUrl: str
    qrCodePreviewLinkUrl: str
    qrCode: QrCodeLinks
    notificationMessageId: str | None = None
    profile: Profile | None = None
    sessionId: str | None = None


class CfsTemplate(Struct):
    """Customer-facing-screen template a POS Rule chose for this transaction."""

    accountTemplateId: int
    cfsCarouselUrl: str


class Effect(Struct):
    """Extension: one thing a POS Rule did, naming the rule."""

    rule: str
    kind: Literal["qrWidget", "cfsTemplate", "notify"]
    target: str
    """The widget id, template id or message template id the rule named."""
    messageId: str | None = None
    """For ``notify``: the queued message id (null when the customer lacks that contact)."""
    shown: bool = True
    """For ``qrWidget`` and ``cfsTemplate``: whether the response carries it (one of each per sale)."""
    reason: str | None = None
    """Why it is not shown (another rule's has a higher priority; the terminal has no screen)."""


class TransactionData(Struct):
    """SendTransaction result: what CMC did with the sale."""

    id: str | None
    """Internal transaction id; null when the POS system is not Accepted (nothing was stored)."""
    qrCodeWidget: QrCodeWidget | None
    cfsTemplate: CfsTemplate | None
    posStatus: PosStatus
    profile: Profile | None = None
    """Extension: the resolved profile, also when no widget fired."""
    sessionId: str | None = None
    notificationMessageId: str | None = None
    """Extension: the first queued email/SMS id, also when no widget fired."""
    effects: list[Effect] = []
    """Extension: every effect of every rule that fired."""


class TransactionResponse(Struct):
    """``{"data": {...}}`` envelope of SendTransaction."""

    data: TransactionData


# --- settings ---------------------------------------------------------------------------------


class SettingsLookupRequest(Struct):
    """``POST /v2/pos/{posSystemId}/settings/lookup`` body (the API-reference form)."""

    posCompanyId: NonEmpty


class CompanySettings(Struct):
    """Feature flags of a POS system (ClearLine's six)."""

    isCheckInMenuEnabled: bool = False
    isTransactionsEnabled: bool = True
    isPosRulesEnabled: bool = True
    isReceiptPromotionEnabled: bool = False
    isCouponsEnabled: bool = False
    isProductsImportEnabled: bool = False


class NotificationSettings(Struct):
    """How CMC pushes events to the POS (CMC pushes none: channel ``None``)."""

    status: Literal["Enabled", "Disabled"] = "Disabled"
    channel: Literal["None", "Webhook", "PubNub"] = "None"
    configuration: dict[str, str] = {}


class SettingsData(Struct):
    """Settings lookup result."""

    companySettings: CompanySettings
    notificationSettings: NotificationSettings
    posCompanyId: str | None = None
    accountStatus: str | None = None


class SettingsResponse(Struct):
    """``{"data": {...}}`` envelope of the settings lookup."""

    data: SettingsData


# --- errors -----------------------------------------------------------------------------------


# --- CFS carousel -----------------------------------------------------------------------------


class CarouselRequest(Struct):
    """``POST /v2/pos/{posSystemId}/carousel`` body: the terminal whose customer-facing screen to load."""

    posLocationId: NonEmpty
    terminalId: NonEmpty


class CarouselData(Struct):
    """The screen's page, carrying its pairing credential: load it in the screen's iframe or web view."""

    url: str


class CarouselResponse(Struct):
    """``{"data": {"url": ...}}`` envelope of the carousel call."""

    data: CarouselData


class Problem(Struct, omit_defaults=True):
    """RFC 9457 problem details, with ASP.NET-style per-field ``errors``."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: dict[str, list[str]] | None = None


__all__ = [
    "MAX_CONTACTS",
    "MAX_PRODUCTS",
    "CarouselData",
    "CarouselRequest",
    "CarouselResponse",
    "CfsTemplate",
    "Code",
    "CompanySettings",
    "Contact",
    "Customer",
    "Effect",
    "Label",
    "Loyalty",
    "NonEmpty",
    "NotificationSettings",
    "PosStatus",
    "Problem",
    "Product",
    "Profile",
    "QrCodeLinks",
    "QrCodeWidget",
    "SalesPerson",
    "SettingsData",
    "SettingsLookupRequest",
    "SettingsResponse",
    "StartInteractionData",
    "StartInteractionRequest",
    "StartInteractionResponse",
    "Struct",
    "Tender",
    "Text",
    "TokenResponse",
    "TransactionData",
    "TransactionRequest",
    "TransactionResponse",
]
