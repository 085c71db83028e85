"""unsubscribe links (opt-out by web where STOP replies cannot reach the hub) and the
account's night hours for every send (issue 17)

Revision ID: 0008
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Expand only: a new table and new columns with defaults, which the previous release
    # ignores.
    op.create_table(
        "unsubscribe_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("number", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("message_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code"),
    )
    with op.batch_alter_table("unsubscribe_links", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_unsubscribe_links_account_id"), ["account_id"], unique=False
        )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "night_mode",
                sqlmodel.sql.sqltypes.AutoString(length=8),
                nullable=False,
                server_default="off",
            )
        )
        batch_op.add_column(
            sa.Column(
                "night_start",
                sqlmodel.sql.sqltypes.AutoString(length=5),
                nullable=False,
                server_default="21:00",
            )
        )
        batch_op.add_column(
            sa.Column(
                "night_end",
                sqlmodel.sql.sqltypes.AutoString(length=5),
                nullable=False,
                server_default="08:00",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("night_end")
        batch_op.drop_column("night_start")
        batch_op.drop_column("night_mode")
    with op.batch_alter_table("unsubscribe_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_unsubscribe_links_account_id"))
    op.drop_table("unsubscribe_links")
