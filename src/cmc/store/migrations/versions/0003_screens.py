"""screens: cfs_events keyed by location too; screens (pairing generations)

Revision ID: screens
Revises: merchants
Create Date: 2026-12-03 10:00:00

Events written before this revision name no location: they get an empty one, so no screen ever
shows them (they were keyed by terminal alone, which is how a sale reached another location).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cmc.store.columns import columns

revision: str = "screens"
down_revision: str | None = "merchants"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cfs_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("location_id", sa.String(length=200), nullable=False, server_default="")
        )
    with op.batch_alter_table("cfs_events", schema=None) as batch_op:
        batch_op.alter_column("location_id", server_default=None)
        batch_op.create_index(
            "ix_cfs_events_screen", ["pos_system_id", "location_id", "terminal_id", "id"], unique=False
        )

    screen = ("pos_system_id", "location_id", "terminal_id")
    op.create_table(
        "screens",
        *(sa.Column(name, sa.String(length=200), nullable=False) for name in screen),
        *columns("generation:int rotated_at:time"),
        sa.PrimaryKeyConstraint(*screen, name=op.f("pk_screens")),
    )


def downgrade() -> None:
    op.drop_table("screens")
    with op.batch_alter_table("cfs_events", schema=None) as batch_op:
        batch_op.drop_index("ix_cfs_events_screen")
        batch_op.drop_column("location_id")
