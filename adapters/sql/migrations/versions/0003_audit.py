"""The access trail: one row per access to patient data, and the persons it touched.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
INSTANT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("occurred_at", INSTANT, nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("authority", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index("ix_audit_events_occurred_at", "audit_events", ["occurred_at"])
    op.create_index("ix_audit_events_actor_id", "audit_events", ["actor", "id"])
    op.create_table(
        "audit_persons",
        sa.Column("event_id", ID, nullable=False),
        sa.Column("person_id", ID, nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["audit_events.id"],
                                name=op.f("fk_audit_persons_event_id_audit_events")),
        sa.PrimaryKeyConstraint("event_id", "person_id", name=op.f("pk_audit_persons")),
    )
    op.create_index("ix_audit_persons_person_id_event_id", "audit_persons",
                    ["person_id", "event_id"])


def downgrade() -> None:
    op.drop_table("audit_persons")
    op.drop_table("audit_events")
