"""transactions_profile_covering: a customer's visits with their amounts, for the lift

Revision ID: transactions_profile_covering
Revises: rollups
Create Date: 2026-12-02 04:10:00.000000

A rule's lift follows each customer of its cohort through their later sales: the visit's time,
amount and whether it was a reversal. With those in ``ix_transactions_profile`` the follow-up reads
the index alone instead of one sale row (request and response included) per visit.
"""

from alembic import op

revision: str = "transactions_profile_covering"
down_revision: str | None = "rollups"


def _index(columns: list[str]) -> None:
    op.drop_index("ix_transactions_profile", table_name="transactions")
    op.create_index("ix_transactions_profile", "transactions", columns)


def upgrade() -> None:
    _index(["profile_id", "occurred_at", "amount", "is_reversal"])


def downgrade() -> None:
    _index(["profile_id", "occurred_at"])
