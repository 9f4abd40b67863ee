"""signouts: console sessions ended by logout

Revision ID: signouts
Revises: analytics
Create Date: 2026-12-01 23:40:00.000000
"""

from alembic import op

from cmc.store.columns import create_table

revision: str = "signouts"
down_revision: str | None = "analytics"


def upgrade() -> None:
    create_table("signed_out_tokens", "digest:s64 expires_at:time", key="digest")


def downgrade() -> None:
    op.drop_table("signed_out_tokens")
