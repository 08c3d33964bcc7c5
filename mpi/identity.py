"""Identity use cases: register and update records, merge, change identifier, link, unlink.

Each use case works inside a unit of work that the caller opens and commits, so that the
inbound message is journaled in the same transaction as the change it caused. The rules:

- equal qualified INS: same person; two different qualified INS: never the same person;
- otherwise the matcher decides (a new person when it finds nobody);
- an automatic link is examined again whenever a record of its person changes: when the
  matcher would no longer make it, the record leaves for a person of its own and a review task
  ("reexamined") proposes the former person; never left wrong silently;
- an update whose identity now describes another person (another birth date and another first
  given name, or another qualified INS) is held for review ("collision"), not applied: the
  record and its studies stay with the identity they had until a person decides;
- manual decisions (A24/A37, review) are sticky: no automatic rule undoes them;
- a sender writes only records of its own domain; it may name another domain's existing record
  in a link or unlink, which asserts something about persons and writes nothing in that domain.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from jellyfish import jaro_winkler_similarity

from mpi.authorities import AuthorityRegistry
from mpi.errors import (
    DuplicateIdentifierError,
    ForbiddenError,
    IdentityConflictError,
    InvalidInputError,
    InvalidValueError,
    UnknownIdentifierError,
)
from mpi.events import (
    Event,
    PersonCreated,
    PersonIdentifiersChanged,
    PersonsMerged,
    RecordDeleted,
    RecordLinked,
    RecordRegistered,
    RecordRetired,
    RecordUnlinked,
    RecordUpdated,
    ReviewRequested,
    UpdateQuarantined,
)
from mpi.model import (
    QUALIFIED_RELIABILITY_CODES,
    Authority,
    AuthorityKind,
    Demographics,
    Identifier,
    Link,
    LinkMethod,
    Person,
    PersonStatus,
    RecordStatus,
    ReviewKind,
    ReviewTask,
    SourceRecord,
    master_id_of,
)
from mpi.normalize import given_names_agree_any_order, given_names_list, nir_problem
from mpi.ports import Clock, UnitOfWork
from mpi.queries import current_person

__all__ = [
    "Actor",
    "RecordData",
    "RegisterRecord",
    "MergeRecords",
    "DeleteRecord",
    "ChangeIdentifier",
    "LinkRecords",
    "UnlinkRecords",
    "ReviewCandidate",
    "MatchDecision",
    "PairVerdict",
    "Matcher",
    "collision_reason",
    "NewPersonMatcher",
    "IdentityService",
]


@dataclass(frozen=True)
class Actor:
    """Who asks. ``authority`` is the establishment a system speaks for; None for the
    identity-vigilance staff, who act on every domain."""

    name: str
    authority: str | None


@dataclass(frozen=True)
class RecordData:
    """What a message says about one record. In ``demographics``, an absent key leaves the value
    unchanged and None deletes it; ``reliability`` None leaves the codes unchanged."""

    identifier: Identifier
    demographics: Mapping[str, Any] = field(default_factory=dict)
    ins: Identifier | None = None
    reliability: tuple[str, ...] | None = None
    activity_at: datetime | None = None
    location: str = "PID^1^3"


@dataclass(frozen=True)
class RegisterRecord:
    """Create or update a record (A28, A31, encounter events)."""

    record: RecordData


@dataclass(frozen=True)
class MergeRecords:
    """Fold ``retired`` into the surviving record (A40)."""

    survivor: RecordData
    retired: Identifier
    retired_location: str = "MRG^1^1"


@dataclass(frozen=True)
class DeleteRecord:
    """Remove a record from the index (FHIR conditional delete, ITI-104)."""

    identifier: Identifier
    location: str = "PID^1^3"


@dataclass(frozen=True)
class ChangeIdentifier:
    """Replace the identifier ``obsolete`` by ``new.identifier`` (A47)."""

    new: RecordData
    obsolete: Identifier
    obsolete_location: str = "MRG^1^1"


@dataclass(frozen=True)
class LinkRecords:
    """Assert that two records designate the same person (A24)."""

    first: RecordData
    second: RecordData


@dataclass(frozen=True)
class UnlinkRecords:
    """Assert that two records designate different persons (A37)."""

    first: RecordData
    second: RecordData


@dataclass(frozen=True)
class ReviewCandidate:
    """A person the record may belong to, too doubtful to link automatically."""

    person_id: int
    record_id: int
    score: float
    evidence: dict[str, Any]


@dataclass(frozen=True)
class MatchDecision:
    """What the matcher found for a record without a deciding qualified INS: a person to
    link to (``person_id``), or none, and then maybe candidates for review."""

    person_id: int | None
    method: LinkMethod
    score: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    review: tuple[ReviewCandidate, ...] = ()


@dataclass(frozen=True)
class PairVerdict:
    """Whether the matcher would link a record automatically to another one judged alone,
    whether they look like twins, and why: for re-examining a link decided earlier."""

    links: bool
    twins: bool
    score: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


class Matcher(Protocol):
    def match(self, uow: UnitOfWork, record: SourceRecord) -> MatchDecision:
        """Find the person a new record belongs to; ``person_id`` None means a new person.

        Must never propose a person holding a different qualified INS, nor one with a record
        declared different from this one."""
        ...

    def pair(self, a: SourceRecord, b: SourceRecord) -> PairVerdict:
        """Whether ``a`` would be linked automatically to ``b`` by the rules of ``match``."""
        ...


class NewPersonMatcher:
    """The matcher of a deterministic-only index: every record without a known INS is new."""

    def match(self, uow: UnitOfWork, record: SourceRecord) -> MatchDecision:
        return MatchDecision(person_id=None, method=LinkMethod.NEW)

    def pair(self, a: SourceRecord, b: SourceRecord) -> PairVerdict:
        return PairVerdict(links=False, twins=False)


# Jaro-Winkler at or above which two first given names are one typo apart (the matcher's
# NAME_SIMILARITY: the identity rules do not import the matcher).
_SAME_GIVEN_NAME = 0.92


def collision_reason(before: SourceRecord, after: SourceRecord) -> str | None:
    """Why the record ``after`` (an update of ``before``) describes another person, or None:
    a qualified INS other than the one held, or both another birth date and another first
    given name (not a typo, not the same names in another order, not one part of a compound
    name). Such an update is an identity collision (an overlay): never applied unseen."""
    held, sent = before.qualified_ins, after.qualified_ins
    if held is not None and sent is not None and held != sent:
        return "another qualified INS than the one held"
    old, new = before.demographics, after.demographics
    if old.birth_date is None or new.birth_date is None or old.birth_date == new.birth_date:
        return None
    old_given, new_given = given_names_list(old.given_names), given_names_list(new.given_names)
    if not old_given or not new_given:
        return None
    first_old, first_new = old_given[0], new_given[0]
    if (first_old == first_new or given_names_agree_any_order(old_given, new_given)
            or set(first_old.split("-")) & set(first_new.split("-"))
            or jaro_winkler_similarity(first_old, first_new) >= _SAME_GIVEN_NAME):
        return None
    return "another birth date and another first given name"


class IdentityService:
    """The identity use cases. Stateless apart from its configuration."""

    def __init__(
        self, registry: AuthorityRegistry, clock: Clock, matcher: Matcher | None = None
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.matcher = matcher or NewPersonMatcher()

    # -- use cases -------------------------------------------------------------------------

    def register(self, uow: UnitOfWork, command: RegisterRecord, actor: Actor) -> SourceRecord:
        """Create or update a record and (re)link it. Raises UnknownAuthorityError,
        ForbiddenError, InvalidValueError."""
        session = IdentitySession(self, uow, actor)
        record = session.upsert(command.record)
        session.finish()
        return record

    def merge(self, uow: UnitOfWork, command: MergeRecords, actor: Actor) -> SourceRecord:
        """Fold the retired record into the survivor (created if unknown); their persons merge
        when no identity rule forbids it. Raises UnknownIdentifierError for an unknown retired
        identifier, InvalidInputError when both are the same."""
        session = IdentitySession(self, uow, actor)
        session.authorize_write(command.retired, command.retired_location)
        session.lock_identifiers([command.retired])
        retired = uow.records.by_identifier(command.retired)
        if retired is None or not retired.is_active:
            raise UnknownIdentifierError(
                f"no active record {command.retired} to merge", location=command.retired_location
            )
        if command.retired == command.survivor.identifier:
            raise InvalidInputError(
                "a record cannot be merged into itself", location=command.retired_location
            )
        survivor = session.upsert(command.survivor)
        session.retire(retired, into=survivor, reason="merge")
        session.finish()
        return survivor

    def change_identifier(
        self, uow: UnitOfWork, command: ChangeIdentifier, actor: Actor
    ) -> SourceRecord:
        """Give a record a new identifier: the obsolete record is retired into a new one that
        keeps its demographics and person. Raises UnknownIdentifierError (obsolete unknown),
        DuplicateIdentifierError (new identifier already exists)."""
        session = IdentitySession(self, uow, actor)
        new_data = command.new
        session.authorize_write(command.obsolete, command.obsolete_location)
        session.authorize_write(new_data.identifier, new_data.location)
        session.lock_identifiers([command.obsolete, new_data.identifier])
        obsolete = uow.records.by_identifier(command.obsolete)
        if obsolete is None or not obsolete.is_active:
            raise UnknownIdentifierError(
                f"no active record {command.obsolete} to rename",
                location=command.obsolete_location,
            )
        if uow.records.by_identifier(new_data.identifier) is not None:
            raise DuplicateIdentifierError(
                f"{new_data.identifier} already exists", location=new_data.location
            )
        renamed = session.create_successor(obsolete, new_data)
        session.retire(obsolete, into=renamed, reason="identifier-change")
        session.reconcile_ins(renamed)
        session.finish()
        return renamed

    def delete(self, uow: UnitOfWork, command: DeleteRecord, actor: Actor) -> int:
        """Remove a record: it no longer designates its person, its identifier no longer
        resolves, its history stays. Returns the number of the person it belonged to, who
        keeps the other records. Raises UnknownAuthorityError, ForbiddenError,
        UnknownIdentifierError (no active record with that identifier)."""
        session = IdentitySession(self, uow, actor)
        session.authorize_write(command.identifier, command.location)
        session.lock_identifiers([command.identifier])
        record = uow.records.by_identifier(command.identifier)
        if record is None or not record.is_active:
            raise UnknownIdentifierError(
                f"no active record {command.identifier} to delete", location=command.location
            )
        person_id = session.person_of(record)
        session.touch(person_id)
        record.status = RecordStatus.DELETED
        record.updated_at = session.now
        uow.records.save(record)
        session.events.append(RecordDeleted(_id(record), record.identifier, person_id))
        session.finish()
        return person_id

    def link(self, uow: UnitOfWork, command: LinkRecords, actor: Actor) -> None:
        """Merge the persons of two records (a sticky manual decision). Raises
        IdentityConflictError when their persons hold different qualified INS or records
        declared different."""
        session = IdentitySession(self, uow, actor)
        first, second = session.two_records(command.first, command.second)
        session.link_manually(first, second)
        session.finish()

    def unlink(self, uow: UnitOfWork, command: UnlinkRecords, actor: Actor) -> None:
        """Separate the second record from the first one's person, for good. Raises
        IdentityConflictError when both carry the same qualified INS."""
        session = IdentitySession(self, uow, actor)
        first, second = session.two_records(command.first, command.second)
        session.unlink_manually(first, second)
        session.finish()


class IdentitySession:
    """The work of one use case: the records and persons it touches and the events it raises.
    Used by the use cases of this package (identity, review); not by adapters."""

    def __init__(self, service: IdentityService, uow: UnitOfWork, actor: Actor) -> None:
        self.registry = service.registry
        self.matcher = service.matcher
        self.uow = uow
        self.actor = actor
        self.now = service.clock.now()
        self.events: list[Event] = []
        self._identifiers_before: dict[int, frozenset[Identifier]] = {}
        # Statuses of the persons this use case created or merged, known without a query.
        self._person_status: dict[int, PersonStatus] = {}
        # Persons whose automatic links finish() examines again, with the record that changed.
        self._to_reexamine: dict[int, int | None] = {}

    # -- authorization and input checks ----------------------------------------------------

    def authorize_write(self, identifier: Identifier, location: str) -> None:
        """Raises UnknownAuthorityError, ForbiddenError."""
        authority = self._authority_of(identifier, location)
        if authority.kind is not AuthorityKind.ESTABLISHMENT:
            raise ForbiddenError(
                f"{identifier.authority} is not an establishment's domain: local records "
                "live in an establishment's domain",
                location=location,
            )
        if self.actor.authority is not None and authority.code != self.actor.authority:
            raise ForbiddenError(
                f"{self.actor.name} speaks for {self.actor.authority} and may not write "
                f"identifiers of {authority.code}",
                location=location,
            )

    def _authority_of(self, identifier: Identifier, location: str) -> Authority:
        try:
            return self.registry.by_code(identifier.authority)
        except InvalidInputError as exc:
            exc.location = exc.location or location
            raise

    def check_ins(self, data: RecordData) -> None:
        if data.ins is None:
            return
        authority = self._authority_of(data.ins, data.location)
        if not authority.is_national:
            raise InvalidValueError(f"{data.ins} is not an INS", location=data.location)
        problem = nir_problem(data.ins.value)
        if problem is not None:
            raise InvalidValueError(problem, location=data.location)

    # -- locks -----------------------------------------------------------------------------

    def lock_identifiers(self, identifiers: Iterable[Identifier]) -> None:
        self.uow.lock(f"record:{identifier}" for identifier in identifiers)

    # -- records ---------------------------------------------------------------------------

    def upsert(self, data: RecordData) -> SourceRecord:
        """Create or update the record ``data`` names, then link or re-examine it."""
        self.authorize_write(data.identifier, data.location)
        self.check_ins(data)
        keys = [f"record:{data.identifier}"]
        if data.ins is not None:
            keys.append(f"ins:{data.ins}")
        self.uow.lock(keys)
        record = self.uow.records.by_identifier(data.identifier)
        if record is not None and not record.is_active:
            raise InvalidInputError(
                f"{data.identifier} was {record.status.value}; it can no longer be updated",
                location=data.location,
            )
        if record is None:
            record = SourceRecord(identifier=data.identifier)
            self._apply(record, data)
            self.uow.records.add(record)
            self.events.append(RecordRegistered(_id(record), record.identifier))
            self.link_new_record(record)
            return record
        before = copy.deepcopy(record)
        self._apply(record, data)
        reason = collision_reason(before, record)
        if reason is not None:
            self.hold(before, record, data, reason)
            return before
        self.uow.records.save(record)
        self.events.append(RecordUpdated(_id(record), record.identifier, record.version))
        if record.qualified_ins != before.qualified_ins:
            self.touch(self.person_of(record))
            self.reconcile_ins(record)
        if _identity_of(record) != _identity_of(before):
            self.mark_for_reexamination(self.person_of(record), _id(record))
        return record

    def hold(self, current: SourceRecord, held: SourceRecord, data: RecordData,
             reason: str) -> None:
        """Keep an update that describes another person for review instead of applying it;
        a newer held update replaces an older one still waiting."""
        person_id = self.person_of(current)
        version = {
            "demographics": held.demographics.as_dict(),
            "ins": str(held.ins) if held.ins else None,
            "reliability": list(held.reliability),
            "last_activity": held.last_activity.isoformat() if held.last_activity else None,
            "sent_by": self.actor.name,
            "received_at": self.now.isoformat(),
        }
        evidence = {
            "reason": reason,
            "held": version,
            "current": {
                "demographics": current.demographics.as_dict(),
                "ins": str(current.ins) if current.ins else None,
                "reliability": list(current.reliability),
            },
        }
        waiting = [t for t in self.uow.reviews.open_for_record(_id(current))
                   if t.kind is ReviewKind.COLLISION]
        if waiting:
            task = waiting[0]
            task.evidence = evidence
            task.person_id = person_id
            self.uow.reviews.save(task)
        else:
            task = ReviewTask(record_id=_id(current), person_id=person_id,
                              candidate_record_id=None, score=0.0, evidence=evidence,
                              created_at=self.now, kind=ReviewKind.COLLISION)
            self.uow.reviews.add(task)
            self.events.append(ReviewRequested(_id(current), person_id, 0.0))
        assert task.id is not None
        self.events.append(UpdateQuarantined(_id(current), current.identifier, person_id,
                                              task.id, reason))

    def _apply(self, record: SourceRecord, data: RecordData) -> None:
        record.demographics = record.demographics.apply(data.demographics)
        if data.reliability is not None:
            record.reliability = data.reliability
        if data.ins is not None and _is_qualified(record.reliability):
            # PAM-FR: an INS is kept only with a qualified identity (PID-32 VALI).
            record.ins = data.ins
        if data.activity_at is not None and (
            record.last_activity is None or data.activity_at > record.last_activity
        ):
            record.last_activity = data.activity_at
        record.updated_at = self.now

    def create_successor(self, obsolete: SourceRecord, data: RecordData) -> SourceRecord:
        self.check_ins(data)
        record = SourceRecord(
            identifier=data.identifier,
            demographics=obsolete.demographics,
            ins=obsolete.ins,
            reliability=obsolete.reliability,
            last_activity=obsolete.last_activity,
        )
        self._apply(record, data)
        self.uow.records.add(record)
        self.events.append(RecordRegistered(_id(record), record.identifier))
        old_link = self.uow.links.for_record(_id(obsolete))
        person_id = old_link.person_id if old_link else self.new_person()
        self.touch(person_id)
        self.uow.links.save(
            Link(
                record_id=_id(record),
                person_id=person_id,
                method=old_link.method if old_link else LinkMethod.NEW,
                score=old_link.score if old_link else None,
                evidence=old_link.evidence if old_link else {},
                decided_by=self.actor.name,
                decided_at=self.now,
            )
        )
        return record

    def retire(self, retired: SourceRecord, into: SourceRecord, reason: str) -> None:
        """Fold ``retired`` into ``into`` and bring its person along when the rules allow."""
        retired_person = self.person_of(retired)
        survivor_person = self.person_of(into)
        self.touch(retired_person)
        self.touch(survivor_person)
        retired.status = RecordStatus.RETIRED
        retired.retired_into = _id(into)
        retired.updated_at = self.now
        self.uow.records.save(retired)
        self.events.append(
            RecordRetired(_id(retired), retired.identifier, _id(into), into.identifier, reason)
        )
        if retired_person == survivor_person:
            return
        self.move_family(retired, survivor_person, LinkMethod.MERGE, reason)
        if self.active_records(retired_person) and not self.compatible(
            retired_person, survivor_person
        ):
            return  # the other records stay where they are: an identity rule forbids more
        self.merge_persons(retired_person, into=survivor_person, reason=reason)

    # -- persons and links -----------------------------------------------------------------

    def person_of(self, record: SourceRecord) -> int:
        link = self.uow.links.for_record(_id(record))
        if link is None:
            raise RuntimeError(f"record {record.identifier} has no person")
        person = current_person(self.uow, link.person_id)
        if person is None or person.id is None:
            raise RuntimeError(f"record {record.identifier} points at a missing person")
        return person.id

    def new_person(self) -> int:
        person = Person(created_at=self.now)
        self.uow.persons.add(person)
        self.events.append(PersonCreated(_id(person)))
        self._identifiers_before[_id(person)] = frozenset()
        self._person_status[_id(person)] = PersonStatus.ACTIVE
        return _id(person)

    def set_link(
        self,
        record: SourceRecord,
        person_id: int,
        method: LinkMethod,
        score: float | None = None,
        evidence: dict[str, Any] | None = None,
    ) -> None:
        self.touch(person_id)
        self.uow.links.save(
            Link(
                record_id=_id(record),
                person_id=person_id,
                method=method,
                score=score,
                evidence=evidence or {},
                decided_by=self.actor.name if method is LinkMethod.MANUAL else "system",
                decided_at=self.now,
            )
        )
        self.events.append(RecordLinked(_id(record), person_id, method.value, score))
        if method is not LinkMethod.AUTO:
            # A record joined by a decision (INS, manual...): the person's automatic links
            # must still hold beside it. The matcher checked an automatic one already.
            self.mark_for_reexamination(person_id)

    def link_new_record(self, record: SourceRecord) -> None:
        ins = record.qualified_ins
        if ins is not None:
            holders = self.persons_holding(ins, excluding=_id(record))
            if holders:
                target = holders[0]
                for other in holders[1:]:
                    # Persons holding one INS were kept apart by a person: they stay apart.
                    if self.compatible(other, target):
                        self.merge_persons(other, into=target, reason="same qualified INS")
                self.set_link(record, target, LinkMethod.INS, evidence={"ins": "equal"})
                return
        if record.is_fictitious:
            self.set_link(record, self.new_person(), LinkMethod.NEW)
            return
        self.link_by_matcher(record, self.new_person)

    def link_by_matcher(self, record: SourceRecord, fallback: Callable[[], int]) -> None:
        """Link a record where the matcher says, or to ``fallback()``; open its review tasks.
        A person the matcher names is checked again here: two different qualified INS or a
        declared separation never become one person, whatever the matcher."""
        decision = self.matcher.match(self.uow, record)
        evidence = dict(decision.evidence)
        person_id = decision.person_id
        if person_id is not None and not self.may_join(record, person_id):
            evidence["refused"] = "the person holds another qualified INS or a separation"
            person_id = None
        method = decision.method if person_id is not None else LinkMethod.NEW
        target = person_id if person_id is not None else fallback()
        self.set_link(record, target, method, decision.score, evidence)
        for candidate in decision.review:
            if candidate.person_id == target:
                continue
            self.uow.reviews.add(ReviewTask(
                record_id=_id(record), person_id=candidate.person_id,
                candidate_record_id=candidate.record_id, score=candidate.score,
                evidence=candidate.evidence, created_at=self.now,
            ))
            self.events.append(ReviewRequested(_id(record), candidate.person_id,
                                               candidate.score))

    def may_join(self, record: SourceRecord, person_id: int) -> bool:
        """Whether a record may join a person: no other qualified INS there, no record of the
        person declared different from it."""
        others = [r for r in self.active_records(person_id) if r.id != record.id]
        ins = record.qualified_ins
        if ins is not None and any(o.qualified_ins not in (None, ins) for o in others):
            return False
        return not self.uow.separations.exists_between(
            [_id(record)], [_id(r) for r in self.uow.records.linked_to(person_id)])

    # -- re-examination of automatic links -------------------------------------------------

    def mark_for_reexamination(self, person_id: int, changed: int | None = None) -> None:
        """Have :meth:`finish` examine the person's automatic links again: one of its records
        changed (``changed``) or it received another person's records."""
        if person_id not in self._to_reexamine or changed is not None:
            self._to_reexamine[person_id] = changed

    def reexamine_marked(self) -> None:
        # Bounded: a record detached and matched elsewhere marks its new person once.
        for _ in range(1000):
            if not self._to_reexamine:
                return
            person_id = min(self._to_reexamine)
            changed = self._to_reexamine.pop(person_id)
            person = current_person(self.uow, person_id)
            if person is not None and person.id is not None:
                self.reexamine(person.id, changed)
        raise RuntimeError("re-examination did not settle")

    def reexamine(self, person_id: int, changed: int | None = None) -> None:
        """Examine again the automatic links of a person after one of its records changed or
        it received another person's records.

        The records linked by a decision (the founding record, INS, manual, merge) stay; an
        automatically linked record stays when the matcher would still link it to one that
        stays and it looks like a twin of none of them. Each of the others leaves for a
        person of its own, is matched again as a new record would be (elsewhere only), and a
        review task proposes the former person: never left wrong silently."""
        records = self.active_records(person_id)
        links = {_id(r): self.uow.links.for_record(_id(r)) for r in records}
        methods = {key: link.method if link else LinkMethod.NEW for key, link in links.items()}
        pending = [r for r in records if methods[_id(r)] is LinkMethod.AUTO]
        if not pending:
            return
        kept = [r for r in records if methods[_id(r)] is not LinkMethod.AUTO]
        if not kept:
            # The records it was linked through left: the first one founds the person now.
            anchor = pending.pop(0)
            self._found(links[_id(anchor)])
            kept = [anchor]
        verdicts: dict[tuple[int, int], PairVerdict] = {}

        def verdict(a: SourceRecord, b: SourceRecord) -> PairVerdict:
            key = (_id(a), _id(b))
            if key not in verdicts:
                verdicts[key] = self.matcher.pair(a, b)
            return verdicts[key]

        progress = True
        while progress and pending:
            progress = False
            for r in list(pending):
                judged = [verdict(r, k) for k in kept]
                if any(v.twins for v in judged) or not any(v.links for v in judged):
                    continue
                self._renew_evidence(links[_id(r)], kept, judged, changed)
                kept.append(r)
                pending.remove(r)
                progress = True
        for record in pending:
            best = max(kept, key=lambda k: verdict(record, k).score or 0.0)
            self.detach(record, person_id, verdict(record, best), _id(best), changed)

    def _found(self, link: Link | None) -> None:
        if link is None:
            return
        link.method = LinkMethod.NEW
        link.evidence = {**link.evidence, "reason": "the records it was linked through left: "
                         "it founds its person now"}
        link.decided_at = self.now
        self.uow.links.save(link)

    def _renew_evidence(self, link: Link | None, kept: list[SourceRecord],
                        judged: list[PairVerdict], changed: int | None) -> None:
        """An automatic link that still holds, told as it holds now. An equal qualified INS
        with a record that stays makes it an INS link, whatever the traits (a record updated
        to a newborn's placeholder with the INS of its person is held there by the INS, not
        by a match). Otherwise, when the record it was decided on changed or the record
        itself did, its score and evidence are those of the record it holds through now."""
        if link is None:
            return
        through = {_id(k): v for k, v in zip(kept, judged, strict=True) if v.links}
        by_ins = [key for key, v in through.items()
                  if v.evidence.get("reason") == "equal qualified INS"]
        if by_ins:
            link.method = LinkMethod.INS
            link.score = None
            link.evidence = {"ins": "equal", "candidate_record": by_ins[0],
                             "reason": "re-examined after a change: linked by an equal "
                                       "qualified INS"}
            link.decided_at = self.now
            self.uow.links.save(link)
            return
        decided_on = link.evidence.get("candidate_record")
        if decided_on in through and changed not in (decided_on, link.record_id):
            return
        best_id = (decided_on if decided_on in through
                   else max(through, key=lambda key: through[key].score or 0.0))
        best = through[best_id]
        link.score = best.score
        link.evidence = {**best.evidence, "candidate_record": best_id,
                         "reason": "re-examined after a change: still linked"
                                   + ("" if best_id == decided_on else ", through another "
                                      "record")}
        link.decided_at = self.now
        self.uow.links.save(link)

    def detach(self, record: SourceRecord, person_id: int, judged: PairVerdict,
               candidate_record: int, changed: int | None) -> None:
        """Move a record whose automatic link no longer holds to a person of its own, match
        it again, and propose its former person for review with the reasons."""
        self.touch(person_id)
        self.move_family(record, self.new_person(), LinkMethod.NEW,
                         "re-examined: the link no longer holds")
        evidence = {
            **judged.evidence,
            "reason": "re-examined after a change: the automatic link no longer holds",
            "changed_record": changed,
            "candidate_record": candidate_record,
        }
        self.uow.reviews.add(ReviewTask(
            record_id=_id(record), person_id=person_id, candidate_record_id=candidate_record,
            score=judged.score or 0.0, evidence=evidence, created_at=self.now,
            kind=ReviewKind.REEXAMINED))
        self.events.append(ReviewRequested(_id(record), person_id, judged.score or 0.0))
        self.rematch(record, former=person_id)

    def rematch(self, record: SourceRecord, former: int) -> None:
        """Match a record that just left ``former`` for a person of its own as a new record
        would be: another person may be the right one (linked automatically when the matcher
        says so), or proposed. ``former`` is proposed by the caller's task, not here."""
        own = self.person_of(record)
        decision = self.matcher.match(self.uow, record)
        found = decision.person_id
        if found is not None and found not in (former, own) and self.may_join(record, found):
            self.move_family(record, found, LinkMethod.AUTO, "matched another person")
            self.set_link(record, found, LinkMethod.AUTO, decision.score, decision.evidence)
            own = found
        for candidate in decision.review:
            if candidate.person_id in (former, own):
                continue
            self.uow.reviews.add(ReviewTask(
                record_id=_id(record), person_id=candidate.person_id,
                candidate_record_id=candidate.record_id, score=candidate.score,
                evidence=candidate.evidence, created_at=self.now))
            self.events.append(ReviewRequested(_id(record), candidate.person_id,
                                               candidate.score))

    def reconcile_ins(self, record: SourceRecord) -> None:
        """After a record's qualified INS changed: apply the INS rules to its person."""
        ins = record.qualified_ins
        if ins is None:
            return  # losing qualification does not undo a link decided earlier
        person_id = self.person_of(record)
        holders = [p for p in self.persons_holding(ins, excluding=_id(record)) if p != person_id]
        others_conflict = any(
            other.qualified_ins not in (None, ins)
            for other in self.active_records(person_id)
            if other.id != record.id
        )
        if others_conflict:
            # Two different qualified INS can never be one person: the record leaves, for a
            # holder of its INS unless it was declared different from it.
            joinable = [h for h in holders if self.may_join(record, h)]
            target = joinable[0] if joinable else self.new_person()
            self.touch(person_id)
            self.move_family(record, target, LinkMethod.INS if joinable else LinkMethod.NEW,
                             "different qualified INS")
            return
        for holder in holders:
            if self.compatible(person_id, holder):
                survivor, retired = sorted((person_id, holder))
                self.merge_persons(retired, into=survivor, reason="same qualified INS")
                person_id = survivor

    def persons_holding(self, ins: Identifier, excluding: int) -> list[int]:
        persons = set()
        for other in self.uow.records.with_qualified_ins(ins):
            if other.id != excluding:
                link = self.uow.links.for_record(_id(other))
                if link is not None:
                    person = current_person(self.uow, link.person_id)
                    if person is not None:
                        persons.add(_id(person))
        return sorted(persons)

    def active_records(self, person_id: int) -> list[SourceRecord]:
        return [r for r in self.uow.records.linked_to(person_id) if r.is_active]

    def compatible(self, first: int, second: int) -> bool:
        """Whether two persons may become one: at most one qualified INS between them, and no
        record of one declared different from a record of the other."""
        first_records = self.uow.records.linked_to(first)
        second_records = self.uow.records.linked_to(second)
        ins = {
            r.qualified_ins for r in first_records + second_records if r.is_active
        } - {None}
        if len(ins) > 1:
            return False
        return not self.uow.separations.exists_between(
            [_id(r) for r in first_records], [_id(r) for r in second_records]
        )

    def merge_persons(self, retired_id: int, into: int, reason: str) -> None:
        if retired_id == into:
            return
        self.touch(retired_id)
        self.touch(into)
        for link in self.uow.links.of_person(retired_id):
            link.person_id = into
            self.uow.links.save(link)
        retired = self.uow.persons.get(retired_id)
        assert retired is not None
        retired.status = PersonStatus.MERGED
        retired.merged_into = into
        self.uow.persons.save(retired)
        self._person_status[retired_id] = PersonStatus.MERGED
        self.events.append(PersonsMerged(into, retired_id, reason))
        self.mark_for_reexamination(into)

    def family(self, record: SourceRecord) -> list[SourceRecord]:
        """The record and every record retired into it, directly or not."""
        found, pending = [], [record]
        while pending:
            current = pending.pop()
            found.append(current)
            pending.extend(self.uow.records.retired_into(_id(current)))
        return found

    def move_family(
        self, record: SourceRecord, person_id: int, method: LinkMethod, reason: str
    ) -> None:
        """Move a record (and what was retired into it) to another person."""
        source = self.person_of(record)
        for member in self.family(record):
            link = self.uow.links.for_record(_id(member))
            if link is not None and link.person_id == person_id:
                continue
            self.set_link(member, person_id, method)
            if member is record:
                self.events.append(RecordUnlinked(_id(member), source, person_id, reason))
        self.touch(source)
        if not self.active_records(source):
            self.merge_persons(source, into=person_id, reason=reason)
        else:
            # The records left behind may have been linked through the one that left.
            self.mark_for_reexamination(source)

    # -- manual decisions ------------------------------------------------------------------

    def two_records(
        self, first_data: RecordData, second_data: RecordData
    ) -> tuple[SourceRecord, SourceRecord]:
        """The records an A24/A37 names: the first is the sender's (created or updated); the
        second is updated when it is the sender's too, else it must exist and is not written."""
        first = self.upsert(first_data)
        if self._may_write(second_data.identifier):
            second = self.upsert(second_data)
        else:
            self._authority_of(second_data.identifier, second_data.location)
            self.lock_identifiers([second_data.identifier])
            found = self.uow.records.by_identifier(second_data.identifier)
            if found is None or not found.is_active:
                raise UnknownIdentifierError(
                    f"no active record {second_data.identifier}", location=second_data.location
                )
            second = found
        if first.id == second.id:
            raise InvalidInputError(
                "a record cannot be linked to or unlinked from itself",
                location=second_data.location,
            )
        return first, second

    def _may_write(self, identifier: Identifier) -> bool:
        return self.actor.authority is None or identifier.authority == self.actor.authority

    def link_manually(self, first: SourceRecord, second: SourceRecord) -> None:
        first_person, second_person = self.person_of(first), self.person_of(second)
        self.uow.separations.remove(_id(first), _id(second))
        if first_person != second_person and not self.compatible(first_person, second_person):
            raise IdentityConflictError(
                f"{first.identifier} and {second.identifier} cannot be one person: their persons "
                "hold different qualified INS or records declared different"
            )
        survivor, retired = sorted((first_person, second_person))
        self.merge_persons(retired, into=survivor, reason="manual link")
        for record in (first, second):
            self.set_link(record, survivor, LinkMethod.MANUAL)

    def unlink_manually(self, first: SourceRecord, second: SourceRecord) -> None:
        person_id = self.person_of(first)
        ins = second.qualified_ins
        if ins is not None and ins == first.qualified_ins:
            raise IdentityConflictError(
                f"{first.identifier} and {second.identifier} carry the same qualified INS: "
                "they designate the same person"
            )
        self.uow.separations.add(_id(first), _id(second), "manual unlink", self.actor.name)
        if self.person_of(second) != person_id:
            return
        target = self.new_person()
        self.move_family(second, target, LinkMethod.MANUAL, "manual unlink")
        if ins is not None:
            # Records sharing the second record's qualified INS are the same person as it.
            for other in self.active_records(person_id):
                if other.qualified_ins == ins and other.id != second.id:
                    self.move_family(other, target, LinkMethod.INS, "manual unlink")

    # -- identifier changes and notifications ----------------------------------------------

    def touch(self, person_id: int) -> None:
        """Remember a person's identifiers before this use case changes them."""
        if person_id not in self._identifiers_before:
            self._identifiers_before[person_id] = self.identifiers_now(person_id)

    def identifiers_now(self, person_id: int) -> frozenset[Identifier]:
        status = self._person_status.get(person_id)
        if status is None:
            person = self.uow.persons.get(person_id)
            status = person.status if person is not None else None
        if status is not PersonStatus.ACTIVE:
            return frozenset()
        master = Identifier(self.registry.master.code, master_id_of(person_id))
        return frozenset([master, *self.uow.records.identifiers_of(person_id)])

    def finish(self) -> None:
        """Write the events the use case caused to the outbox; what reacts to them (PIX
        notifications...) is the dispatcher's business (:mod:`mpi.handlers`)."""
        self.reexamine_marked()
        for person_id, before in sorted(self._identifiers_before.items()):
            after = self.identifiers_now(person_id)
            if after != before:
                self.events.append(PersonIdentifiersChanged(person_id, before, after))
        for event in self.events:
            self.uow.outbox.add(event)


def _identity_of(record: SourceRecord) -> tuple[Demographics, Identifier | None, bool]:
    """What the matcher judges a record on: a change of it re-examines the links."""
    return record.demographics, record.qualified_ins, record.is_fictitious


def _is_qualified(reliability: tuple[str, ...]) -> bool:
    return bool(QUALIFIED_RELIABILITY_CODES.intersection(reliability))


def _id(entity: SourceRecord | Person) -> int:
    if entity.id is None:
        raise RuntimeError("entity used before it was stored")
    return entity.id
