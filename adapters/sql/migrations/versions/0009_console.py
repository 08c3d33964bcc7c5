"""Indexes for the console's pages: the automatic links and scored decisions of a period
(indicators, score distribution), the records by establishment and status (qualified INS
rate), a record's establishment read from an index (counts by establishment), and the review
tasks about a person (a person's history).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_links_method_decided_at", "links", ["method", "decided_at"])
    op.create_index("ix_links_decided_at", "links", ["decided_at"])
    op.create_index("ix_source_records_authority_status_ins_qualified", "source_records",
                    ["authority", "status", "ins_qualified"])
    op.create_index("ix_source_records_id_authority", "source_records", ["id", "authority"])
    op.create_index("ix_review_tasks_person_id", "review_tasks", ["person_id"])


def downgrade() -> None:
    op.drop_index("ix_review_tasks_person_id", "review_tasks")
    op.drop_index("ix_source_records_id_authority", "source_records")
    op.drop_index("ix_source_records_authority_status_ins_qualified", "source_records")
    op.drop_index("ix_links_decided_at", "links")
    op.drop_index("ix_links_method_decided_at", "links")
