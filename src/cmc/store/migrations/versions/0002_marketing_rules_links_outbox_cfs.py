"""marketing: rules, links, outbox, cfs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 12:13:54.483995
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cmc.store.columns import columns

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "cfs_events",
        *columns("id:serial pos_system_id:s200 terminal_id:s200 payload:json created_at:time"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cfs_events")),
    )
    op.create_table(
        "message_attempts",
        *columns("id:serial message_id:s36 attempted_at:time ok:bool error:text?"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_attempts")),
    )
    with op.batch_alter_table("message_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_message_attempts_message", ["message_id"], unique=False)

    op.create_table(
        "messages",
        *columns("id:s36 pos_system_id:s200 company_id:s200 location_id:s200 transaction_id:s36 rule:s200"),
        *columns("template_id:s200 channel:s10 recipient:s1000 subject:s1000? body:text optout_token:s64"),
        *columns("status:s12 attempts:int next_attempt_at:time lease_until:time? last_error:text?"),
        *columns("created_at:time sent_at:time?"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.UniqueConstraint("optout_token", name=op.f("uq_messages_optout_token")),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index("ix_messages_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_messages_transaction", ["transaction_id"], unique=False)

    op.create_table(
        "opt_outs",
        *columns("pos_system_id:s200 company_id:s200 channel:s10 recipient:s1000 created_at:time"),
        sa.PrimaryKeyConstraint(
            "pos_system_id", "company_id", "channel", "recipient", name=op.f("pk_opt_outs")
        ),
    )
    op.create_table(
        "rule_firings",
        *columns("id:serial pos_system_id:s200 company_id:s200 rule:s200 profile_id:s36?"),
        *columns("transaction_id:s36 fired_at:time"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_firings")),
    )
    with op.batch_alter_table("rule_firings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_rule_firings_profile_rule", ["profile_id", "rule", "fired_at"], unique=False
        )

    op.create_table(
        "short_links",
        *columns("code:s32 pos_system_id:s200 company_id:s200 location_id:s200 terminal_id:s200"),
        *columns("transaction_id:s36 widget_id:int title:s1000 target_url:text scans:int created_at:time"),
        *columns("last_scan_at:time?"),
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
