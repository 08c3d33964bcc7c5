"""Initial schema: authorities, records and their history, persons, links, separations,
review tasks, the inbound journal, the outbox and PIX notifications.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# Frozen copies of the application types: a migration must keep meaning what it meant.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
INSTANT = sa.DateTime(timezone=True)


def _id() -> sa.Column[int]:
    return sa.Column("id", ID, autoincrement=True, nullable=False)


def upgrade() -> None:
    op.create_table(
        "authorities",
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("namespace", sa.Text(), nullable=False),
        sa.Column("oid", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_authorities")),
        sa.UniqueConstraint("oid", name=op.f("uq_authorities_oid")),
    )

    op.create_table(
        "persons",
        _id(),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("merged_into", ID, nullable=True),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.ForeignKeyConstraint(
            ["merged_into"], ["persons.id"], name=op.f("fk_persons_merged_into_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_persons")),
        sqlite_autoincrement=True,
    )

    op.create_table(
        "source_records",
        _id(),
        sa.Column("authority", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("retired_into", ID, nullable=True),
        sa.Column("ins_authority", sa.Text(), nullable=True),
        sa.Column("ins_value", sa.Text(), nullable=True),
        sa.Column("ins_qualified", sa.Boolean(), nullable=False),
        sa.Column("reliability", sa.Text(), nullable=False),
        sa.Column("birth_family_name", sa.Text(), nullable=True),
        sa.Column("used_family_name", sa.Text(), nullable=True),
        sa.Column("given_names", sa.JSON(), nullable=False),
        sa.Column("used_given_name", sa.Text(), nullable=True),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("sex", sa.Text(), nullable=True),
        sa.Column("birthplace", sa.Text(), nullable=True),
        sa.Column("street", sa.Text(), nullable=True),
        sa.Column("city", sa.Text(), nullable=True),
        sa.Column("postcode", sa.Text(), nullable=True),
        sa.Column("country", sa.Text(), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("death_date", sa.Date(), nullable=True),
        sa.Column("birth_name_key", sa.Text(), nullable=True),
        sa.Column("used_name_key", sa.Text(), nullable=True),
        sa.Column("given_key", sa.Text(), nullable=True),
        sa.Column("city_key", sa.Text(), nullable=True),
        sa.Column("last_activity", INSTANT, nullable=True),
        sa.Column("updated_at", INSTANT, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["authority"],
            ["authorities.code"],
            name=op.f("fk_source_records_authority_authorities"),
        ),
        sa.ForeignKeyConstraint(
            ["retired_into"],
            ["source_records.id"],
            name=op.f("fk_source_records_retired_into_source_records"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source_records")),
        sa.UniqueConstraint("authority", "value", name=op.f("uq_source_records_authority_value")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_source_records_retired_into"), "source_records", ["retired_into"])
    op.create_index(
        "ix_source_records_birth_name_key_birth_date",
        "source_records",
        ["birth_name_key", "birth_date"],
        postgresql_ops={"birth_name_key": "text_pattern_ops"},
    )
    op.create_index(
        "ix_source_records_used_name_key",
        "source_records",
        ["used_name_key"],
        postgresql_ops={"used_name_key": "text_pattern_ops"},
    )
    op.create_index("ix_source_records_birth_date", "source_records", ["birth_date"])
    op.create_index(
        "ix_source_records_ins",
        "source_records",
        ["ins_authority", "ins_value", "ins_qualified"],
    )

    op.create_table(
        "source_record_versions",
        sa.Column("record_id", ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("recorded_at", INSTANT, nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["source_records.id"],
            name=op.f("fk_source_record_versions_record_id_source_records"),
        ),
        sa.PrimaryKeyConstraint("record_id", "version", name=op.f("pk_source_record_versions")),
    )

    op.create_table(
        "links",
        sa.Column("record_id", ID, autoincrement=False, nullable=False),
        sa.Column("person_id", ID, nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("decided_by", sa.Text(), nullable=False),
        sa.Column("decided_at", INSTANT, nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_links_person_id_persons")
        ),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["source_records.id"],
            name=op.f("fk_links_record_id_source_records"),
        ),
        sa.PrimaryKeyConstraint("record_id", name=op.f("pk_links")),
    )
    op.create_index(op.f("ix_links_person_id"), "links", ["person_id"])

    op.create_table(
        "separations",
        _id(),
        sa.Column("first_record", ID, nullable=False),
        sa.Column("second_record", ID, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.Text(), nullable=False),
        sa.Column("decided_at", INSTANT, nullable=False),
        sa.CheckConstraint(
            "first_record < second_record", name=op.f("ck_separations_ordered_pair")
        ),
        sa.ForeignKeyConstraint(
            ["first_record"],
            ["source_records.id"],
            name=op.f("fk_separations_first_record_source_records"),
        ),
        sa.ForeignKeyConstraint(
            ["second_record"],
            ["source_records.id"],
            name=op.f("fk_separations_second_record_source_records"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_separations")),
        sa.UniqueConstraint(
            "first_record",
            "second_record",
            name=op.f("uq_separations_first_record_second_record"),
        ),
    )
    op.create_index(op.f("ix_separations_second_record"), "separations", ["second_record"])

    op.create_table(
        "review_tasks",
        _id(),
        sa.Column("record_id", ID, nullable=False),
        sa.Column("person_id", ID, nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("decided_at", INSTANT, nullable=True),
        sa.Column("decided_by", sa.Text(), nullable=True),
        sa.Column("decision", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_review_tasks_person_id_persons")
        ),
        sa.ForeignKeyConstraint(
            ["record_id"],
            ["source_records.id"],
            name=op.f("fk_review_tasks_record_id_source_records"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_tasks")),
    )
    op.create_index("ix_review_tasks_status_created_at", "review_tasks", ["status", "created_at"])

    op.create_table(
        "inbound_messages",
        _id(),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("received_at", INSTANT, nullable=False),
        sa.Column("sender", sa.Text(), nullable=True),
        sa.Column("control_id", sa.Text(), nullable=True),
        sa.Column("message_type", sa.Text(), nullable=True),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("ack_code", sa.Text(), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error_text", sa.Text(), nullable=True),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.Column("replays", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_messages")),
        sa.UniqueConstraint(
            "sender", "control_id", name=op.f("uq_inbound_messages_sender_control_id")
        ),
    )
    op.create_index("ix_inbound_messages_status_id", "inbound_messages", ["status", "id"])

    op.create_table(
        "outbox_events",
        _id(),
        sa.Column("occurred_at", INSTANT, nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
    )

    op.create_table(
        "notifications",
        _id(),
        sa.Column("consumer", sa.Text(), nullable=False),
        sa.Column("person_id", ID, nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("due_at", INSTANT, nullable=False),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("sent_at", INSTANT, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_notifications_person_id_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
    )
    op.create_index(
        "ix_notifications_consumer_status_due_at",
        "notifications",
        ["consumer", "status", "due_at"],
    )


def downgrade() -> None:
    # Indexes go with their tables; children before parents.
    for table in (
        "notifications",
        "outbox_events",
        "inbound_messages",
        "review_tasks",
        "separations",
        "links",
        "source_record_versions",
        "source_records",
        "persons",
        "authorities",
    ):
        op.drop_table(table)
