"""answer write-back: reminder answers written to the calendar when they arrive, retried

Revision ID: 0007
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # New columns only (expand): a previous release keeps writing answers at its syncs and
    # ignores them. The server defaults fill the rows already there.
    with op.batch_alter_table("calendar_events") as batch:
        batch.add_column(sa.Column("answer_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("answer_due_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("answer_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column(
                "answer_error",
                sqlmodel.sql.sqltypes.AutoString(length=500),
                nullable=False,
                server_default="",
            )
        )
        batch.create_index("ix_calendar_events_answer_due_at", ["answer_due_at"], unique=False)
    # Answers a previous release had not written yet: due now.
    op.execute(
        sa.text(
            "UPDATE calendar_events SET answer_due_at = CURRENT_TIMESTAMP "
            "WHERE answer <> '' AND answer_written = :no"
        ).bindparams(no=False)
    )


def downgrade() -> None:
    with op.batch_alter_table("calendar_events") as batch:
        batch.drop_index("ix_calendar_events_answer_due_at")
        batch.drop_column("answer_error")
        batch.drop_column("answer_attempts")
        batch.drop_column("answer_due_at")
        batch.drop_column("answer_at")
