"""calendar_events.person_source: where the name a reminder greets came from (issue 17)

A reminder's ``{{ name }}`` is a person's name only when one is found: an attendee's name
(``attendee``), a contact of the account with the number (``contact``) or a ``Nom:`` /
``Patient:`` line of the description (``description``); empty when none is. Rows written
before this migration have ``""`` until their next planning.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calendar_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "person_source",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=False,
                server_default="",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("calendar_events", schema=None) as batch_op:
        batch_op.drop_column("person_source")
