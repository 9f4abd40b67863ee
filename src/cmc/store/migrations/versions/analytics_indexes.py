"""analytics: the indexes the merchant's analytics API reads

Revision ID: analytics
Revises: recording
Create Date: 2026-12-01 23:00:00

No new table: the analytics read the recorded rows through indexes (``cmc.store.tables`` says which
query each serves). A firing keeps its sale's amount (filled in here for older firings), so
influenced revenue is read from the firings' index alone. The merchant's sales-in-a-window index
gains ``profile_id``, so tender counts and the identified share are read from it alone; it stays the
one extra index a sale writes.
"""

import sqlalchemy as sa
from alembic import op

from cmc.store.types import ExactDecimal

revision: str = "analytics"
down_revision: str | None = "recording"

COMPANY = ["pos_system_id", "company_id"]
NEW_INDEXES = {
    "ix_profiles_company_name": ("profiles", [*COMPANY, "last_name", "first_name", "id"]),
    "ix_rule_firings_company_time": (
        "rule_firings",
        [*COMPANY, "fired_at", "variant", "rule", "transaction_id", "amount"],
    ),
    "ix_rule_firings_transaction": ("rule_firings", ["transaction_id"]),
    "ix_short_links_company_time": ("short_links", [*COMPANY, "created_at"]),
    "ix_scans_company_time": ("scans", [*COMPANY, "scanned_at", "bot"]),
    "ix_scans_code": ("scans", ["code"]),
    "ix_messages_company_time": ("messages", [*COMPANY, "created_at"]),
    "ix_messages_company_state": ("messages", [*COMPANY, "status", "created_at"]),
}


def upgrade() -> None:
    # A firing's sale amount (influenced revenue from the firings' index alone), filled in for the
    # firings made before this revision from their sales.
    op.add_column("rule_firings", sa.Column("amount", ExactDecimal(), nullable=True))
    op.execute(
        "UPDATE rule_firings SET amount = "
        "(SELECT amount FROM transactions WHERE transactions.id = rule_firings.transaction_id)"
    )
    op.drop_index("ix_transactions_company_time", table_name="transactions")
    op.create_index("ix_transactions_company_time", "transactions", [*COMPANY, "occurred_at", "profile_id"])
    for name, (table, columns) in NEW_INDEXES.items():
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, (table, _) in NEW_INDEXES.items():
        op.drop_index(name, table_name=table)
    op.drop_index("ix_transactions_company_time", table_name="transactions")
    op.create_index("ix_transactions_company_time", "transactions", [*COMPANY, "occurred_at"])
    with op.batch_alter_table("rule_firings") as batch_op:
        batch_op.drop_column("amount")
