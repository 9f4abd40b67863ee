"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26 12:09:13.526627
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cmc.store.columns import columns

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "interaction_sessions",
        *columns("id:s36 pos_system_id:s200 company_id:s200 location_id:s200 terminal_id:s200"),
        *columns("created_at:time expires_at:time transaction_id:s36?"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_interaction_sessions")),
    )
    with op.batch_alter_table("interaction_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_interaction_sessions_expires_at", ["expires_at"], unique=False)

    op.create_table(
        "meta",
        *columns("key:s100 value:text"),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_meta")),
    )
    op.create_table(
        "pos_systems",
        *columns("id:s200 name:s200 status:s20 settings:json"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pos_systems")),
    )
    op.create_table(
        "profile_conflicts",
        *columns("id:serial pos_system_id:s200 company_id:s200 transaction_id:s36 kind:s10 value:s1000"),
        *columns("resolved_profile_id:s36 other_profile_id:s36 created_at:time"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profile_conflicts")),
    )
    op.create_table(
        "profile_identifiers",
        *columns("pos_system_id:s200 company_id:s200 value:s1000 kind:s10 profile_id:s36 first_seen:time"),
        sa.PrimaryKeyConstraint(
            "pos_system_id", "company_id", "value", "kind", name=op.f("pk_profile_identifiers")
        ),
    )
    with op.batch_alter_table("profile_identifiers", schema=None) as batch_op:
        batch_op.create_index("ix_profile_identifiers_profile", ["profile_id"], unique=False)

    op.create_table(
        "profiles",
        *columns("id:s36 pos_system_id:s200 company_id:s200 first_name:s1000? last_name:s1000?"),
        *columns("email:s1000? phone:s50? birth_date:s10? gender:s100? visit_count:int lifetime_spend:dec"),
        *columns("has_card:bool created_at:time updated_at:time"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profiles")),
    )
    op.create_table(
        "transactions",
        *columns("id:s36 pos_system_id:s200 company_id:s200 pos_transaction_id:s200 location_id:s200"),
        *columns("terminal_id:s200 session_id:s36 transaction_type:s100 is_reversal:bool amount:dec?"),
        *columns("occurred_at:time received_at:time profile_id:s36? loyalty_card:s200? request_hash:s64"),
        *columns("request:blob response:blob"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transactions")),
        sa.UniqueConstraint(
            "pos_system_id", "company_id", "pos_transaction_id", name="uq_transactions_pos_tx"
        ),
    )
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.create_index("ix_transactions_profile", ["profile_id", "occurred_at"], unique=False)

    op.create_table(
        "api_clients",
        *columns("client_id:s200 pos_system_id:s200 secret_hash:s300"),
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
        *columns("pos_system_id:s200 id:s200 name:s200 config:json"),
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
        *columns("transaction_id:s36 line_no:int product_id:s200? product_name:s1000? manufacturer:s1000?"),
        *columns("product_category:s1000? quantity:dec"),
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
        *columns("pos_system_id:s200 id:s200 company_id:s200 name:s200 timezone:s64 country:s2"),
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
        *columns("pos_system_id:s200 location_id:s200 id:s200 cfs:bool"),
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
