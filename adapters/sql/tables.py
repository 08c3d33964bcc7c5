"""The relational schema of the index (SQLAlchemy Core), shared by SQLite and PostgreSQL.

Alembic migrations in ``migrations/versions`` create exactly this schema; a test compares the
two. Constraint and index names come from the naming convention so that later migrations can
refer to them on both databases.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    delete,
    exists,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.types import TypeDecorator

from mpi.model import Authority

__all__ = [
    "NAMING_CONVENTION",
    "accepted_assertions",
    "api_clients",
    "user_accounts",
    "user_sessions",
    "archive_blob_deletions",
    "archive_instance_versions",
    "archive_instances",
    "archive_reassignments",
    "archive_retention",
    "archive_patients",
    "archive_series",
    "archive_studies",
    "Id",
    "UtcDateTime",
    "audit_events",
    "audit_persons",
    "authorities",
    "inbound_messages",
    "lifecycle_approvals",
    "lifecycle_holds",
    "lifecycle_proposal_items",
    "lifecycle_proposals",
    "lifecycle_tombstones",
    "links",
    "metadata",
    "notifications",
    "outbox_events",
    "persons",
    "review_tasks",
    "separations",
    "source_record_versions",
    "source_records",
    "sync_authorities",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# SQLite only autoincrements a column declared exactly INTEGER PRIMARY KEY (the rowid alias).
Id = BigInteger().with_variant(Integer(), "sqlite")


def utc_now() -> datetime:
    """The current time, timezone-aware UTC (what every timestamp column stores)."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware instant, stored in UTC and always read back aware (UTC).

    SQLite keeps no offset, so a value is converted to UTC before it is written and the naive
    value read back is UTC by construction. Binding a naive datetime raises ValueError (wrapped
    by SQLAlchemy in a StatementError): its meaning would be a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the index stores aware instants only")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        instant: datetime = value
        if instant.tzinfo is None:
            return instant.replace(tzinfo=UTC)
        return instant.astimezone(UTC)


def _id_column(**kwargs: Any) -> Column[int]:
    return Column("id", Id, primary_key=True, autoincrement=True, **kwargs)


authorities = Table(
    "authorities",
    metadata,
    Column("code", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("namespace", Text, nullable=False),
    Column("oid", Text, nullable=False, unique=True),
)

source_records = Table(
    "source_records",
    metadata,
    _id_column(),
    Column("authority", Text, ForeignKey("authorities.code"), nullable=False),
    Column("value", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("retired_into", Id, ForeignKey("source_records.id"), nullable=True, index=True),
    Column("ins_authority", Text, nullable=True),
    Column("ins_value", Text, nullable=True),
    Column("ins_qualified", Boolean, nullable=False),
    # Reliability codes joined by a space (codes are single HL7 tokens).
    Column("reliability", Text, nullable=False),
    Column("birth_family_name", Text),
    Column("used_family_name", Text),
    Column("given_names", JSON, nullable=False),
    Column("used_given_name", Text),
    Column("birth_date", Date),
    Column("sex", Text),
    Column("birthplace", Text),
    Column("street", Text),
    Column("city", Text),
    Column("postcode", Text),
    Column("country", Text),
    Column("phone", Text),
    Column("death_date", Date),
    # search_key() of the names and city, computed when saving: searches compare these.
    Column("birth_name_key", Text),
    Column("used_name_key", Text),
    Column("given_key", Text),
    Column("city_key", Text),
    # Blocking keys of the matcher (mpi.matching.profile.blocking_keys), computed when saving.
    Column("block_name_year", Text),
    Column("block_date_sex", Text),
    Column("block_given_family", Text),
    Column("block_place_date", Text),
    Column("block_used_name", Text),
    Column("last_activity", UtcDateTime),
    Column("updated_at", UtcDateTime),
    Column("version", Integer, nullable=False),
    UniqueConstraint("authority", "value"),
    # text_pattern_ops lets PostgreSQL serve `LIKE 'KEY%'` from the index whatever the
    # database collation; SQLite ignores the option.
    Index(
        "ix_source_records_birth_name_key_birth_date",
        "birth_name_key",
        "birth_date",
        postgresql_ops={"birth_name_key": "text_pattern_ops"},
    ),
    Index(
        "ix_source_records_used_name_key",
        "used_name_key",
        postgresql_ops={"used_name_key": "text_pattern_ops"},
    ),
    Index("ix_source_records_birth_date", "birth_date"),
    Index("ix_source_records_ins", "ins_authority", "ins_value", "ins_qualified"),
    Index("ix_source_records_block_name_year", "block_name_year"),
    Index("ix_source_records_block_date_sex", "block_date_sex"),
    Index("ix_source_records_block_given_family", "block_given_family"),
    Index("ix_source_records_block_place_date", "block_place_date"),
    Index("ix_source_records_block_used_name", "block_used_name"),
    # The qualified INS rate of each establishment (the console's indicators).
    Index("ix_source_records_authority_status_ins_qualified", "authority", "status",
          "ins_qualified"),
    # A record's establishment without reading the record (counts by establishment).
    Index("ix_source_records_id_authority", "id", "authority"),
    # AUTOINCREMENT: a record id is never reused on SQLite, as on PostgreSQL.
    sqlite_autoincrement=True,
)

source_record_versions = Table(
    "source_record_versions",
    metadata,
    Column("record_id", Id, ForeignKey("source_records.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    Column("data", JSON, nullable=False),
    PrimaryKeyConstraint("record_id", "version"),
)

persons = Table(
    "persons",
    metadata,
    _id_column(),
    Column("status", Text, nullable=False),
    Column("merged_into", Id, ForeignKey("persons.id"), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    # Master identifiers derive from person ids: never reuse one.
    sqlite_autoincrement=True,
)

links = Table(
    "links",
    metadata,
    Column("record_id", Id, ForeignKey("source_records.id"), primary_key=True, autoincrement=False),
    Column("person_id", Id, ForeignKey("persons.id"), nullable=False, index=True),
    Column("method", Text, nullable=False),
    Column("score", Float, nullable=True),
    Column("evidence", JSON, nullable=False),
    Column("decided_by", Text, nullable=False),
    Column("decided_at", UtcDateTime, nullable=False),
    # The console: automatic links of a period, the latest scored decisions.
    Index("ix_links_method_decided_at", "method", "decided_at"),
    Index("ix_links_decided_at", "decided_at"),
)

separations = Table(
    "separations",
    metadata,
    _id_column(),
    Column("first_record", Id, ForeignKey("source_records.id"), nullable=False),
    Column("second_record", Id, ForeignKey("source_records.id"), nullable=False, index=True),
    Column("reason", Text, nullable=False),
    Column("decided_by", Text, nullable=False),
    Column("decided_at", UtcDateTime, nullable=False),
    UniqueConstraint("first_record", "second_record"),
    # One row per unordered pair: the repository stores the smaller id first.
    CheckConstraint("first_record < second_record", name="ordered_pair"),
)

review_tasks = Table(
    "review_tasks",
    metadata,
    _id_column(),
    Column("record_id", Id, ForeignKey("source_records.id"), nullable=False),
    Column("person_id", Id, ForeignKey("persons.id"), nullable=False),
    Column("candidate_record_id", Id, ForeignKey("source_records.id"), nullable=True),
    Column("score", Float, nullable=True),
    Column("evidence", JSON, nullable=False),
    Column("status", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("decided_at", UtcDateTime, nullable=True),
    Column("decided_by", Text, nullable=True),
    Column("decision", Text, nullable=True),
    Column("reason", Text, nullable=True),
    # duplicate, reexamined or collision (mpi.model.ReviewKind); rows from before 0008 are
    # duplicates.
    Column("kind", Text, nullable=False, server_default="duplicate"),
    Index("ix_review_tasks_status_created_at", "status", "created_at"),
    Index("ix_review_tasks_record_id", "record_id"),
    Index("ix_review_tasks_person_id", "person_id"),  # a person's history (the console)
)

# Versions of the matching model (m, u, name frequencies, thresholds); one is in force.
match_models = Table(
    "match_models",
    metadata,
    Column("version", Text, primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("document", JSON, nullable=False),
    Column("active", Boolean, nullable=False),
)

inbound_messages = Table(
    "inbound_messages",
    metadata,
    _id_column(),
    Column("channel", Text, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("sender", Text, nullable=True),
    Column("control_id", Text, nullable=True),
    Column("message_type", Text, nullable=True),
    Column("raw", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("ack_code", Text, nullable=True),
    Column("error_code", Integer, nullable=True),
    Column("error_text", Text, nullable=True),
    Column("reply", Text, nullable=True),
    Column("replays", Integer, nullable=False),
    # NULLs are distinct on both databases: unreadable messages (no MSH) never collide.
    UniqueConstraint("sender", "control_id"),
    Index("ix_inbound_messages_status_id", "status", "id"),
)

outbox_events = Table(
    "outbox_events",
    metadata,
    _id_column(),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("type", Text, nullable=False),
    Column("payload", JSON, nullable=False),
    # Delivery to the handlers: pending while processed_at is NULL, due again at due_at
    # after a failure.
    Column("processed_at", UtcDateTime, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("due_at", UtcDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
)
Index("ix_outbox_events_pending", outbox_events.c.id,
      postgresql_where=outbox_events.c.processed_at.is_(None),
      sqlite_where=outbox_events.c.processed_at.is_(None))

notifications = Table(
    "notifications",
    metadata,
    _id_column(),
    Column("consumer", Text, nullable=False),
    Column("person_id", Id, ForeignKey("persons.id"), nullable=False),
    Column("status", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("due_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("sent_at", UtcDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Index("ix_notifications_consumer_status_due_at", "consumer", "status", "due_at"),
)

# The access trail (mpi.audit): append-only, one row per access, and the persons it touched.
audit_events = Table(
    "audit_events",
    metadata,
    _id_column(),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("channel", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("authority", Text, nullable=True),
    Column("source", Text, nullable=True),
    Column("subject", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("detail", JSON, nullable=False),
    # The authenticated principal: its roles and the token (jti) that proved it.
    Column("roles", JSON, nullable=True),
    Column("token_id", Text, nullable=True),
    Index("ix_audit_events_occurred_at", "occurred_at"),
    Index("ix_audit_events_actor_id", "actor", "id"),
)

api_clients = Table(
    "api_clients",
    metadata,
    _id_column(),
    Column("client_id", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False, unique=True),
    Column("establishment", Text, ForeignKey("authorities.code"), nullable=True),
    Column("scopes", Text, nullable=False),
    Column("secret_hash", Text, nullable=True),
    Column("jwks", JSON, nullable=True),
    Column("jwks_url", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)

user_accounts = Table(
    "user_accounts",
    metadata,
    _id_column(),
    Column("name", Text, nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("roles", JSON, nullable=False),
    Column("establishment", Text, ForeignKey("authorities.code"), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("disabled_at", UtcDateTime, nullable=True),
)

user_sessions = Table(
    "user_sessions",
    metadata,
    _id_column(),
    Column("token_hash", Text, nullable=False, unique=True),
    Column("user_name", Text, nullable=False),
    Column("csrf", Text, nullable=False),
    Column("source", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    # A person of an identity provider (no local account): who vouched, and what it said.
    Column("issuer", Text, nullable=True),
    Column("roles", JSON, nullable=True),
    Column("establishment", Text, nullable=True),
)

accepted_assertions = Table(
    "accepted_assertions",
    metadata,
    Column("jti", Text, primary_key=True),
    Column("client_id", Text, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Index("ix_accepted_assertions_expires_at", "expires_at"),
)

audit_persons = Table(
    "audit_persons",
    metadata,
    Column("event_id", Id, ForeignKey("audit_events.id"), nullable=False),
    Column("person_id", Id, nullable=False),  # no foreign key: the trail outlives persons
    PrimaryKeyConstraint("event_id", "person_id"),
    Index("ix_audit_persons_person_id_event_id", "person_id", "event_id"),
)


# The archive (mpi.archive): patients as received, studies, series, instances. A study points
# at the patient as received, which points at the source record it designates: the person is
# found through that record's link at read time. Dates kept for retention: study date, last
# study date and birth date of the patient as received, first and last reception.
archive_patients = Table(
    "archive_patients",
    metadata,
    _id_column(),
    Column("authority", Text, ForeignKey("authorities.code"), nullable=False),
    Column("patient_id", Text, nullable=False),
    Column("record_id", Id, ForeignKey("source_records.id"), nullable=False),
    Column("family_name", Text),
    Column("given_names", JSON, nullable=False),
    Column("birth_date", Date),
    Column("sex", Text),
    Column("last_study_date", Date),
    Column("first_received_at", UtcDateTime, nullable=False),
    Column("last_received_at", UtcDateTime, nullable=False),
    UniqueConstraint("authority", "patient_id"),
    Index("ix_archive_patients_record_id", "record_id"),
)

archive_studies = Table(
    "archive_studies",
    metadata,
    _id_column(),
    Column("study_instance_uid", Text, nullable=False),
    Column("patient_ref", Id, ForeignKey("archive_patients.id"), nullable=False),
    Column("study_date", Date),
    Column("study_time", Text),
    Column("accession_number", Text),
    Column("study_id", Text),
    Column("description", Text),
    Column("first_received_at", UtcDateTime, nullable=False),
    Column("last_received_at", UtcDateTime, nullable=False),
    UniqueConstraint("study_instance_uid"),
    Index("ix_archive_studies_patient_ref", "patient_ref"),
    Index("ix_archive_studies_accession_number", "accession_number"),
    Index("ix_archive_studies_study_date", "study_date"),
)

archive_series = Table(
    "archive_series",
    metadata,
    _id_column(),
    Column("series_instance_uid", Text, nullable=False),
    Column("study_ref", Id, ForeignKey("archive_studies.id"), nullable=False),
    Column("modality", Text),
    Column("series_number", Integer),
    Column("description", Text),
    UniqueConstraint("series_instance_uid"),
    Index("ix_archive_series_study_ref", "study_ref"),
)

archive_instances = Table(
    "archive_instances",
    metadata,
    _id_column(),
    Column("sop_instance_uid", Text, nullable=False),
    Column("series_ref", Id, ForeignKey("archive_series.id"), nullable=False),
    Column("sop_class_uid", Text, nullable=False),
    Column("transfer_syntax_uid", Text, nullable=False),
    Column("instance_number", Integer),
    Column("blob_key", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("source", Text, nullable=False),
    Column("version", Integer, nullable=False),
    # Lossless compression (the stored file is then a verified compressed copy): the
    # original's SHA-256 and that of the decoded pixels; or why it could not be compressed.
    Column("original_sha256", Text),
    Column("pixel_sha256", Text),
    Column("compressed_at", UtcDateTime),
    Column("compression_error", Text),
    Column("compression_failed_at", UtcDateTime),
    # Fixity: when the file was last re-read against its SHA-256, and whether it failed.
    Column("fixity_checked_at", UtcDateTime),
    Column("fixity_failed_at", UtcDateTime),
    UniqueConstraint("sop_instance_uid"),
    Index("ix_archive_instances_series_ref", "series_ref"),
    Index("ix_archive_instances_sha256", "sha256"),
    Index("ix_archive_instances_received_at", "received_at"),
)

# Earlier contents of an instance received again with different bytes (newest kept).
archive_instance_versions = Table(
    "archive_instance_versions",
    metadata,
    _id_column(),
    Column("sop_instance_uid", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("series_ref", Id, ForeignKey("archive_series.id"), nullable=False),
    Column("sop_class_uid", Text, nullable=False),
    Column("transfer_syntax_uid", Text, nullable=False),
    Column("instance_number", Integer),
    Column("blob_key", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("source", Text, nullable=False),
    Column("replaced_at", UtcDateTime, nullable=False),
    UniqueConstraint("sop_instance_uid", "version"),
)


# The legal lifecycle (mpi.archive.retention, mpi.archive.lifecycle).
# The end of retention of each study, computed from the feed and the index.
archive_retention = Table(
    "archive_retention",
    metadata,
    Column("study_ref", Id, ForeignKey("archive_studies.id"), primary_key=True,
           autoincrement=False),
    Column("establishment", Text, nullable=False),
    Column("expires_on", Date, nullable=False),
    Column("basis", Text, nullable=False),
    Column("last_visit", Date),
    Column("computed_at", UtcDateTime, nullable=False),
    Index("ix_archive_retention_establishment_expires_on", "establishment", "expires_on"),
)

# Files that must go (destroyed studies, originals of compressed instances, compressed copies
# never adopted): journaled in the transaction that orphans them, forgotten once deleted.
archive_blob_deletions = Table(
    "archive_blob_deletions",
    metadata,
    _id_column(),
    Column("blob_key", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("queued_at", UtcDateTime, nullable=False),
)

# Studies moved to another patient as received (IOCM "incorrect worklist entry").
archive_reassignments = Table(
    "archive_reassignments",
    metadata,
    _id_column(),
    Column("study_ref", Id, ForeignKey("archive_studies.id"), nullable=False, index=True),
    Column("from_patient_ref", Id, ForeignKey("archive_patients.id"), nullable=False),
    Column("to_patient_ref", Id, ForeignKey("archive_patients.id"), nullable=False),
    Column("reassigned_by", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("reassigned_at", UtcDateTime, nullable=False),
)

lifecycle_holds = Table(
    "lifecycle_holds",
    metadata,
    _id_column(),
    Column("person_id", Id, nullable=True),  # no foreign key: a hold outlives a merge
    Column("study_instance_uid", Text, nullable=True),
    Column("reason", Text, nullable=False),
    Column("reference", Text, nullable=False),
    Column("placed_by", Text, nullable=False),
    Column("placed_at", UtcDateTime, nullable=False),
    Column("released_by", Text),
    Column("released_at", UtcDateTime),
    Column("release_reason", Text),
    CheckConstraint("(person_id IS NULL) <> (study_instance_uid IS NULL)", name="one_subject"),
)

lifecycle_proposals = Table(
    "lifecycle_proposals",
    metadata,
    _id_column(),
    Column("establishment", Text, nullable=False),
    Column("as_of", Date, nullable=False),
    Column("status", Text, nullable=False),
    Column("proposed_by", Text, nullable=False),
    Column("proposed_at", UtcDateTime, nullable=False),
    Column("visa_reference", Text),
    Column("visa_by", Text),
    Column("visa_at", UtcDateTime),
    Column("destroyed_by", Text),
    Column("destroyed_at", UtcDateTime),
)

lifecycle_proposal_items = Table(
    "lifecycle_proposal_items",
    metadata,
    Column("proposal_id", Id, ForeignKey("lifecycle_proposals.id"), nullable=False),
    Column("study_instance_uid", Text, nullable=False),
    Column("patient", Text, nullable=False),
    Column("study_date", Date),
    Column("last_visit", Date),
    Column("expires_on", Date, nullable=False),
    Column("basis", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("instances", Integer, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("outcome_reason", Text),
    PrimaryKeyConstraint("proposal_id", "study_instance_uid"),
)

lifecycle_approvals = Table(
    "lifecycle_approvals",
    metadata,
    Column("proposal_id", Id, ForeignKey("lifecycle_proposals.id"), nullable=False),
    Column("role", Text, nullable=False),
    Column("approved_by", Text, nullable=False),
    Column("approved_at", UtcDateTime, nullable=False),
    Column("roles_verified", Boolean, nullable=False),
    PrimaryKeyConstraint("proposal_id", "role"),
    UniqueConstraint("proposal_id", "approved_by"),
)

# What remains of a destroyed study: no patient demographics.
lifecycle_tombstones = Table(
    "lifecycle_tombstones",
    metadata,
    _id_column(),
    Column("study_instance_uid", Text, nullable=False, unique=True),
    Column("establishment", Text, nullable=False),
    Column("study_date", Date),
    Column("first_received_at", UtcDateTime, nullable=False),
    Column("last_received_at", UtcDateTime, nullable=False),
    Column("instances", Integer, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("series", JSON, nullable=False),
    Column("files", JSON, nullable=False),
    Column("proposal_id", Id, ForeignKey("lifecycle_proposals.id"), nullable=False),
    Column("decision", JSON, nullable=False),
    Column("destroyed_by", Text, nullable=False),
    Column("destroyed_at", UtcDateTime, nullable=False),
)


def sync_authorities(connection: Connection, configured: Iterable[Authority]) -> None:
    """Make the ``authorities`` table match the configuration, in the caller's transaction.

    Declared authorities are inserted or updated. An authority no longer declared is deleted
    only when no record uses it (as its domain or its INS domain): records are never orphaned.

    Raises ValueError when the configuration collides with a kept authority (e.g. an OID still
    held by an undeclared authority that records use); other database errors propagate.
    """
    declared = {authority.code: authority for authority in configured}
    used = or_(
        exists().where(source_records.c.authority == authorities.c.code),
        exists().where(source_records.c.ins_authority == authorities.c.code),
    )
    try:
        connection.execute(
            delete(authorities).where(authorities.c.code.not_in(list(declared)), ~used)
        )
        existing = set(connection.scalars(select(authorities.c.code)))
        rows = [
            {
                "code": authority.code,
                "name": authority.name,
                "kind": authority.kind.value,
                "namespace": authority.namespace,
                "oid": authority.oid,
            }
            for authority in declared.values()
        ]
        for row in rows:
            if row["code"] in existing:
                connection.execute(
                    update(authorities).where(authorities.c.code == row["code"]).values(row)
                )
        new_rows = [row for row in rows if row["code"] not in existing]
        if new_rows:
            connection.execute(insert(authorities), new_rows)
    except IntegrityError as exc:
        raise ValueError(f"the declared authorities conflict with stored ones: {exc.orig}") from exc
