"""recording what analytics needs: a row per scan, message states and reasons, firing variants

Revision ID: recording
Revises: screens
Create Date: 2026-12-03 10:00:00

Links made before this revision have no rule (``short_links.rule`` is null); firings made before it
were all treatment (the server default fills ``rule_firings.variant``); messages keep their status,
the new ``reason``, ``provider_id`` and ``reported_at`` stay null for them. The per-customer limit
index is replaced by one leading with the rule, which serves the limits as before and a rule's lift.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from cmc.store.types import UtcDateTime

revision: str = "recording"
down_revision: str | None = "screens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(length=200)
NEW_COLUMNS = {
    "short_links": [sa.Column("rule", sa.String(length=200), nullable=True)],
    "rule_firings": [sa.Column("variant", sa.String(length=10), server_default="treatment", nullable=False)],
    "messages": [
        sa.Column("reason", sa.String(length=50), nullable=True),
        sa.Column("provider_id", sa.String(length=100), nullable=True),
        sa.Column("reported_at", UtcDateTime(timezone=True), nullable=True),
    ],
}


def upgrade() -> None:
    for table, columns in NEW_COLUMNS.items():
        for column in columns:
            op.add_column(table, column)
    op.drop_index("ix_rule_firings_profile_rule", table_name="rule_firings")
    op.create_index("ix_rule_firings_rule", "rule_firings", ["rule", "profile_id", "fired_at"])
    keys: list[tuple[str, Any, bool]] = [(name, ID, False) for name in ("pos_system_id", "company_id")]
    rest: list[tuple[str, Any, bool]] = [
        ("rule", sa.String(length=200), True),
        ("scanned_at", UtcDateTime(timezone=True), False),
        ("code", sa.String(length=32), False),
        *[(name, ID, False) for name in ("location_id", "terminal_id")],
        ("agent", sa.String(length=100), False),
        ("bot", sa.Boolean(), False),
    ]
    op.create_table(
        "scans",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        *[sa.Column(name, kind, nullable=nullable) for name, kind, nullable in [*keys, *rest]],
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scans")),
    )
    op.create_index("ix_scans_rule", "scans", ["pos_system_id", "company_id", "rule", "scanned_at"])


def downgrade() -> None:
    op.drop_index("ix_scans_rule", table_name="scans")
    op.drop_table("scans")
    op.drop_index("ix_rule_firings_rule", table_name="rule_firings")
    op.create_index("ix_rule_firings_profile_rule", "rule_firings", ["profile_id", "rule", "fired_at"])
    for table, columns in NEW_COLUMNS.items():
        with op.batch_alter_table(table) as batch_op:
            for column in columns:
                batch_op.drop_column(column.name)
