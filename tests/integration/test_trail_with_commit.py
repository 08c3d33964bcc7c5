"""The trail entries of a unit of work travel with its COMMIT on PostgreSQL (one round trip
for the whole end of the transaction): they read back as written, with their persons, on both
databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import func, select

from adapters.sql.audit import SqlAuditTrail
from adapters.sql.tables import audit_persons
from mpi.audit import AuditAction, AuditEvent

PARIS = timezone(timedelta(hours=1))


def _events() -> list[AuditEvent]:
    return [
        AuditEvent(occurred_at=datetime(2026, 12, 1, 9, 30, tzinfo=PARIS), channel="mllp",
                   action=AuditAction.CREATE, actor="hl7:CHRU/HIS", subject="ADT^A28 C1",
                   outcome="success", authority="CHRU", source="127.0.0.1:4000",
                   persons=(12, 3, 12), detail={"replay_of": 7, "note": "é"}),
        AuditEvent(occurred_at=datetime(2026, 12, 1, 8, 31, tzinfo=UTC), channel="api",
                   action=AuditAction.UPDATE, actor="user:mdupont", subject="review 4",
                   outcome="success", roles=("identity-vigilance",), token_id="jti-1"),
    ]


def test_the_trail_of_a_unit_of_work_reads_back_as_written(uow_factory, engine) -> None:  # type: ignore[no-untyped-def]
    with uow_factory() as uow:
        for event in _events():
            uow.audit.record(event)
        uow.commit()
    found = sorted(SqlAuditTrail(engine).search(), key=lambda e: e.subject)
    assert [(e.subject, e.persons, e.detail, e.roles, e.token_id, e.occurred_at, e.source,
             e.authority, e.action) for e in found] == [
        ("ADT^A28 C1", (3, 12), {"replay_of": 7, "note": "é"}, (), None,
         datetime(2026, 12, 1, 8, 30, tzinfo=UTC), "127.0.0.1:4000", "CHRU",
         AuditAction.CREATE),
        ("review 4", (), {}, ("identity-vigilance",), "jti-1",
         datetime(2026, 12, 1, 8, 31, tzinfo=UTC), None, None, AuditAction.UPDATE),
    ]
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(audit_persons)).scalar() == 2
