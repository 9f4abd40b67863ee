"""one write per tender: sessions are signed ids (no table), baskets live in the stored request

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 21:00:00

Sessions issued before this revision were rows of ``interaction_sessions``; after it a session is a
signed id, so a POS holding an old session id gets 404 and opens a new session (the SDK does so by
itself). ``transaction_products`` duplicated the basket every stored request already holds.
"""

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"


def upgrade() -> None:
    with op.batch_alter_table("interaction_sessions") as batch_op:
        batch_op.drop_index("ix_interaction_sessions_expires_at")
    op.drop_table("interaction_sessions")
    op.drop_table("transaction_products")
    with op.batch_alter_table("transactions") as batch_op:
        batch_op.drop_column("session_id")


def downgrade() -> None:
    # The dropped session rows expired long ago and the baskets are in every stored request; an old
    # release reading this database would find empty tables, not lost sales. Refuse rather than fake it.
    raise RuntimeError("0003 cannot be undone: restore a backup taken before upgrading")
