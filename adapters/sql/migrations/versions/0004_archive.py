"""The archive index: patients as received, studies, series, instances and their history.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
INSTANT = sa.DateTime(timezone=True)


def _instance_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("sop_class_uid", sa.Text(), nullable=False),
        sa.Column("transfer_syntax_uid", sa.Text(), nullable=False),
        sa.Column("instance_number", sa.Integer(), nullable=True),
        sa.Column("blob_key", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("received_at", INSTANT, nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "archive_patients",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("authority", sa.Text(), nullable=False),
        sa.Column("patient_id", sa.Text(), nullable=False),
        sa.Column("record_id", ID, nullable=False),
        sa.Column("family_name", sa.Text(), nullable=True),
        sa.Column("given_names", sa.JSON(), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("sex", sa.Text(), nullable=True),
        sa.Column("last_study_date", sa.Date(), nullable=True),
        sa.Column("first_received_at", INSTANT, nullable=False),
        sa.Column("last_received_at", INSTANT, nullable=False),
        sa.ForeignKeyConstraint(["authority"], ["authorities.code"],
                                name=op.f("fk_archive_patients_authority_authorities")),
        sa.ForeignKeyConstraint(["record_id"], ["source_records.id"],
                                name=op.f("fk_archive_patients_record_id_source_records")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archive_patients")),
        sa.UniqueConstraint("authority", "patient_id",
                            name=op.f("uq_archive_patients_authority_patient_id")),
    )
    op.create_index("ix_archive_patients_record_id", "archive_patients", ["record_id"])
    op.create_table(
        "archive_studies",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("study_instance_uid", sa.Text(), nullable=False),
        sa.Column("patient_ref", ID, nullable=False),
        sa.Column("study_date", sa.Date(), nullable=True),
        sa.Column("study_time", sa.Text(), nullable=True),
        sa.Column("accession_number", sa.Text(), nullable=True),
        sa.Column("study_id", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("first_received_at", INSTANT, nullable=False),
        sa.Column("last_received_at", INSTANT, nullable=False),
        sa.ForeignKeyConstraint(["patient_ref"], ["archive_patients.id"],
                                name=op.f("fk_archive_studies_patient_ref_archive_patients")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archive_studies")),
        sa.UniqueConstraint("study_instance_uid",
                            name=op.f("uq_archive_studies_study_instance_uid")),
    )
    op.create_index("ix_archive_studies_patient_ref", "archive_studies", ["patient_ref"])
    op.create_index("ix_archive_studies_accession_number", "archive_studies",
                    ["accession_number"])
    op.create_index("ix_archive_studies_study_date", "archive_studies", ["study_date"])
    op.create_table(
        "archive_series",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("series_instance_uid", sa.Text(), nullable=False),
        sa.Column("study_ref", ID, nullable=False),
        sa.Column("modality", sa.Text(), nullable=True),
        sa.Column("series_number", sa.Integer(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["study_ref"], ["archive_studies.id"],
                                name=op.f("fk_archive_series_study_ref_archive_studies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archive_series")),
        sa.UniqueConstraint("series_instance_uid",
                            name=op.f("uq_archive_series_series_instance_uid")),
    )
    op.create_index("ix_archive_series_study_ref", "archive_series", ["study_ref"])
    op.create_table(
        "archive_instances",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("sop_instance_uid", sa.Text(), nullable=False),
        sa.Column("series_ref", ID, nullable=False),
        *_instance_columns(),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["series_ref"], ["archive_series.id"],
                                name=op.f("fk_archive_instances_series_ref_archive_series")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archive_instances")),
        sa.UniqueConstraint("sop_instance_uid",
                            name=op.f("uq_archive_instances_sop_instance_uid")),
    )
    op.create_index("ix_archive_instances_series_ref", "archive_instances", ["series_ref"])
    op.create_index("ix_archive_instances_sha256", "archive_instances", ["sha256"])
    op.create_table(
        "archive_instance_versions",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("sop_instance_uid", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("series_ref", ID, nullable=False),
        *_instance_columns(),
        sa.Column("replaced_at", INSTANT, nullable=False),
        sa.ForeignKeyConstraint(
            ["series_ref"], ["archive_series.id"],
            name=op.f("fk_archive_instance_versions_series_ref_archive_series")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archive_instance_versions")),
        sa.UniqueConstraint("sop_instance_uid", "version",
                            name=op.f("uq_archive_instance_versions_sop_instance_uid_version")),
    )


def downgrade() -> None:
    op.drop_table("archive_instance_versions")
    op.drop_table("archive_instances")
    op.drop_table("archive_series")
    op.drop_table("archive_studies")
    op.drop_table("archive_patients")
