"""merchants: identities, marketing versions, audit, idempotency keys, login failures

Each company's ``companies.config`` becomes its version 1 (source ``cli``), active; the column goes.

Revision ID: merchants
Revises: 0002
Create Date: 2026-12-01 20:00:00.000000
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from cmc.store.columns import create_table

revision: str = "merchants"
down_revision: str | None = "0003"

ID = sa.String(length=200)
COMPANY = "pos_system_id:s200 company_id:s200"
"""The pair every merchant table leads with."""
TO_COMPANY = {"pos_system_id company_id": "companies.pos_system_id companies.id"}
"""The merchant's rows go with the company."""


def upgrade() -> None:
    with op.batch_alter_table("api_clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("company_id", ID, nullable=True))
        batch_op.add_column(sa.Column("role", sa.String(length=20), nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_api_clients_pos_system_id_companies"),
            "companies",
            ["pos_system_id", "company_id"],
            ["pos_system_id", "id"],
            ondelete="CASCADE",
        )
    create_table(
        "console_users",
        COMPANY,
        "email:s320 password_hash:s300 role:s20",
        key="pos_system_id company_id email",
        refs=TO_COMPANY,
    )
    versions = create_table(
        "marketing_versions",
        COMPANY,
        "version:int document:json source:s10 created_by:s400 created_at:time note:s1000? activated_at:time?",
        key="pos_system_id company_id version",
        refs=TO_COMPANY,
    )
    active = create_table(
        "marketing_active", COMPANY, "version:int", key="pos_system_id company_id", refs=TO_COMPANY
    )
    create_table(
        "marketing_audit",
        "id:serial",
        COMPANY,
        "at:time actor:s400 source:s10 action:s20 version:int? summary:text",
        refs=TO_COMPANY,
        indexes={"ix_marketing_audit_company": "pos_system_id company_id id"},
    )
    create_table(
        "idempotency_keys",
        COMPANY,
        "actor:s400 key:s200 request_hash:s64 status:int headers:json body:blob created_at:time",
        key="pos_system_id company_id actor key",
        indexes={"ix_idempotency_keys_created_at": "created_at"},
    )
    create_table(
        "login_failures",
        "key:s64 window_start:time failures:int",
        key="key",
        indexes={"ix_login_failures_window_start": "window_start"},
    )
    op.create_index(
        "ix_transactions_company_time", "transactions", ["pos_system_id", "company_id", "occurred_at"]
    )
    _move_configs_to_versions(versions, active)
    # Not in batch mode: on SQLite that would copy ``companies`` and drop the original, and dropping a
    # table deletes its rows first, which foreign keys cascade to every location, terminal and client.
    # SQLite drops a plain column in place (3.35 and later).
    op.drop_column("companies", "config")


def _move_configs_to_versions(versions: sa.Table, active: sa.Table) -> None:
    """Each company's applied setup becomes its version 1, live, as if ``cmc apply`` had written it."""
    companies = sa.table(
        "companies", sa.column("pos_system_id"), sa.column("id"), sa.column("config", sa.JSON)
    )
    conn = op.get_bind()
    now = datetime.now(UTC)
    for pos_system_id, company_id, config in conn.execute(sa.select(companies)).all():
        key = {"pos_system_id": pos_system_id, "company_id": company_id}
        conn.execute(
            versions.insert().values(
                **key, version=1, document=config or {}, source="cli", created_by="migration",
                created_at=now, note="the setup applied before versions existed", activated_at=now,
            )
        )  # fmt: skip
        conn.execute(active.insert().values(**key, version=1))


def downgrade() -> None:
    with op.batch_alter_table("companies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("config", sa.JSON(), nullable=False, server_default="{}"))
    op.drop_index("ix_transactions_company_time", table_name="transactions")
    for table in (
        *("login_failures", "idempotency_keys", "marketing_audit", "marketing_active"),
        *("marketing_versions", "console_users"),
    ):
        op.drop_table(table)
    with op.batch_alter_table("api_clients", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("fk_api_clients_pos_system_id_companies"), type_="foreignkey")
        batch_op.drop_column("role")
        batch_op.drop_column("company_id")
