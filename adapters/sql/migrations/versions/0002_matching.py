"""Matching: blocking-key columns on source records, the candidate of a review task, and the
versions of the matching model.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
INSTANT = sa.DateTime(timezone=True)
BLOCKING_KEYS = ("name_year", "date_sex", "given_family", "place_date", "used_name")


def upgrade() -> None:
    with op.batch_alter_table("source_records") as batch:
        for key in BLOCKING_KEYS:
            batch.add_column(sa.Column(f"block_{key}", sa.Text(), nullable=True))
    for key in BLOCKING_KEYS:
        op.create_index(f"ix_source_records_block_{key}", "source_records", [f"block_{key}"])
    with op.batch_alter_table("review_tasks") as batch:
        batch.add_column(sa.Column("candidate_record_id", ID, nullable=True))
        batch.create_foreign_key(
            "fk_review_tasks_candidate_record_id_source_records",
            "source_records", ["candidate_record_id"], ["id"],
        )
    op.create_index("ix_review_tasks_record_id", "review_tasks", ["record_id"])
    op.create_table(
        "match_models",
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_match_models")),
    )


def downgrade() -> None:
    op.drop_table("match_models")
    op.drop_index("ix_review_tasks_record_id", table_name="review_tasks")
    with op.batch_alter_table("review_tasks") as batch:
        batch.drop_constraint("fk_review_tasks_candidate_record_id_source_records",
                              type_="foreignkey")
        batch.drop_column("candidate_record_id")
    for key in BLOCKING_KEYS:
        op.drop_index(f"ix_source_records_block_{key}", table_name="source_records")
    with op.batch_alter_table("source_records") as batch:
        for key in BLOCKING_KEYS:
            batch.drop_column(f"block_{key}")
