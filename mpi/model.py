"""The identity domain: authorities, source records, persons, links.

Plain data classes; persistence and wire formats live in the adapters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "AuthorityKind",
    "Authority",
    "Consumer",
    "MoveDestination",
    "Identifier",
    "Demographics",
    "DEMOGRAPHIC_FIELDS",
    "RecordStatus",
    "SourceRecord",
    "PersonStatus",
    "Person",
    "LinkMethod",
    "Link",
    "QUALIFIED_RELIABILITY_CODES",
    "FICTITIOUS_RELIABILITY_CODES",
    "JournalStatus",
    "JournalEntry",
    "ReviewStatus",
    "ReviewDecision",
    "ReviewKind",
    "ReviewTask",
]


class AuthorityKind(StrEnum):
    ESTABLISHMENT = "establishment"
    MASTER = "master"
    NATIONAL = "national"


@dataclass(frozen=True)
class Authority:
    """An identifier domain (assigning authority)."""

    code: str
    name: str
    kind: AuthorityKind
    namespace: str
    oid: str
    sending_facilities: tuple[str, ...] = ()
    ae_titles: tuple[str, ...] = ()
    # TLS client certificate names (subject CN or DNS SAN) that speak for it.
    tls_client_names: tuple[str, ...] = ()

    @property
    def is_national(self) -> bool:
        """True for the INS domains (NIR, NIA, test and demo NIR)."""
        return self.kind is AuthorityKind.NATIONAL


@dataclass(frozen=True)
class Consumer:
    """A system subscribed to PIX update notifications for some domains."""

    name: str
    host: str
    port: int
    domains: tuple[str, ...]
    receiving_application: str = ""
    receiving_facility: str = ""


@dataclass(frozen=True)
class MoveDestination:
    """A DICOM node the archive may send objects to (C-MOVE), by AE title."""

    ae_title: str
    host: str
    port: int


@dataclass(frozen=True, order=True)
class Identifier:
    """A local identifier in a domain, e.g. ``Identifier("CHRU", "100234")``."""

    authority: str
    value: str

    def __str__(self) -> str:
        return f"{self.authority}|{self.value}"

    @classmethod
    def parse(cls, text: str) -> Identifier:
        """Read the ``DOMAIN|value`` form; raises ValueError when it is not that form."""
        authority, sep, value = text.partition("|")
        if not sep or not authority or not value:
            raise ValueError(f"not an identifier of the form DOMAIN|value: {text!r}")
        return cls(authority, value)


@dataclass(frozen=True)
class Demographics:
    """What a source says about a patient, as sent (not normalized)."""

    birth_family_name: str | None = None
    used_family_name: str | None = None
    given_names: tuple[str, ...] = ()
    used_given_name: str | None = None
    birth_date: date | None = None
    sex: str | None = None
    birthplace: str | None = None
    street: str | None = None
    city: str | None = None
    postcode: str | None = None
    country: str | None = None
    phone: str | None = None
    death_date: date | None = None

    def apply(self, patch: Mapping[str, Any]) -> Demographics:
        """Return a copy with the patched fields: a key absent means unchanged, None deletes.

        Raises KeyError for a field that does not exist.
        """
        unknown = set(patch) - set(DEMOGRAPHIC_FIELDS)
        if unknown:
            raise KeyError(f"unknown demographic fields: {sorted(unknown)}")
        values = dict(patch)
        if "given_names" in values and values["given_names"] is None:
            values["given_names"] = ()
        return dataclasses.replace(self, **values)

    def as_dict(self) -> dict[str, Any]:
        return {
            name: (value.isoformat() if isinstance(value, date) else value)
            for name, value in dataclasses.asdict(self).items()
        }


DEMOGRAPHIC_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Demographics))

# PAM-FR 2.11 sends VALI on the wire to mean "INS qualified"; FR Core's QUAL means the same.
QUALIFIED_RELIABILITY_CODES = frozenset({"VALI", "QUAL"})
# Identities that must never be linked automatically.
FICTITIOUS_RELIABILITY_CODES = frozenset({"FICT"})


class RecordStatus(StrEnum):
    ACTIVE = "active"
    RETIRED = "retired"  # folded into another record by a merge (A40) or an id change (A47)
    DELETED = "deleted"


@dataclass
class SourceRecord:
    """What one authority says about one of its local identifiers."""

    identifier: Identifier
    demographics: Demographics = field(default_factory=Demographics)
    ins: Identifier | None = None
    reliability: tuple[str, ...] = ()
    status: RecordStatus = RecordStatus.ACTIVE
    retired_into: int | None = None
    last_activity: datetime | None = None
    updated_at: datetime | None = None
    version: int = 0
    id: int | None = None

    @property
    def qualified_ins(self) -> Identifier | None:
        """The INS, only when the identity is qualified: the only form in which it may be used."""
        if self.ins is None or not QUALIFIED_RELIABILITY_CODES.intersection(self.reliability):
            return None
        return self.ins

    @property
    def is_active(self) -> bool:
        return self.status is RecordStatus.ACTIVE

    @property
    def is_fictitious(self) -> bool:
        return bool(FICTITIOUS_RELIABILITY_CODES.intersection(self.reliability))


class PersonStatus(StrEnum):
    ACTIVE = "active"
    MERGED = "merged"  # folded into another person; `merged_into` says which


@dataclass
class Person:
    """A master identity: the records of every domain that designate one human being."""

    status: PersonStatus = PersonStatus.ACTIVE
    merged_into: int | None = None
    created_at: datetime | None = None
    id: int | None = None

    @property
    def master_id(self) -> str:
        """The identifier in the regional master domain, derived from the person's number."""
        if self.id is None:
            raise ValueError("a person has no master identifier before it is stored")
        return master_id_of(self.id)


def master_id_of(person_id: int) -> str:
    return f"{person_id:010d}"


def person_id_of_master_id(master_id: str) -> int | None:
    """The person number a master identifier designates, or None if it is not one of ours."""
    if len(master_id) != 10 or not (master_id.isascii() and master_id.isdigit()):
        return None
    return int(master_id)


class LinkMethod(StrEnum):
    NEW = "new"  # no candidate: the record founded its own person
    INS = "ins"  # equal qualified INS
    AUTO = "auto"  # probabilistic match above the upper threshold
    MANUAL = "manual"  # asserted by a person or a source system (A24, review decision): sticky
    MERGE = "merge"  # followed its person when it was merged into another


@dataclass
class Link:
    """Which person a record belongs to, and how that was decided."""

    record_id: int
    person_id: int
    method: LinkMethod
    score: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    decided_by: str = "system"
    decided_at: datetime | None = None

    @property
    def is_manual(self) -> bool:
        return self.method is LinkMethod.MANUAL


class JournalStatus(StrEnum):
    APPLIED = "applied"  # accepted (AA)
    ERROR = "error"  # application error (AE): kept for replay
    REJECTED = "rejected"  # rejected (AR): unsupported or unreadable
    REPLAYED = "replayed"  # an error later applied by a replay


@dataclass
class JournalEntry:
    """One inbound message, kept raw with its outcome."""

    channel: str
    raw: str
    received_at: datetime
    status: JournalStatus
    sender: str | None = None
    control_id: str | None = None
    message_type: str | None = None
    ack_code: str | None = None
    error_code: int | None = None
    error_text: str | None = None
    reply: str | None = None
    replays: int = 0
    id: int | None = None


class ReviewStatus(StrEnum):
    OPEN = "open"
    DECIDED = "decided"


class ReviewDecision(StrEnum):
    LINK = "link"  # the record joins the candidate person
    KEEP_APART = "keep-apart"  # different people, for good
    MERGE_PERSONS = "merge-persons"  # the record's person and the candidate become one
    UNLINK = "unlink"  # the record leaves its person for a person of its own
    # For an identity collision: the held version replaces the record's, or is dropped.
    APPLY_UPDATE = "apply-update"
    DISCARD_UPDATE = "discard-update"


class ReviewKind(StrEnum):
    DUPLICATE = "duplicate"  # the record may be the candidate person
    # An automatic link re-examined after a change no longer holds: the record left the
    # candidate person (its former one) and waits to be linked back or kept apart.
    REEXAMINED = "reexamined"
    # An update that describes another person was held, not applied: the evidence keeps the
    # held version beside the record's current one (``held``).
    COLLISION = "collision"


@dataclass
class ReviewTask:
    """A potential duplicate waiting for identity vigilance: a record and a candidate person,
    with the evidence the matcher saw; or (``kind``) an automatic link undone by a change, or
    an update held because it describes another person."""

    record_id: int
    person_id: int
    candidate_record_id: int | None
    score: float
    evidence: dict[str, Any]
    status: ReviewStatus = ReviewStatus.OPEN
    kind: ReviewKind = ReviewKind.DUPLICATE
    created_at: datetime | None = None
    decided_at: datetime | None = None
    decided_by: str | None = None
    decision: ReviewDecision | None = None
    reason: str | None = None
    id: int | None = None
