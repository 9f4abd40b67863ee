"""merchants: identities, marketing versions, audit, idempotency keys, login failures

Each company's ``companies.config`` becomes its version 1 (source ``cli``), active; the column goes.

Revision ID: merchants
Revises: 0002
Create Date: 2026-12-01 20:00:00.000000
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from cmc.store.columns import columns

revision: str = "merchants"
down_revision: str | None = "0003"

ID = sa.String(length=200)


def _company_key() -> list[sa.Column[str]]:
    """The (pos_system_id, company_id) pair every merchant table leads with, cascading with the company."""
    return columns("pos_system_id:s200 company_id:s200")


def _to_company(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["pos_system_id", "company_id"],
        ["companies.pos_system_id", "companies.id"],
        name=op.f(f"fk_{table}_pos_system_id_companies"),
        ondelete="CASCADE",
    )


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
    op.create_table(
        "console_users",
        *_company_key(),
        *columns("email:s320 password_hash:s300 role:s20"),
        _to_company("console_users"),
        sa.PrimaryKeyConstraint("pos_system_id", "company_id", "email", name=op.f("pk_console_users")),
    )
    versions = op.create_table(
        "marketing_versions",
        *_company_key(),
        *columns("version:int document:json source:s10 created_by:s400 created_at:time"),
        *columns("note:s1000? activated_at:time?"),
        _to_company("marketing_versions"),
        sa.PrimaryKeyConstraint("pos_system_id", "company_id", "version", name=op.f("pk_marketing_versions")),
    )
    active = op.create_table(
        "marketing_active",
        *_company_key(),
        *columns("version:int"),
        _to_company("marketing_active"),
        sa.PrimaryKeyConstraint("pos_system_id", "company_id", name=op.f("pk_marketing_active")),
    )
    op.create_table(
        "marketing_audit",
        *columns("id:serial"),
        *_company_key(),
        *columns("at:time actor:s400 source:s10 action:s20 version:int? summary:text"),
        _to_company("marketing_audit"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketing_audit")),
    )
    with op.batch_alter_table("marketing_audit", schema=None) as batch_op:
        batch_op.create_index(
            "ix_marketing_audit_company", ["pos_system_id", "company_id", "id"], unique=False
        )
    op.create_table(
        "idempotency_keys",
        *_company_key(),
        *columns("actor:s400 key:s200 request_hash:s64 status:int headers:json body:blob created_at:time"),
        sa.PrimaryKeyConstraint(
            "pos_system_id", "company_id", "actor", "key", name=op.f("pk_idempotency_keys")
        ),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index("ix_idempotency_keys_created_at", ["created_at"], unique=False)
    op.create_table(
        "login_failures",
        *columns("key:s64 window_start:time failures:int"),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_failures")),
    )
    with op.batch_alter_table("login_failures", schema=None) as batch_op:
        batch_op.create_index("ix_login_failures_window_start", ["window_start"], unique=False)
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_transactions_company_time", ["pos_system_id", "company_id", "occurred_at"], unique=False
        )
    _move_configs_to_versions(versions, active)
    # Not in batch mode: on SQLite that would copy ``companies`` and drop the original, and dropping a
    # table deletes its rows first, which foreign keys cascade to every location, terminal and client.
    # SQLite drops a plain column in place (3.35 and later).
    op.drop_column("companies", "config")


def _move_configs_to_versions(versions: sa.Table | None, active: sa.Table | None) -> None:
    """Each company's applied setup becomes its version 1, live, as if ``cmc apply`` had written it."""
    assert versions is not None
    assert active is not None
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
    with op.batch_alter_table("transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_transactions_company_time")
    for table in ("login_failures", "idempotency_keys", "marketing_audit", "marketing_active"):
        op.drop_table(table)
    op.drop_table("marketing_versions")
    op.drop_table("console_users")
    with op.batch_alter_table("api_clients", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("fk_api_clients_pos_system_id_companies"), type_="foreignkey")
        batch_op.drop_column("role")
        batch_op.drop_column("company_id")
