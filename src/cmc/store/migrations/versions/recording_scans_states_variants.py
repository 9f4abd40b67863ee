"""recording what analytics needs: a row per scan, message states and reasons, firing variants

Revision ID: recording
Revises: screens
Create Date: 2026-12-03 10:00:00

Links made before this revision have no rule (``short_links.rule`` is null); firings made before it
were all treatment (the server default fills ``rule_firings.variant``); messages keep their status,
the new ``reason``, ``provider_id`` and ``reported_at`` stay null for them. The per-customer limit
index is replaced by one leading with the rule, which serves the limits as before and a rule's lift.
"""

import sqlalchemy as sa
from alembic import op

from cmc.store.columns import columns, create_table

revision: str = "recording"
down_revision: str | None = "screens"

NEW_COLUMNS = {
    "short_links": columns("rule:s200?"),
    "rule_firings": [sa.Column("variant", sa.String(length=10), server_default="treatment", nullable=False)],
    "messages": columns("reason:s50? provider_id:s100? reported_at:time?"),
}


def upgrade() -> None:
    for table, added in NEW_COLUMNS.items():
        for column in added:
            op.add_column(table, column)
    op.drop_index("ix_rule_firings_profile_rule", table_name="rule_firings")
    op.create_index("ix_rule_firings_rule", "rule_firings", ["rule", "profile_id", "fired_at"])
    create_table(
        "scans",
        "id:serial pos_system_id:s200 company_id:s200 rule:s200? scanned_at:time code:s32",
        "location_id:s200 terminal_id:s200 agent:s100 bot:bool",
        indexes={"ix_scans_rule": "pos_system_id company_id rule scanned_at"},
    )


def downgrade() -> None:
    op.drop_index("ix_scans_rule", table_name="scans")
    op.drop_table("scans")
    op.drop_index("ix_rule_firings_rule", table_name="rule_firings")
    op.create_index("ix_rule_firings_profile_rule", "rule_firings", ["profile_id", "rule", "fired_at"])
    for table, added in NEW_COLUMNS.items():
        with op.batch_alter_table(table) as batch_op:
            for column in added:
                batch_op.drop_column(column.name)
