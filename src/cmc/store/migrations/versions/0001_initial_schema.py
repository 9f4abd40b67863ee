"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26 12:09:13.526627
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import cmc.store.types

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "interaction_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("pos_system_id", sa.String(length=200), nullable=False),
        sa.Column("company_id", sa.String(length=200), nullable=False),
        sa.Column("location_id", sa.String(length=200), nullable=False),
        sa.Column("terminal_id", sa.String(length=200), nullable=False),
        sa.Column("created_at", cmc.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", cmc.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("transaction_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_interaction_sessions")),
    )
    with op.batch_alter_table("interaction_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_interaction_sessions_expires_at", ["expires_at"], unique=False)

    op.create_table(
        "meta",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_meta")),
    )
    op.create_table(
        "pos_systems",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pos_systems")),
    )
    op.create_table(
        "profile_conflicts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("pos_system_id", sa.String(length=200), nullable=False),
        sa.Column("company_id", sa.String(length=200), nullable=False),
        sa.Column("transaction_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("value", sa.String(length=1000), nullable=False),
        sa.Column("resolved_profile_id", sa.String(length=36), nullable=False),
        sa.Column("other_profile_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", cmc.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profile_conflicts")),
    )
    op.create_table(
        "profile_identifiers",
        sa.Column("pos_system_id", sa.String(length=200), nullable=False),
        sa.Column("company_id", sa.String(length=200), nullable=False),
        sa.Column("value", sa.String(length=1000), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("profile_id", sa.String(length=36), nullable=False),
        sa.Column("first_seen", cmc.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "pos_system_id", "company_id", "value", "kind", name=op.f("pk_profile_identifiers")
        ),
    )
    with op.batch_alter_table("profile_identifiers", schema=None) as batch_op:
        batch_op.create_index("ix_profile_identifiers_profile", ["profile_id"], unique=False)

    op.create_table(
        "profiles",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("pos_system_id", sa.String(length=200), nullable=False),
        sa.Column("company_id", sa.String(length=200), nullable=False),
        sa.Column("first_name", sa.String(length=1000), nullable=True),
        sa.Column("last_name", sa.String(length=1000), nullable=True),
        sa.Column("email", sa.String(length=1000), nullable=True),
        sa.Column("phone", sa.String(length=50), nullable=True),
        sa.Column("birth_date", sa.String(length=10), nullable=True),
        sa.Column("gender", sa.String(length=100), nullable=True),
        sa.Column("visit_count", sa.Integer(), nullable=False),
        sa.Column("lifetime_spend", cmc.store.types.ExactDecimal(length=40), nullable=False),
        sa.Column("has_card", sa.Boolean(), nullable=False),
        sa.Column("created_at", cmc.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", cmc.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profiles")),
    )
    op.create_table(
        "transactions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("pos_system_id", sa.String(length=200), nullable=False),
        sa.Column("company_id", sa.String(length=200), nullable=False),
        sa.Column("pos_transaction_id", sa.String(length=200), nullable=False),
        sa.Column("location_id", sa.String(length=200), nullable=False),
        sa.Column("terminal_id", sa.String(length=200), nullable=False),
        sa.Column("session_id", sa.String(length=36), nullable=False),
        sa.Column("transaction_type", sa.String(length=100), nullable=False),
        sa.Column("is_reversal", sa.Boolean(), nullable=False),
        sa.Column("amount", cmc.store.types.ExactDecimal(length=40), nullable=True),
        sa.Column("occurred_at", cmc.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("received_at", cmc.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("profile_id", sa.String(length=36), nullable=True),
        sa.Column("loyalty_card", sa.String(length=200), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("request", sa.LargeBinary(), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transactions")),
        sa.UniqueConstraint(
            "pos_system_id", "company_id", "pos_transaction_id", name="uq_transactions_pos_tx"
        ),
    )
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.create_index("ix_transactions_profile", ["profile_id", "occurred_at"], unique=False)

    op.create_table(
        "api_clients",
        sa.Column("client_id", sa.String(length=200), nullable=False),
        sa.Column("pos_system_id", sa.String(length=200), nullable=False),
        sa.Column("secret_hash", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(
            ["pos_system_id"],
            ["pos_systems.id"],
            name=op.f("fk_api_clients_pos_system_id_pos_systems"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_api_clients")),
    )
    op.create_table(
        "companies",
        sa.Column("pos_system_id", sa.String(length=200), nullable=False),
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["pos_system_id"],
            ["pos_systems.id"],
            name=op.f("fk_companies_pos_system_id_pos_systems"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pos_system_id", "id", name=op.f("pk_companies")),
    )
    op.create_table(
        "transaction_products",
        sa.Column("transaction_id", sa.String(length=36), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.String(length=200), nullable=True),
        sa.Column("product_name", sa.String(length=1000), nullable=True),
        sa.Column("manufacturer", sa.String(length=1000), nullable=True),
        sa.Column("product_category", sa.String(length=1000), nullable=True),
        sa.Column("quantity", cmc.store.types.ExactDecimal(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_transaction_products_transaction_id_transactions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("transaction_id", "line_no", name=op.f("pk_transaction_products")),
    )
    op.create_table(
        "locations",
        sa.Column("pos_system_id", sa.String(length=200), nullable=False),
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("company_id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.ForeignKeyConstraint(
            ["pos_system_id", "company_id"],
            ["companies.pos_system_id", "companies.id"],
            name=op.f("fk_locations_pos_system_id_companies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pos_system_id", "id", name=op.f("pk_locations")),
    )
    op.create_table(
        "terminals",
        sa.Column("pos_system_id", sa.String(length=200), nullable=False),
        sa.Column("location_id", sa.String(length=200), nullable=False),
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("cfs", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["pos_system_id", "location_id"],
            ["locations.pos_system_id", "locations.id"],
            name=op.f("fk_terminals_pos_system_id_locations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pos_system_id", "location_id", "id", name=op.f("pk_terminals")),
    )


def downgrade() -> None:

    op.drop_table("terminals")
    op.drop_table("locations")
    op.drop_table("transaction_products")
    op.drop_table("companies")
    op.drop_table("api_clients")
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_transactions_profile")

    op.drop_table("transactions")
    op.drop_table("profiles")
    with op.batch_alter_table("profile_identifiers", schema=None) as batch_op:
        batch_op.drop_index("ix_profile_identifiers_profile")

    op.drop_table("profile_identifiers")
    op.drop_table("profile_conflicts")
    op.drop_table("pos_systems")
    op.drop_table("meta")
    with op.batch_alter_table("interaction_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_interaction_sessions_expires_at")

    op.drop_table("interaction_sessions")
