"""firings_rule_index: the index of a rule's firings leads with the merchant

Revision ID: firings_rule_index
Revises: signouts
Create Date: 2026-12-02 03:20:00.000000

Without the merchant's columns, a query that names them (the per-customer limit on the tender path,
the lift's cohort) matched ``ix_rule_firings_company_time`` as well, and SQLite took that one: it
counted every firing of the company since the limit's start, on every sale a limited rule could fire
on. A rule's name is the company's own, so the merchant belongs in front of it anyway; the variant
and the sale close it, so that the lift reads its cohort from the index alone.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "firings_rule_index"
down_revision: str | None = "signouts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = ["rule", "profile_id", "fired_at"]
AFTER = ["pos_system_id", "company_id", "rule", "profile_id", "fired_at", "variant", "transaction_id"]


def _index(columns: list[str]) -> None:
    op.drop_index("ix_rule_firings_rule", table_name="rule_firings")
    op.create_index("ix_rule_firings_rule", "rule_firings", columns)


def upgrade() -> None:
    _index(AFTER)


def downgrade() -> None:
    _index(BEFORE)
