"""marketing: rules, links, outbox, cfs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 12:13:54.483995
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cmc.store.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "cfs_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pos_system_id", sa.String(length=200), nullable=False),
        sa.Column("terminal_id", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", cmc.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cfs_events")),
    )
    op.create_table(
        "message_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("attempted_at", cmc.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_attempts")),
    )
    with op.batch_alter_table("message_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_message_attempts_message", ["message_id"], unique=False)

    op.create_table(
        "messages",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("pos_system_id", sa.String(length=200), nullable=False),
        sa.Column("company_id", sa.String(length=200), nullable=False),
        sa.Column("location_id", sa.String(length=200), nullable=False),
        sa.Column("transaction_id", sa.String(length=36), nullable=False),
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("template_id", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("recipient", sa.String(length=1000), nullable=False),
        sa.Column("subject", sa.String(length=1000), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("optout_token", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", cmc.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("lease_until", cmc.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", cmc.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", cmc.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint("optout_token", name=op.f("uq_messages_optout_token")),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index("ix_messages_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_messages_transaction", ["transaction_id"], unique=False)

    op.create_table(
        "opt_outs",
        sa.Column("pos_system_id", sa.String(length=200), nullable=False),
        sa.Column("company_id", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("recipient", sa.String(length=1000), nullable=False),
        sa.Column("created_at", cmc.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "pos_system_id", "company_id", "channel", "recipient", name=op.f("pk_opt_outs")
        ),
    )
    op.create_table(
        "rule_firings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pos_system_id", sa.String(length=200), nullable=False),
        sa.Column("company_id", sa.String(length=200), nullable=False),
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("profile_id", sa.String(length=36), nullable=True),
        sa.Column("transaction_id", sa.String(length=36), nullable=False),
        sa.Column("fired_at", cmc.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_firings")),
    )
    with op.batch_alter_table("rule_firings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_rule_firings_profile_rule", ["profile_id", "rule", "fired_at"], unique=False
        )

    op.create_table(
        "short_links",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("pos_system_id", sa.String(length=200), nullable=False),
        sa.Column("company_id", sa.String(length=200), nullable=False),
        sa.Column("location_id", sa.String(length=200), nullable=False),
        sa.Column("terminal_id", sa.String(length=200), nullable=False),
        sa.Column("transaction_id", sa.String(length=36), nullable=False),
        sa.Column("widget_id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=1000), nullable=False),
        sa.Column("target_url", sa.Text(), nullable=False),
        sa.Column("scans", sa.Integer(), nullable=False),
        sa.Column("created_at", cmc.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_scan_at", cmc.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_short_links")),
    )
    with op.batch_alter_table("short_links", schema=None) as batch_op:
        batch_op.create_index("ix_short_links_transaction", ["transaction_id"], unique=False)

    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("quiet_hours", sa.String(length=11), server_default="21:00-08:00", nullable=False)
        )


def downgrade() -> None:

    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.drop_column("quiet_hours")

    with op.batch_alter_table("short_links", schema=None) as batch_op:
        batch_op.drop_index("ix_short_links_transaction")

    op.drop_table("short_links")
    with op.batch_alter_table("rule_firings", schema=None) as batch_op:
        batch_op.drop_index("ix_rule_firings_profile_rule")

    op.drop_table("rule_firings")
    op.drop_table("opt_outs")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_transaction")
        batch_op.drop_index("ix_messages_due")

    op.drop_table("messages")
    with op.batch_alter_table("message_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_message_attempts_message")

    op.drop_table("message_attempts")
    op.drop_table("cfs_events")
