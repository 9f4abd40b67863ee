"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-26 12:09:13.526627
"""

from alembic import op

from cmc.store.columns import create_table

revision: str = "0001"
down_revision: str | None = None

TO_POS = {"pos_system_id": "pos_systems.id"}


def upgrade() -> None:
    create_table(
        "interaction_sessions",
        "id:s36 pos_system_id:s200 company_id:s200 location_id:s200 terminal_id:s200",
        "created_at:time expires_at:time transaction_id:s36?",
        indexes={"ix_interaction_sessions_expires_at": "expires_at"},
    )
    create_table("meta", "key:s100 value:text", key="key")
    create_table("pos_systems", "id:s200 name:s200 status:s20 settings:json")
    create_table(
        "profile_conflicts",
        "id:serial pos_system_id:s200 company_id:s200 transaction_id:s36 kind:s10 value:s1000",
        "resolved_profile_id:s36 other_profile_id:s36 created_at:time",
    )
    create_table(
        "profile_identifiers",
        "pos_system_id:s200 company_id:s200 value:s1000 kind:s10 profile_id:s36 first_seen:time",
        key="pos_system_id company_id value kind",
        indexes={"ix_profile_identifiers_profile": "profile_id"},
    )
    create_table(
        "profiles",
        "id:s36 pos_system_id:s200 company_id:s200 first_name:s1000? last_name:s1000?",
        "email:s1000? phone:s50? birth_date:s10? gender:s100? visit_count:int lifetime_spend:dec",
        "has_card:bool created_at:time updated_at:time",
    )
    create_table(
        "transactions",
        "id:s36 pos_system_id:s200 company_id:s200 pos_transaction_id:s200 location_id:s200",
        "terminal_id:s200 session_id:s36 transaction_type:s100 is_reversal:bool amount:dec?",
        "occurred_at:time received_at:time profile_id:s36? loyalty_card:s200? request_hash:s64",
        "request:blob response:blob",
        unique={"uq_transactions_pos_tx": "pos_system_id company_id pos_transaction_id"},
        indexes={"ix_transactions_profile": "profile_id occurred_at"},
    )
    create_table(
        "api_clients", "client_id:s200 pos_system_id:s200 secret_hash:s300", key="client_id", refs=TO_POS
    )
    create_table(
        "companies", "pos_system_id:s200 id:s200 name:s200 config:json", key="pos_system_id id", refs=TO_POS
    )
    create_table(
        "transaction_products",
        "transaction_id:s36 line_no:int product_id:s200? product_name:s1000? manufacturer:s1000?",
        "product_category:s1000? quantity:dec",
        key="transaction_id line_no",
        refs={"transaction_id": "transactions.id"},
    )
    create_table(
        "locations",
        "pos_system_id:s200 id:s200 company_id:s200 name:s200 timezone:s64 country:s2",
        key="pos_system_id id",
        refs={"pos_system_id company_id": "companies.pos_system_id companies.id"},
    )
    create_table(
        "terminals",
        "pos_system_id:s200 location_id:s200 id:s200 cfs:bool",
        key="pos_system_id location_id id",
        refs={"pos_system_id location_id": "locations.pos_system_id locations.id"},
    )


def downgrade() -> None:
    # Each table's indexes go with it.
    for table in (
        *("terminals", "locations", "transaction_products", "companies", "api_clients", "transactions"),
        *(
            "profiles",
            "profile_identifiers",
            "profile_conflicts",
            "pos_systems",
            "meta",
            "interaction_sessions",
        ),
    ):
        op.drop_table(table)
