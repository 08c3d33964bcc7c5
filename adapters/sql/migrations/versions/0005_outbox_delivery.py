"""The outbox is read: each event is pending until the dispatcher has run its handlers.

Events written before this revision were acted upon inside the use cases that raised them
(PIX notifications were queued there): they are marked processed, so that the dispatcher
does not act on them a second time.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

INSTANT = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("outbox_events") as table:
        table.add_column(sa.Column("processed_at", INSTANT, nullable=True))
        table.add_column(sa.Column("attempts", sa.Integer(), nullable=False,
                                   server_default="0"))
        table.add_column(sa.Column("due_at", INSTANT, nullable=True))
        table.add_column(sa.Column("last_error", sa.Text(), nullable=True))
    op.execute("UPDATE outbox_events SET processed_at = occurred_at")
    op.create_index("ix_outbox_events_pending", "outbox_events", ["id"],
                    postgresql_where=sa.text("processed_at IS NULL"),
                    sqlite_where=sa.text("processed_at IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_outbox_events_pending", table_name="outbox_events")
    with op.batch_alter_table("outbox_events") as table:
        table.drop_column("last_error")
        table.drop_column("due_at")
        table.drop_column("attempts")
        table.drop_column("processed_at")
