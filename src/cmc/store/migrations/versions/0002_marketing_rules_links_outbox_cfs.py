"""marketing: rules, links, outbox, cfs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 12:13:54.483995
"""

import sqlalchemy as sa
from alembic import op

from cmc.store.columns import create_table

revision: str = "0002"
down_revision: str | None = "0001"


def upgrade() -> None:
    create_table("cfs_events", "id:serial pos_system_id:s200 terminal_id:s200 payload:json created_at:time")
    create_table(
        "message_attempts",
        "id:serial message_id:s36 attempted_at:time ok:bool error:text?",
        indexes={"ix_message_attempts_message": "message_id"},
    )
    create_table(
        "messages",
        "id:s36 pos_system_id:s200 company_id:s200 location_id:s200 transaction_id:s36 rule:s200",
        "template_id:s200 channel:s10 recipient:s1000 subject:s1000? body:text optout_token:s64",
        "status:s12 attempts:int next_attempt_at:time lease_until:time? last_error:text?",
        "created_at:time sent_at:time?",
        unique={"uq_messages_optout_token": "optout_token"},
        indexes={"ix_messages_due": "status next_attempt_at", "ix_messages_transaction": "transaction_id"},
    )
    create_table(
        "opt_outs",
        "pos_system_id:s200 company_id:s200 channel:s10 recipient:s1000 created_at:time",
        key="pos_system_id company_id channel recipient",
    )
    create_table(
        "rule_firings",
        "id:serial pos_system_id:s200 company_id:s200 rule:s200 profile_id:s36?",
        "transaction_id:s36 fired_at:time",
        indexes={"ix_rule_firings_profile_rule": "profile_id rule fired_at"},
    )
    create_table(
        "short_links",
        "code:s32 pos_system_id:s200 company_id:s200 location_id:s200 terminal_id:s200",
        "transaction_id:s36 widget_id:int title:s1000 target_url:text scans:int created_at:time",
        "last_scan_at:time?",
        key="code",
        indexes={"ix_short_links_transaction": "transaction_id"},
    )
    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("quiet_hours", sa.String(length=11), server_default="21:00-08:00", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.drop_column("quiet_hours")
    # Each table's indexes go with it.
    for table in ("short_links", "rule_firings", "opt_outs", "messages", "message_attempts", "cfs_events"):
        op.drop_table(table)
