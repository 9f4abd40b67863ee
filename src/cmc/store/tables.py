"""The schema, as SQLAlchemy Core tables. Alembic migrations create exactly this.

Every tenant table leads with ``pos_system_id`` and ``company_id``: that pair is the natural
partitioning / distribution key when one database is no longer enough.

Every index is written on each insert, and the tender path inserts into ``transactions`` (and, for a
new customer, ``profiles`` and ``profile_identifiers``; when rules fire, the marketing tables) on
every sale. So each index says which query or constraint needs it; one nobody needs goes.
A sale writes, for a returning customer with no rule firing, one transaction row (its primary key
and two indexes) and one profile row update: the session is a signed id and the basket lives in the
stored request, so neither has a table of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Connection,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    select,
)

from cmc.store.types import ExactDecimal, UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(200)
T = TypeVar("T")


def of_company(table: Table, pos_system_id: str, company_id: str) -> ColumnElement[bool]:
    """The rows of one merchant in a tenant table (each leads with the pair): a ``where`` clause."""
    return and_(table.c.pos_system_id == pos_system_id, table.c.company_id == company_id)


def company_row(
    conn: Connection,
    into: Callable[..., T],
    columns: Sequence[ColumnElement[Any]],
    pos_system_id: str,
    company_id: str,
    row_id: str,
) -> T | None:
    """One merchant's row by its ``id``, as ``into(*columns)`` (for the table's owner, whose
    ``columns`` they are); None when there is no such row or it is another merchant's."""
    table = columns[0].table
    query = select(*columns).where(of_company(table, pos_system_id, company_id), table.c.id == row_id)
    row = conn.execute(query).first()
    return None if row is None else into(*row)


meta = Table(
    "meta",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)
"""Small service-wide values: the registry version, the token signing key."""

# --- registry (written by `cmc apply`) -------------------------------------------------------

pos_systems = Table(
    "pos_systems",
    metadata,
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    Column("settings", JSON, nullable=False),
)

api_clients = Table(
    "api_clients",
    metadata,
    Column("client_id", ID, primary_key=True),
    Column("pos_system_id", ID, nullable=False),
    Column("secret_hash", String(300), nullable=False),
    Column("company_id", ID, nullable=True),
    Column("role", String(20), nullable=True),
    ForeignKeyConstraint(["pos_system_id"], ["pos_systems.id"], ondelete="CASCADE"),
    ForeignKeyConstraint(
        ["pos_system_id", "company_id"], ["companies.pos_system_id", "companies.id"], ondelete="CASCADE"
    ),
)
"""POS clients (``company_id`` and ``role`` null) and merchant API clients (bound to one company, a role)."""

companies = Table(
    "companies",
    metadata,
    Column("pos_system_id", ID, primary_key=True),
    Column("id", ID, primary_key=True),
    Column("name", String(200), nullable=False),
    ForeignKeyConstraint(["pos_system_id"], ["pos_systems.id"], ondelete="CASCADE"),
)
"""A merchant account; its marketing setup lives in ``marketing_versions``."""

locations = Table(
    "locations",
    metadata,
    Column("pos_system_id", ID, primary_key=True),
    Column("id", ID, primary_key=True),
    Column("company_id", ID, nullable=False),
    Column("name", String(200), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("country", String(2), nullable=False),
    Column("quiet_hours", String(11), nullable=False, server_default="21:00-08:00"),
    ForeignKeyConstraint(
        ["pos_system_id", "company_id"], ["companies.pos_system_id", "companies.id"], ondelete="CASCADE"
    ),
)

terminals = Table(
    "terminals",
    metadata,
    Column("pos_system_id", ID, primary_key=True),
    Column("location_id", ID, primary_key=True),
    Column("id", ID, primary_key=True),
    Column("cfs", Boolean, nullable=False),
    ForeignKeyConstraint(
        ["pos_system_id", "location_id"], ["locations.pos_system_id", "locations.id"], ondelete="CASCADE"
    ),
)

console_users = Table(
    "console_users",
    metadata,
    Column("pos_system_id", ID, primary_key=True),
    Column("company_id", ID, primary_key=True),
    Column("email", String(320), primary_key=True),
    Column("password_hash", String(300), nullable=False),
    Column("role", String(20), nullable=False),
    ForeignKeyConstraint(
        ["pos_system_id", "company_id"], ["companies.pos_system_id", "companies.id"], ondelete="CASCADE"
    ),
)
"""A merchant's console users: ``email`` lower-cased, the password only as an argon2 hash."""

# --- merchants' marketing: versions, the active one, the audit trail --------------------------

marketing_versions = Table(
    "marketing_versions",
    metadata,
    Column("pos_system_id", ID, primary_key=True),
    Column("company_id", ID, primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("document", JSON, nullable=False),
    Column("source", String(10), nullable=False),
    Column("created_by", String(400), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("note", String(1000), nullable=True),
    Column("activated_at", UtcDateTime, nullable=True),
    ForeignKeyConstraint(
        ["pos_system_id", "company_id"], ["companies.pos_system_id", "companies.id"], ondelete="CASCADE"
    ),
)
"""A company's marketing setup ``Document`` as JSON, numbered per company; never changed once written.

``activated_at`` is set the first time the version goes live (a draft has none)."""

marketing_active = Table(
    "marketing_active",
    metadata,
    Column("pos_system_id", ID, primary_key=True),
    Column("company_id", ID, primary_key=True),
    Column("version", Integer, nullable=False),
    ForeignKeyConstraint(
        ["pos_system_id", "company_id"], ["companies.pos_system_id", "companies.id"], ondelete="CASCADE"
    ),
)
"""Which version of each company is live: one row per company, changed by compare-and-set."""

marketing_audit = Table(
    "marketing_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pos_system_id", ID, nullable=False),
    Column("company_id", ID, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(400), nullable=False),
    Column("source", String(10), nullable=False),
    Column("action", String(20), nullable=False),
    Column("version", Integer, nullable=True),
    Column("summary", Text, nullable=False),
    ForeignKeyConstraint(
        ["pos_system_id", "company_id"], ["companies.pos_system_id", "companies.id"], ondelete="CASCADE"
    ),
    Index("ix_marketing_audit_company", "pos_system_id", "company_id", "id"),
)
"""One entry per draft, activation and ``cmc apply`` change of a company's marketing."""

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("pos_system_id", ID, primary_key=True),
    Column("company_id", ID, primary_key=True),
    Column("actor", String(400), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status", Integer, nullable=False),
    Column("headers", JSON, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_idempotency_keys_created_at", "created_at"),
)
"""The answer to each merchant API POST sent with an ``Idempotency-Key``, replayed on a retry."""

login_failures = Table(
    "login_failures",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("window_start", UtcDateTime, nullable=False),
    Column("failures", Integer, nullable=False),
    Index("ix_login_failures_window_start", "window_start"),
)
"""Failed credential checks per client id / per source address (hashed), in fixed windows."""

signed_out_tokens = Table(
    "signed_out_tokens",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("expires_at", UtcDateTime, nullable=False),
)
"""Console sessions ended by logout, by their token's SHA-256, until the token expires (``cmc.signouts``).

No index on ``expires_at``: the table holds at most the logouts of one token lifetime, and only
``cmc prune`` reads by it."""

# --- the tender path ---------------------------------------------------------------------------

transactions = Table(
    "transactions",
    metadata,
    Column("id", String(36), primary_key=True),
    # The session id that carried the transaction: a session carries one transaction, so this key is
    # what makes a session single-use (a second sale with it collides, in the same commit).
    Column("pos_system_id", ID, nullable=False),
    Column("company_id", ID, nullable=False),
    Column("pos_transaction_id", ID, nullable=False),
    Column("location_id", ID, nullable=False),
    Column("terminal_id", ID, nullable=False),
    Column("transaction_type", String(100), nullable=False),
    Column("is_reversal", Boolean, nullable=False),
    Column("amount", ExactDecimal, nullable=True),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("profile_id", String(36), nullable=True),
    Column("loyalty_card", String(200), nullable=True),
    Column("request_hash", String(64), nullable=False),
    Column("request", LargeBinary, nullable=False),
    Column("response", LargeBinary, nullable=False),
    # Idempotency: the replay lookup, and the race between two processes storing the same sale.
    UniqueConstraint("pos_system_id", "company_id", "pos_transaction_id", name="uq_transactions_pos_tx"),
    # A customer's visits in time order (the merchant's customer timeline, return-visit analytics);
    # with each visit's amount and kind, so that a rule's lift follows its customers in this index
    # alone (the sale's row is the size of its request and response: one page read per visit).
    Index("ix_transactions_profile", "profile_id", "occurred_at", "amount", "is_reversal"),
    # A merchant's sales in a time window: the simulation's replay, and the analytics' tender counts,
    # identified share and series read from this index alone (it holds ``profile_id``: no table
    # lookup per sale, and still the one index a sale writes besides the profile's and the key).
    Index("ix_transactions_company_time", "pos_system_id", "company_id", "occurred_at", "profile_id"),
)
"""``request`` is the decoded body re-encoded as JSON (its basket included: the products have no table
of their own, nothing queries them by column); ``response`` the exact bytes a replay answers with."""

# --- customer profiles -------------------------------------------------------------------------

profiles = Table(
    "profiles",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("pos_system_id", ID, nullable=False),
    Column("company_id", ID, nullable=False),
    Column("first_name", String(1000), nullable=True),
    Column("last_name", String(1000), nullable=True),
    Column("email", String(1000), nullable=True),
    Column("phone", String(50), nullable=True),
    Column("birth_date", String(10), nullable=True),
    Column("gender", String(100), nullable=True),
    Column("visit_count", Integer, nullable=False),
    Column("lifetime_spend", ExactDecimal, nullable=False),
    Column("has_card", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # The merchant's customer search by name: the company's slice of this index holds every name and
    # id, so a search reads no profile row it does not return. Written when a customer is new (or
    # renamed), not on every visit.
    Index("ix_profiles_company_name", "pos_system_id", "company_id", "last_name", "first_name", "id"),
)

profile_identifiers = Table(
    "profile_identifiers",
    metadata,
    Column("pos_system_id", ID, primary_key=True),
    Column("company_id", ID, primary_key=True),
    Column("value", String(1000), primary_key=True),
    Column("kind", String(10), primary_key=True),
    Column("profile_id", String(36), nullable=False),
    Column("first_seen", UtcDateTime, nullable=False),
    # A profile's identifiers: the merchant's customer view (the tender path looks up by value).
    Index("ix_profile_identifiers_profile", "profile_id"),
)
"""Every identifier ever seen for a profile: card, pos (customer id), email, phone.

The key leads with ``value`` so one ``value IN (...)`` lookup serves every kind at once."""

profile_conflicts = Table(
    "profile_conflicts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pos_system_id", ID, nullable=False),
    Column("company_id", ID, nullable=False),
    Column("transaction_id", String(36), nullable=False),
    Column("kind", String(10), nullable=False),
    Column("value", String(1000), nullable=False),
    Column("resolved_profile_id", String(36), nullable=False),
    Column("other_profile_id", String(36), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)
"""Identifiers of one transaction that point at two profiles: recorded for review, never merged."""

# --- marketing: rule firings, short links, the notification outbox, CFS events ----------------

rule_firings = Table(
    "rule_firings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pos_system_id", ID, nullable=False),
    Column("company_id", ID, nullable=False),
    Column("rule", String(200), nullable=False),
    Column("profile_id", String(36), nullable=True),
    Column("transaction_id", String(36), nullable=False),
    Column("fired_at", UtcDateTime, nullable=False),
    Column("variant", String(10), nullable=False, server_default="treatment"),
    # The sale's amount, copied here so that influenced revenue reads the index below alone (the
    # sales' rows, fetched by key, cost 100 ms on SQLite and 400 ms on PostgreSQL per 20,000).
    Column("amount", ExactDecimal, nullable=True),
    # Two queries, one index (the tender path writes it on every firing): per-customer limits (how
    # often this customer got this rule since a moment: rule and profile, then a time range) and a
    # rule's customers for its lift (every firing of one rule, customer by customer, in time order).
    # It leads with the merchant, as both queries do: without it, SQLite matched them to the index
    # below and counted every firing of the company in the window (tests/test_query_plans.py); it
    # ends with what the lift reads of each firing, so that neither query reads the table.
    Index(
        "ix_rule_firings_rule",
        *("pos_system_id", "company_id", "rule", "profile_id", "fired_at", "variant", "transaction_id"),
    ),
    # Analytics: a merchant's firings in a window per variant and rule (summary, series), and the
    # distinct sales they fired on with their amounts (influenced revenue), each read from the index
    # alone; and the firings of a customer's sales (their timeline).
    Index(
        "ix_rule_firings_company_time",
        *("pos_system_id", "company_id", "fired_at", "variant", "rule", "transaction_id", "amount"),
    ),
    Index("ix_rule_firings_transaction", "transaction_id"),
)
"""One row per rule that fired for a transaction: what per-customer limits count.

``variant`` is ``treatment`` (the rule did what it says) or ``holdout`` (the customer is in the
rule's holdout: nothing was shown or sent; ``cmc.holdout``)."""

short_links = Table(
    "short_links",
    metadata,
    Column("code", String(32), primary_key=True),
    Column("pos_system_id", ID, nullable=False),
    Column("company_id", ID, nullable=False),
    Column("location_id", ID, nullable=False),
    Column("terminal_id", ID, nullable=False),
    Column("transaction_id", String(36), nullable=False),
    Column("widget_id", Integer, nullable=False),
    Column("title", String(1000), nullable=False),
    Column("target_url", Text, nullable=False),
    Column("scans", Integer, nullable=False, default=0),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_scan_at", UtcDateTime, nullable=True),
    Column("rule", String(200), nullable=True),
    # A sale's links (the customer view and analytics; written only when a rule gives a QR).
    Index("ix_short_links_transaction", "transaction_id"),
    # The QRs a merchant handed out in a window (the summary's scan rate).
    Index("ix_short_links_company_time", "pos_system_id", "company_id", "created_at"),
)
"""``/s/{code}`` redirects to ``target_url``, counts the scan and records it in ``scans``.

``rule`` is the rule whose QR widget made the link (None for links made before schema revision
``recording``)."""

scans = Table(
    "scans",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # The link's merchant, store and terminal, and its rule: what the scan is counted under.
    *(
        Column(name, ID, nullable=False)
        for name in ("pos_system_id", "company_id", "location_id", "terminal_id")
    ),
    Column("rule", String(200), nullable=True),
    Column("code", String(32), nullable=False),
    Column("scanned_at", UtcDateTime, nullable=False),
    Column("agent", String(100), nullable=False),
    Column("bot", Boolean, nullable=False),
    # A merchant's scans by rule in a time window (analytics). Written per scan, not per sale.
    Index("ix_scans_rule", "pos_system_id", "company_id", "rule", "scanned_at"),
    # A merchant's scans in a window, people and bots apart (summary, series); a link's scans (the
    # customer timeline, through the customer's links).
    Index("ix_scans_company_time", "pos_system_id", "company_id", "scanned_at", "bot"),
    Index("ix_scans_code", "code"),
)
"""One row per ``/s/{code}`` visit: the link's merchant, rule, store and terminal, and who scanned.

``agent`` is the browser family of the User-Agent (``Mobile Safari``, ``Chrome Mobile``; ``Other``
when unknown) and ``bot`` says a crawler or link previewer fetched the link (or it sent no
User-Agent at all): ``cmc.links.agent_of``."""

messages = Table(
    "messages",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("pos_system_id", ID, nullable=False),
    Column("company_id", ID, nullable=False),
    Column("location_id", ID, nullable=False),
    Column("transaction_id", String(36), nullable=False),
    Column("rule", String(200), nullable=False),
    Column("template_id", String(200), nullable=False),
    Column("channel", String(10), nullable=False),
    Column("recipient", String(1000), nullable=False),
    Column("subject", String(1000), nullable=True),
    Column("body", Text, nullable=False),
    Column("optout_token", String(64), nullable=False, unique=True),  # the /u/{token} lookup
    Column("status", String(12), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("lease_until", UtcDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime, nullable=True),
    Column("reason", String(50), nullable=True),
    Column("provider_id", String(100), nullable=True),
    Column("reported_at", UtcDateTime, nullable=True),
    # The dispatcher's claim: due messages in order, however large the backlog.
    Index("ix_messages_due", "status", "next_attempt_at"),
    # A sale's messages (the customer view; written only when a rule queues a message).
    Index("ix_messages_transaction", "transaction_id"),
    # The merchant's message log, newest first (and the series); with a state filter, and the
    # summary's messages per state, from the second one alone. Written per message, not per sale.
    Index("ix_messages_company_time", "pos_system_id", "company_id", "created_at"),
    Index("ix_messages_company_state", "pos_system_id", "company_id", "status", "created_at"),
)
"""The notification outbox: written with the sale, sent by the dispatcher.

``status`` (``cmc.outbox.queue`` draws the machine): queued → sending → sent → delivered | failed
(the SMS provider's report), or bounced (a permanent refusal of the address), or dead (the attempts
ran out); suppressed when it must not go (opted out, quiet hours, holdout). ``reason`` says why a
message is suppressed, failed, bounced or dead; ``provider_id`` is the provider's id of an SMS it
accepted (Twilio's ``sid``); ``reported_at`` when the provider reported delivered or failed.
"""

message_attempts = Table(
    "message_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_id", String(36), nullable=False),
    Column("attempted_at", UtcDateTime, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("error", Text, nullable=True),
    # A message's attempts (the message log), and pruning them with their message.
    Index("ix_message_attempts_message", "message_id"),
)

opt_outs = Table(
    "opt_outs",
    metadata,
    Column("pos_system_id", ID, primary_key=True),
    Column("company_id", ID, primary_key=True),
    Column("channel", String(10), primary_key=True),
    Column("recipient", String(1000), primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
)
"""Contacts that asked a merchant for no more messages on a channel."""

cfs_events = Table(
    "cfs_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pos_system_id", ID, nullable=False),
    Column("location_id", ID, nullable=False),
    Column("terminal_id", ID, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_cfs_events_screen", "pos_system_id", "location_id", "terminal_id", "id"),
)
"""Each sale at a customer-facing screen, written with the sale so every process can push it.

A screen is (pos_system_id, location_id, terminal_id); its index finds a screen's newest event
when a screen connects (what it must show now)."""

# --- customer-facing screens ---------------------------------------------------------------------

screens = Table(
    "screens",
    metadata,
    Column("pos_system_id", ID, primary_key=True, doc="With location_id and terminal_id: the screen."),
    Column("location_id", ID, primary_key=True),
    Column("terminal_id", ID, primary_key=True),
    Column("generation", Integer, nullable=False, doc="What the screen's credential is signed with now."),
    Column("rotated_at", UtcDateTime, nullable=False),
)
"""Screens whose pairing was rotated: the generation their credential is signed with (no row: 0).

Not a registry table: ``cmc apply`` never touches it, so a terminal removed and added again keeps
its generation and an old credential never comes back."""

# --- analytics --------------------------------------------------------------------------------------

rollups = Table(
    "rollups",
    metadata,
    Column("pos_system_id", ID, primary_key=True),
    Column("company_id", ID, primary_key=True),
    Column("metric", String(20), primary_key=True, doc="tenders, identified, firings, influenced, links."),
    Column("hour", UtcDateTime, primary_key=True, doc="The UTC hour it counts, by its start."),
    Column("rule", String(200), primary_key=True, doc="Firings: the rule; otherwise empty."),
    Column("variant", String(10), primary_key=True, doc="Firings: treatment or holdout; otherwise empty."),
    Column("count", Integer, nullable=False),
    Column("micros", BigInteger, nullable=False, doc="Influenced revenue in millionths; otherwise 0."),
)
"""What analytics counts per merchant and UTC hour, for the hours that no longer change (``cmc.rollup``).

Its key serves every read: a merchant's metric over a range of hours. Written by the roll-up's
background steps, never by the tender path."""
