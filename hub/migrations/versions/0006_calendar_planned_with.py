"""calendars.planned_with: what a calendar's reminders were last planned with (issue 20)

The planner re-renders an unchanged appointment only when this differs from the calendar's
settings that shape a reminder's text and recipient (template, language, zone, region, part
cap); otherwise a sync costs what changed, not the whole calendar. Empty (as for every
calendar after this migration) means "unknown": the next sync compares everything once.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calendars", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "planned_with",
                sqlmodel.sql.sqltypes.AutoString(length=64),
                nullable=False,
                server_default="",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("calendars", schema=None) as batch_op:
        batch_op.drop_column("planned_with")
