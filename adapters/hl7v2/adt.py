"""ADT messages (ITI-30, ITI-31 as PAM France sends them) to identity commands."""

from __future__ import annotations

from datetime import datetime

from adapters.errors import AdapterError
from adapters.hl7v2.er7 import Message, Segment
from adapters.hl7v2.pid import identifier_from_cx, parse_hl7_datetime, record_data_from_pid
from mpi.authorities import AuthorityRegistry
from mpi.errors import InvalidInputError, MissingFieldError
from mpi.identity import (
    Actor,
    ChangeIdentifier,
    IdentityService,
    LinkRecords,
    MergeRecords,
    RegisterRecord,
    UnlinkRecords,
)
from mpi.ports import UnitOfWork

__all__ = ["REGISTER_EVENTS", "ENCOUNTER_EVENTS", "SUPPORTED_EVENTS", "apply_adt"]

MRG_PRIOR_IDENTIFIERS = 1
EVN_RECORDED_AT = 2
EVN_OCCURRED_AT = 6
MSH_DATETIME = 7
PV1_ADMIT_AT = 44
PV1_DISCHARGE_AT = 45

REGISTER_EVENTS = frozenset({"A28", "A31"})
# Encounter (ITI-31) and other events carrying a PID: a demographics update only. A08 is not
# PAM-FR's way to update demographics (A31 is), but many systems still send it.
ENCOUNTER_EVENTS = frozenset(
    {"A01", "A02", "A03", "A04", "A05", "A06", "A07", "A08", "A11", "A12", "A13", "A14", "A16",
     "A21", "A22", "A25", "A26", "A27", "A32", "A33", "A38", "A52", "A53", "A54", "A55"}
)
SUPPORTED_EVENTS = REGISTER_EVENTS | ENCOUNTER_EVENTS | {"A40", "A47", "A24", "A37"}


class UnsupportedEventError(AdapterError):
    """The ADT trigger event is not one we handle."""


def _activity(message: Message, event: str) -> datetime | None:
    """When the patient was last at the establishment, as the encounter says it: the
    discharge (PV1-45), else the admission (PV1-44), else when the event occurred (EVN-6),
    was recorded (EVN-2) or sent (MSH-7). The retention of the record counts from it."""
    if event not in ENCOUNTER_EVENTS:
        return None
    evn = message.first("EVN")
    pv1 = message.first("PV1")
    for candidate in (
        pv1.value(PV1_DISCHARGE_AT) if pv1 else "",
        pv1.value(PV1_ADMIT_AT) if pv1 else "",
        evn.value(EVN_OCCURRED_AT) if evn else "",
        evn.value(EVN_RECORDED_AT) if evn else "",
        message.msh.value(MSH_DATETIME),
    ):
        when = parse_hl7_datetime(candidate)
        if when is not None:
            return when
    return None


def _required(message: Message, name: str, count: int = 1) -> list[Segment]:
    found = message.all(name)
    if len(found) < count:
        raise MissingFieldError(
            f"the message needs {count} {name} segment(s), it has {len(found)}",
            location=name,
        )
    return found


def apply_adt(
    uow: UnitOfWork,
    service: IdentityService,
    registry: AuthorityRegistry,
    message: Message,
    event: str,
    actor: Actor,
) -> None:
    """Apply one ADT message to the index inside ``uow`` (not committed here).

    Raises the core's errors (with HL7 locations) and UnsupportedEventError."""
    own = actor.authority
    if event in REGISTER_EVENTS or event in ENCOUNTER_EVENTS:
        pid = _required(message, "PID")[0]
        data = record_data_from_pid(pid, registry, own, activity_at=_activity(message, event))
        service.register(uow, RegisterRecord(data), actor)
    elif event in ("A40", "A47"):
        pids = _required(message, "PID")
        mrgs = _required(message, "MRG")
        if len(pids) != len(mrgs):
            raise InvalidInputError("each PID needs its MRG", location="MRG")
        for index, (pid, mrg) in enumerate(zip(pids, mrgs, strict=True), start=1):
            data = record_data_from_pid(pid, registry, own, index=index)
            prior, _ = identifier_from_cx(
                mrg, MRG_PRIOR_IDENTIFIERS, 1, registry, f"MRG^{index}^1^1"
            )
            location = f"MRG^{index}^1"
            if event == "A40":
                service.merge(uow, MergeRecords(data, prior, location), actor)
            else:
                service.change_identifier(uow, ChangeIdentifier(data, prior, location), actor)
    elif event in ("A24", "A37"):
        first_pid, second_pid = _required(message, "PID", 2)[:2]
        first = record_data_from_pid(first_pid, registry, own, index=1)
        # The second PID may name another establishment's record: pick its only local id.
        second = record_data_from_pid(second_pid, registry, own, index=2)
        if event == "A24":
            service.link(uow, LinkRecords(first, second), actor)
        else:
            service.unlink(uow, UnlinkRecords(first, second), actor)
    else:
        raise UnsupportedEventError(f"ADT event {event} is not supported", location="MSH^1^9^1^2")
