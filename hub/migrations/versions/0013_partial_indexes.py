"""partial indexes: the outbox and calendar indexes that new rows never match skip them
(issue 20)

A first calendar sync writes one outbox row and one calendar_events row per appointment;
each index is one more B-tree insert per row. Three indexes only ever serve rows where their
column is set, which a new reminder (and most other messages) never has: a campaign's
messages (campaign_id), messages a provider accepted (provider_message_id), and events
whose answer is waiting to be written back (answer_due_at). Made partial (WHERE the column
IS NOT NULL), they hold only those rows; every query using them says ``column = value``,
``column IN (...)`` or ``column <= value``, which both planners know implies IS NOT NULL.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# (table, index name, columns, PostgreSQL included columns, the column that must be set)
_INDEXES: list[tuple[str, str, list[str], list[str], str]] = [
    (
        "messages",
        "ix_messages_campaign_created",
        ["campaign_id", "created_at", "id"],
        ["account_id", "status", "segments"],
        "campaign_id",
    ),
    (
        "messages",
        "ix_messages_provider_ref",
        ["provider", "provider_message_id"],
        [],
        "provider_message_id",
    ),
    ("calendar_events", "ix_calendar_events_answer_due_at", ["answer_due_at"], [], "answer_due_at"),
]


def _create(table: str, name: str, columns: list[str], include: list[str], where: str) -> None:
    extra = {"postgresql_include": include} if include else {}
    if where:
        condition = sa.text(f"{where} IS NOT NULL")
        extra |= {"sqlite_where": condition, "postgresql_where": condition}
    op.create_index(name, table, columns, unique=False, **extra)  # type: ignore[arg-type]


def upgrade() -> None:
    # In one transaction on PostgreSQL: a reader never finds the index missing. Building a
    # partial index reads the table once and writes only the few rows it holds.
    for table, name, columns, include, column in _INDEXES:
        op.drop_index(name, table_name=table)
        _create(table, name, columns, include, column)


def downgrade() -> None:
    for table, name, columns, include, _column in _INDEXES:
        op.drop_index(name, table_name=table)
        _create(table, name, columns, include, "")
