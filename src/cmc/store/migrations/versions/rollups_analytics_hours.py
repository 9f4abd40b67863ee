"""rollups: what analytics counts per merchant and UTC hour, for the hours that no longer change

Revision ID: rollups
Revises: firings_rule_index
Create Date: 2026-12-02 03:40:00.000000

Empty at first: ``cmc serve`` rolls up the history in the background (``cmc.rollup``), and until it
has, analytics count from the rows as before.
"""

from alembic import op

from cmc.store.columns import create_table

revision: str = "rollups"
down_revision: str | None = "firings_rule_index"


def upgrade() -> None:
    create_table(
        "rollups",
        "pos_system_id:s200 company_id:s200 metric:s20 hour:time rule:s200 variant:s10",
        "count:int micros:bigint",
        key="pos_system_id company_id metric hour rule variant",
    )


def downgrade() -> None:
    op.drop_table("rollups")
