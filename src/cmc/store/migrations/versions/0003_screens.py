"""screens: cfs_events keyed by location too; screens (pairing generations)

Revision ID: screens
Revises: merchants
Create Date: 2026-12-03 10:00:00

Events written before this revision name no location: they get an empty one, so no screen ever
shows them (they were keyed by terminal alone, which is how a sale reached another location).
"""

import sqlalchemy as sa
from alembic import op

from cmc.store.columns import create_table

revision: str = "screens"
down_revision: str | None = "merchants"


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

    create_table(
        "screens",
        "pos_system_id:s200 location_id:s200 terminal_id:s200 generation:int rotated_at:time",
        key="pos_system_id location_id terminal_id",
    )


def downgrade() -> None:
    op.drop_table("screens")
    with op.batch_alter_table("cfs_events", schema=None) as batch_op:
        batch_op.drop_index("ix_cfs_events_screen")
        batch_op.drop_column("location_id")
