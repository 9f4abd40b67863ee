"""signouts: console sessions ended by logout

Revision ID: signouts
Revises: analytics
Create Date: 2026-12-01 23:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cmc.store.columns import columns

revision: str = "signouts"
down_revision: str | None = "analytics"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signed_out_tokens",
        *columns("digest:s64 expires_at:time"),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_signed_out_tokens")),
    )


def downgrade() -> None:
    op.drop_table("signed_out_tokens")
