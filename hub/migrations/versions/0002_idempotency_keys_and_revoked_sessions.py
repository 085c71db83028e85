"""idempotency keys and revoked sessions

Two new tables (expand only): the API's Idempotency-Key with the fingerprint of the request
that first used it and its answer; console sessions ended by logout until they expire.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 16:36:46.889586
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_revoked_sessions",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("console_revoked_sessions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_console_revoked_sessions_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "api_idempotency_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("account_id", "key", name="uq_api_idempotency_key"),
    )


def downgrade() -> None:
    op.drop_table("api_idempotency_keys")
    with op.batch_alter_table("console_revoked_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_console_revoked_sessions_expires_at"))

    op.drop_table("console_revoked_sessions")
