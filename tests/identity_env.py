"""The identity use cases on in-memory fakes with the real probabilistic matcher: a matcher
that CAN link, so that a test of a rule that forbids a link fails when the rule is lost."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from adapters.authorities_file import DEFAULT_AUTHORITIES_FILE, load_authorities
from mpi.identity import (
    Actor,
    ChangeIdentifier,
    IdentityService,
    LinkRecords,
    MergeRecords,
    RecordData,
    RegisterRecord,
    UnlinkRecords,
)
from mpi.matching.engine import ProbabilisticMatcher
from mpi.model import (
    Identifier,
    Link,
    PersonStatus,
    ReviewDecision,
    ReviewKind,
    ReviewStatus,
    ReviewTask,
    SourceRecord,
)
from mpi.normalize import nir_key
from mpi.queries import resolve_person
from mpi.review import decide_review
from tests.fakes import FixedClock, fake_uow_factory

REGISTRY = load_authorities(DEFAULT_AUTHORITIES_FILE)
NATIONAL = frozenset(a.code for a in REGISTRY.all if a.is_national)
STAFF = Actor("user:vigilance", None)

# Traits strong enough to link automatically when they agree (rare name, full date, place,
# postcode, phone).
TRAITS: dict[str, Any] = dict(
    birth_family_name="ZIMMERMANN", given_names=("Hélène", "Marie"),
    birth_date=date(1975, 6, 14), sex="F", birthplace="54395", postcode="54000",
    phone="0612345678")


def nir(body: str) -> Identifier:
    """A qualified INS-NIR with its right key."""
    return Identifier("INS-NIR", f"{body}{nir_key(body):02d}")


INS_A = nir("2750654395012")
INS_B = nir("2750654395013")


class IdentityEnv:
    """A fresh index on fakes; every call is one committed unit of work."""

    def __init__(self, matcher: Any = None) -> None:
        self.factory = fake_uow_factory()
        self.matcher = matcher if matcher is not None else ProbabilisticMatcher(NATIONAL)
        self.service = IdentityService(REGISTRY, FixedClock(), self.matcher)

    @property
    def store(self) -> Any:
        return self.factory.store  # type: ignore[attr-defined]

    # -- writing ---------------------------------------------------------------------------

    def run(self, method: str, command: object, actor: Actor) -> Any:
        with self.factory() as uow:
            result = getattr(self.service, method)(uow, command, actor)
            uow.commit()
        return result

    @staticmethod
    def data(authority: str, value: str, ins: Identifier | None = None,
             reliability: tuple[str, ...] | None = None,
             traits: Mapping[str, Any] | None = None) -> RecordData:
        """What a PID says; without an INS or reliability codes, the codes stay unchanged."""
        codes = reliability if reliability is not None else (("VALI",) if ins else None)
        return RecordData(Identifier(authority, value), dict(traits or {}), ins, codes)

    def register(self, authority: str, value: str, ins: Identifier | None = None,
                 reliability: tuple[str, ...] | None = None, **traits: Any) -> SourceRecord:
        """An A28 (or A31/A08: the same use case) from the record's own establishment;
        PID-32 is VALI with an INS, PROV without unless ``reliability`` says."""
        codes = reliability if reliability is not None else (("VALI",) if ins else ("PROV",))
        result: SourceRecord = self.run(
            "register", RegisterRecord(self.data(authority, value, ins, codes, traits)),
            Actor(f"hl7:{authority}", authority))
        return result

    def merge(self, authority: str, survivor: str, retired: str) -> None:
        self.run("merge", MergeRecords(self.data(authority, survivor),
                                       Identifier(authority, retired)),
                 Actor(f"hl7:{authority}", authority))

    def change_identifier(self, authority: str, new: str, obsolete: str) -> None:
        self.run("change_identifier", ChangeIdentifier(
            self.data(authority, new), Identifier(authority, obsolete)),
            Actor(f"hl7:{authority}", authority))

    def link(self, first: tuple[str, str], second: tuple[str, str]) -> None:
        self.run("link", LinkRecords(self.data(*first), self.data(*second)),
                 Actor(f"hl7:{first[0]}", first[0]))

    def unlink(self, first: tuple[str, str], second: tuple[str, str]) -> None:
        self.run("unlink", UnlinkRecords(self.data(*first), self.data(*second)),
                 Actor(f"hl7:{first[0]}", first[0]))

    def decide(self, task_id: int, decision: ReviewDecision, reason: str = "checked") -> None:
        with self.factory() as uow:
            decide_review(uow, self.service, task_id, decision, STAFF, reason)
            uow.commit()

    # -- reading ---------------------------------------------------------------------------

    def person(self, authority: str, value: str) -> int | None:
        with self.factory() as uow:
            person = resolve_person(uow, REGISTRY, Identifier(authority, value))
            return None if person is None else person.id

    def record(self, authority: str, value: str) -> SourceRecord:
        return next(r for r in self.store.records.values()
                    if r.identifier == Identifier(authority, value))

    def link_of(self, authority: str, value: str) -> Link:
        record = self.record(authority, value)
        link: Link = self.store.links[record.id]
        return link

    def open_tasks(self, kind: ReviewKind | None = None) -> list[ReviewTask]:
        return [t for t in self.store.reviews.values() if t.status is ReviewStatus.OPEN
                and (kind is None or t.kind is kind)]

    def active_persons(self) -> set[int]:
        return {pid for pid, p in self.store.persons.items() if p.status is PersonStatus.ACTIVE}
