"""click tracking: the account default and campaign option for per-recipient short links, and
each click's device, OS and browser as ua-parser reads them (issue 17)

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Expand only: new columns with defaults, which the previous release ignores. Clicks
    # recorded before keep empty families (their raw User-Agent is still there).
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("track_links", sa.Boolean(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("track_links", sa.Boolean(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("link_clicks", schema=None) as batch_op:
        for name in ("device_family", "os_family", "browser_family"):
            batch_op.add_column(
                sa.Column(
                    name,
                    sqlmodel.sql.sqltypes.AutoString(length=64),
                    nullable=False,
                    server_default="",
                )
            )
        batch_op.add_column(sa.Column("bot", sa.Boolean(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("link_clicks", schema=None) as batch_op:
        for name in ("bot", "browser_family", "os_family", "device_family"):
            batch_op.drop_column(name)
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_column("track_links")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("track_links")
