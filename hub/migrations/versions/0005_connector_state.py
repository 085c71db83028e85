"""connector state: one table for what connectors keep between runs (issue 15 item 6)

Revision ID: 0005
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "connector_state",
        sa.Column("namespace", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("value", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("secret", sa.Boolean(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("namespace", "key"),
    )
    with op.batch_alter_table("connector_state", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_connector_state_expires_at"), ["expires_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("connector_state", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_connector_state_expires_at"))
    op.drop_table("connector_state")
