"""Retention of the medical record an establishment keeps (Code de la santé publique,
article R.1112-7), applied to the images of that record.

The rule, for the record of one establishment:

- kept 20 years from the patient's last stay or consultation at that establishment;
- if that ends before the patient's 28th birthday, until the 28th birthday;
- in every case, if the patient died less than 10 years after that last visit, 10 years from
  the death.

A study belongs to the establishment whose patient record it arrived with. "Last visit" is the
latest of the record's last encounter (the feed's encounter events, kept as the record's
``last_activity``, the records merged into it included) and the dates of the establishment's
own studies of that record (a study without a date counts from its reception). The death is
the person's (PID-29), whichever establishment reported it.

Choices of ours, documented in README.md: a date plus N years from 29 February lands on
1 March in a common year (never a day early); a death recorded *before* the last visit is
inconsistent and the death rule is then not applied (the longer period is kept); an
establishment may keep its records longer than 20 years (``RetentionPolicy.overrides``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from mpi.archive.model import RecordDates, Retention, StudyFacts
from mpi.archive.ports import ArchiveUnitOfWork
from mpi.events import (
    Event,
    RecordLinked,
    RecordRegistered,
    RecordRetired,
    RecordUpdated,
    StudyReassigned,
    StudyStored,
)
from mpi.model import SourceRecord
from mpi.ports import UnitOfWork
from mpi.queries import current_person

__all__ = [
    "LEGAL_YEARS_AFTER_VISIT",
    "AGE_FLOOR_YEARS",
    "YEARS_AFTER_DEATH",
    "BASIS_BIRTHDAY",
    "BASIS_DEATH",
    "RetentionPolicy",
    "RetentionEnd",
    "add_years",
    "retention_end",
    "recompute_retention",
    "retention_of_facts",
    "sweep_retention",
    "RetentionRecomputation",
    "RETENTION_EVENTS",
]

LEGAL_YEARS_AFTER_VISIT = 20
AGE_FLOOR_YEARS = 28
YEARS_AFTER_DEATH = 10
BASIS_BIRTHDAY = "28th-birthday"
BASIS_DEATH = "death+10y"


def add_years(day: date, years: int) -> date:
    """The same day ``years`` later; 29 February gives 1 March in a common year."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February into a common year
        return date(day.year + years, 3, 1)


@dataclass(frozen=True)
class RetentionEnd:
    """When a record's retention ends, and by which branch of the rule."""

    expires_on: date
    basis: str  # last-visit+20y, 28th-birthday, death+10y


def retention_end(last_visit: date, birth_date: date | None = None,
                  death_date: date | None = None,
                  years_after_visit: int = LEGAL_YEARS_AFTER_VISIT) -> RetentionEnd:
    """R.1112-7 for one record: ``years_after_visit`` from the last visit, extended to the
    28th birthday; in every case 10 years from a death less than 10 years after the visit
    (a death before the last visit is inconsistent and ignored). Raises ValueError for a
    negative period."""
    if years_after_visit < 0:
        raise ValueError("a retention period cannot be negative")
    end = RetentionEnd(add_years(last_visit, years_after_visit),
                       f"last-visit+{years_after_visit}y")
    if birth_date is not None:
        birthday = add_years(birth_date, AGE_FLOOR_YEARS)
        if end.expires_on < birthday:
            end = RetentionEnd(birthday, BASIS_BIRTHDAY)
    if (death_date is not None and last_visit <= death_date
            < add_years(last_visit, YEARS_AFTER_DEATH)):
        end = RetentionEnd(add_years(death_date, YEARS_AFTER_DEATH), BASIS_DEATH)
    return end


@dataclass(frozen=True)
class RetentionPolicy:
    """The period after the last visit, per establishment: the legal 20 years unless the
    configuration keeps an establishment's records longer (authority code -> years)."""

    overrides: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for code, years in self.overrides.items():
            if years < LEGAL_YEARS_AFTER_VISIT:
                raise ValueError(f"{code}: {years} years is shorter than the legal "
                                 f"{LEGAL_YEARS_AFTER_VISIT}")

    def years_for(self, establishment: str) -> int:
        return self.overrides.get(establishment, LEGAL_YEARS_AFTER_VISIT)


def _root(uow: UnitOfWork, record_id: int) -> SourceRecord | None:
    record = uow.records.get(record_id)
    for _ in range(64):
        if record is None or record.retired_into is None:
            return record
        record = uow.records.get(record.retired_into)
    raise RuntimeError(f"retirement chain too long from record {record_id}")


def _family(uow: UnitOfWork, root: SourceRecord) -> list[SourceRecord]:
    found, pending = [], [root]
    while pending:
        current = pending.pop()
        found.append(current)
        if current.id is not None:
            pending.extend(uow.records.retired_into(current.id))
    return found


def _death_of(uow: UnitOfWork, root: SourceRecord, family: list[SourceRecord]) -> date | None:
    """The person's death date: this record's, else any record of the person's."""
    deaths = [r.demographics.death_date for r in family if r.demographics.death_date]
    if deaths:
        return min(deaths)
    link = uow.links.for_record(root.id) if root.id is not None else None
    person = current_person(uow, link.person_id) if link is not None else None
    if person is None or person.id is None:
        return None
    deaths = [r.demographics.death_date for r in uow.records.linked_to(person.id)
              if r.is_active and r.demographics.death_date]
    return min(deaths) if deaths else None


def retention_of_facts(facts: Iterable[StudyFacts], family: Iterable[SourceRecord],
                       death_date: date | None, policy: RetentionPolicy,
                       computed_at: datetime) -> list[Retention]:
    """The retention of each study of one establishment's record, from the record (and the
    records merged into it) and every study of that record."""
    records = list(family)
    return _retention(
        list(facts), [r.last_activity.date() for r in records if r.last_activity],
        [r.demographics.birth_date for r in records if r.demographics.birth_date],
        death_date, policy, computed_at)


def _retention(facts: list[StudyFacts], activities: list[date], births: list[date],
               death_date: date | None, policy: RetentionPolicy,
               computed_at: datetime) -> list[Retention]:
    visits = activities + [f.study_date or f.first_received_at.date() for f in facts]
    births = births + [f.patient_birth_date for f in facts if f.patient_birth_date]
    birth = births[0] if births else None
    result = []
    for fact in facts:
        last_visit = max(visits)
        end = retention_end(last_visit, birth, death_date, policy.years_for(fact.establishment))
        result.append(Retention(fact.study_id, fact.establishment, end.expires_on, end.basis,
                                last_visit, computed_at))
    return result


def _on_its_own(dates: RecordDates) -> bool:
    """A record whose retention depends on nothing but itself and its person: not merged
    into another, no record merged into it, its person (if any) not merged either."""
    return (dates.retired_into is None and not dates.has_retired
            and dates.person_active is not False)


def recompute_retention(uow: ArchiveUnitOfWork, policy: RetentionPolicy,
                        record_ids: Iterable[int], computed_at: datetime) -> int:
    """Recompute and store the retention of every study of the establishment records these
    records belong to (following merges to the survivor and back to every record merged into
    it). The records, their studies and their persons' deaths are read a batch at a time;
    only a record in a merge is followed on its own. Returns how many studies were
    computed. Database errors propagate."""
    wanted = sorted(set(record_ids))
    dates = {d.record_id: d for d in uow.archive.retention_dates(wanted)}
    alone = {i: dates[i] for i in wanted if i in dates and _on_its_own(dates[i])}
    families: dict[int, tuple[SourceRecord, list[SourceRecord]]] = {}
    for record_id in wanted:
        if record_id in alone or record_id not in dates:
            continue
        root = _root(uow, record_id)
        if root is None or root.id is None or root.id in families or root.id in alone:
            continue
        families[root.id] = (root, _family(uow, root))
    facts_of: dict[int, list[StudyFacts]] = {}
    for fact in uow.archive.retention_facts(  # one query per 500 records, not one per record
            [*alone, *(r.id for _, family in families.values() for r in family
                       if r.id is not None)]):
        facts_of.setdefault(fact.record_id, []).append(fact)
    computed: list[Retention] = []
    for record_id, record in alone.items():
        facts = facts_of.get(record_id, [])
        if facts:  # most records of the feed have no study: nothing more to read
            computed += _retention(
                facts, [record.last_activity.date()] if record.last_activity else [],
                [record.birth_date] if record.birth_date else [],
                record.death_date or record.person_death_date, policy, computed_at)
    for root, family in families.values():
        facts = sorted((f for r in family if r.id is not None for f in facts_of.get(r.id, ())),
                       key=lambda f: f.study_id)
        if facts:
            computed += retention_of_facts(facts, family, _death_of(uow, root, family),
                                           policy, computed_at)
    uow.archive.save_retention(computed)
    return len(computed)


def sweep_retention(uow_factory: Callable[..., ArchiveUnitOfWork], policy: RetentionPolicy,
                    now: Callable[[], datetime], *, batch: int = 500,
                    limit: int | None = None) -> int:
    """Recompute the retention of every study, a batch of patient records per transaction
    (catches whatever an event handler missed). Returns the number of studies computed."""
    after, total = 0, 0
    while limit is None or total < limit:
        with uow_factory() as uow:
            record_ids = uow.archive.archived_record_ids(after, batch)
            if not record_ids:
                break
            total += recompute_retention(uow, policy, record_ids, now())
            uow.commit()
        after = record_ids[-1]
    return total


class RetentionRecomputation:
    """An outbox handler: when a record's encounters, death or merges change, or a study is
    stored or reassigned, the retention of the studies concerned is computed again."""

    def __init__(self, policy: RetentionPolicy, now: Callable[[], datetime]) -> None:
        self.policy = policy
        self.now = now

    def __call__(self, uow: UnitOfWork, event: Event) -> None:
        record_ids = _records_of(event)
        if not record_ids:
            return
        archive_uow: ArchiveUnitOfWork = uow  # type: ignore[assignment]
        # A record with no study of its own and no merge moves no retention: most records of
        # the feed, whose every event comes here (one cheap query for them instead of three).
        concerned = archive_uow.archive.retention_concerned(record_ids)
        if concerned:
            recompute_retention(archive_uow, self.policy, concerned, self.now())


def _records_of(event: Event) -> list[int]:
    if isinstance(event, RecordRetired):
        return [event.record_id, event.survivor_id]
    if isinstance(event, RecordLinked | RecordRegistered | RecordUpdated | StudyStored):
        return [event.record_id]
    if isinstance(event, StudyReassigned):
        return [event.from_record_id, event.to_record_id]
    return []


# The events that can move a retention date (subscribed in the composition root). A link
# changes the person, hence the death date that applies.
RETENTION_EVENTS: tuple[type[Event], ...] = (
    RecordRegistered, RecordUpdated, RecordRetired, RecordLinked, StudyStored, StudyReassigned,
)
