"""The archive's legal lifecycle: retention of each study, legal holds, destruction
proposals with their approvals and tombstones, the journal of file deletions, reassignments,
and the instances' compression and fixity columns.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
INSTANT = sa.DateTime(timezone=True)

_INSTANCE_COLUMNS = (
    ("original_sha256", sa.Text()), ("pixel_sha256", sa.Text()),
    ("compressed_at", INSTANT), ("compression_error", sa.Text()),
    ("compression_failed_at", INSTANT), ("fixity_checked_at", INSTANT),
    ("fixity_failed_at", INSTANT),
)


def _id() -> sa.Column[int]:
    return sa.Column("id", ID, autoincrement=True, nullable=False)


def upgrade() -> None:
    with op.batch_alter_table("archive_instances") as table:
        for name, kind in _INSTANCE_COLUMNS:
            table.add_column(sa.Column(name, kind, nullable=True))
    op.create_index("ix_archive_instances_received_at", "archive_instances", ["received_at"])
    op.create_table(
        "archive_retention",
        sa.Column("study_ref", ID, autoincrement=False, nullable=False),
        sa.Column("establishment", sa.Text(), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=False),
        sa.Column("basis", sa.Text(), nullable=False),
        sa.Column("last_visit", sa.Date(), nullable=True),
        sa.Column("computed_at", INSTANT, nullable=False),
        sa.ForeignKeyConstraint(["study_ref"], ["archive_studies.id"],
                                name=op.f("fk_archive_retention_study_ref_archive_studies")),
        sa.PrimaryKeyConstraint("study_ref", name=op.f("pk_archive_retention")),
    )
    op.create_index("ix_archive_retention_establishment_expires_on", "archive_retention",
                    ["establishment", "expires_on"])
    op.create_table(
        "archive_blob_deletions",
        _id(),
        sa.Column("blob_key", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("queued_at", INSTANT, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archive_blob_deletions")),
    )
    op.create_table(
        "archive_reassignments",
        _id(),
        sa.Column("study_ref", ID, nullable=False),
        sa.Column("from_patient_ref", ID, nullable=False),
        sa.Column("to_patient_ref", ID, nullable=False),
        sa.Column("reassigned_by", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reassigned_at", INSTANT, nullable=False),
        sa.ForeignKeyConstraint(
            ["study_ref"], ["archive_studies.id"],
            name=op.f("fk_archive_reassignments_study_ref_archive_studies")),
        sa.ForeignKeyConstraint(
            ["from_patient_ref"], ["archive_patients.id"],
            name=op.f("fk_archive_reassignments_from_patient_ref_archive_patients")),
        sa.ForeignKeyConstraint(
            ["to_patient_ref"], ["archive_patients.id"],
            name=op.f("fk_archive_reassignments_to_patient_ref_archive_patients")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archive_reassignments")),
    )
    op.create_index("ix_archive_reassignments_study_ref", "archive_reassignments",
                    ["study_ref"])
    op.create_table(
        "lifecycle_holds",
        _id(),
        sa.Column("person_id", ID, nullable=True),
        sa.Column("study_instance_uid", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("placed_by", sa.Text(), nullable=False),
        sa.Column("placed_at", INSTANT, nullable=False),
        sa.Column("released_by", sa.Text(), nullable=True),
        sa.Column("released_at", INSTANT, nullable=True),
        sa.Column("release_reason", sa.Text(), nullable=True),
        sa.CheckConstraint("(person_id IS NULL) <> (study_instance_uid IS NULL)",
                           name=op.f("ck_lifecycle_holds_one_subject")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lifecycle_holds")),
    )
    op.create_table(
        "lifecycle_proposals",
        _id(),
        sa.Column("establishment", sa.Text(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("proposed_by", sa.Text(), nullable=False),
        sa.Column("proposed_at", INSTANT, nullable=False),
        sa.Column("visa_reference", sa.Text(), nullable=True),
        sa.Column("visa_by", sa.Text(), nullable=True),
        sa.Column("visa_at", INSTANT, nullable=True),
        sa.Column("destroyed_by", sa.Text(), nullable=True),
        sa.Column("destroyed_at", INSTANT, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lifecycle_proposals")),
    )
    op.create_table(
        "lifecycle_proposal_items",
        sa.Column("proposal_id", ID, nullable=False),
        sa.Column("study_instance_uid", sa.Text(), nullable=False),
        sa.Column("patient", sa.Text(), nullable=False),
        sa.Column("study_date", sa.Date(), nullable=True),
        sa.Column("last_visit", sa.Date(), nullable=True),
        sa.Column("expires_on", sa.Date(), nullable=False),
        sa.Column("basis", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("outcome_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["proposal_id"], ["lifecycle_proposals.id"],
            name=op.f("fk_lifecycle_proposal_items_proposal_id_lifecycle_proposals")),
        sa.PrimaryKeyConstraint("proposal_id", "study_instance_uid",
                                name=op.f("pk_lifecycle_proposal_items")),
    )
    op.create_table(
        "lifecycle_approvals",
        sa.Column("proposal_id", ID, nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("approved_by", sa.Text(), nullable=False),
        sa.Column("approved_at", INSTANT, nullable=False),
        sa.Column("roles_verified", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["proposal_id"], ["lifecycle_proposals.id"],
            name=op.f("fk_lifecycle_approvals_proposal_id_lifecycle_proposals")),
        sa.PrimaryKeyConstraint("proposal_id", "role", name=op.f("pk_lifecycle_approvals")),
        sa.UniqueConstraint("proposal_id", "approved_by",
                            name=op.f("uq_lifecycle_approvals_proposal_id_approved_by")),
    )
    op.create_table(
        "lifecycle_tombstones",
        _id(),
        sa.Column("study_instance_uid", sa.Text(), nullable=False),
        sa.Column("establishment", sa.Text(), nullable=False),
        sa.Column("study_date", sa.Date(), nullable=True),
        sa.Column("first_received_at", INSTANT, nullable=False),
        sa.Column("last_received_at", INSTANT, nullable=False),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("series", sa.JSON(), nullable=False),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("proposal_id", ID, nullable=False),
        sa.Column("decision", sa.JSON(), nullable=False),
        sa.Column("destroyed_by", sa.Text(), nullable=False),
        sa.Column("destroyed_at", INSTANT, nullable=False),
        sa.ForeignKeyConstraint(
            ["proposal_id"], ["lifecycle_proposals.id"],
            name=op.f("fk_lifecycle_tombstones_proposal_id_lifecycle_proposals")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lifecycle_tombstones")),
        sa.UniqueConstraint("study_instance_uid",
                            name=op.f("uq_lifecycle_tombstones_study_instance_uid")),
    )


def downgrade() -> None:
    for table in ("lifecycle_tombstones", "lifecycle_approvals", "lifecycle_proposal_items",
                  "lifecycle_proposals", "lifecycle_holds", "archive_reassignments",
                  "archive_blob_deletions", "archive_retention"):
        op.drop_table(table)
    op.drop_index("ix_archive_instances_received_at", table_name="archive_instances")
    with op.batch_alter_table("archive_instances") as batch:
        for name, _ in reversed(_INSTANCE_COLUMNS):
            batch.drop_column(name)
