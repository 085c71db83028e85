"""refused intake mails: what the console shows of the mails SMTP and IMAP intake refused
(issue 17)

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Expand only: a new table, which the previous release ignores.
    op.create_table(
        "refused_intake_mails",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("door", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("sender", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("message_id", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("notified", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("refused_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("refused_intake_mails", schema=None) as batch_op:
        batch_op.create_index(
            "ix_refused_intake_mails_account", ["account_id", "refused_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_refused_intake_mails_refused_at"), ["refused_at"], unique=False
        )


def downgrade() -> None:
    op.drop_table("refused_intake_mails")
