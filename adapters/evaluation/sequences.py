"""Message sequences that make a wrong link show only later, built from the synthetic population.

The population (:mod:`adapters.evaluation.population`) is a snapshot: one row per record. Real
feeds also change records after they were linked, and that is where a false merge can hide
until it is too late. Each :class:`SafetySequence` is a short series of A28/A31 messages about
real persons of the population, with what must hold at the end:

- ``twin-later``: a twin's record, then a record of her sister sent without given names (it
  links to the first twin: nothing tells them apart yet), then the sister's own record; then
  the nameless record is completed with the sister's given names. The twins must end apart,
  and the completed record apart from the first twin;
- ``second-given-name``: a twin's record, then her sister's record carrying the first twin's
  given name only (a data-entry error that links them), then an A31 giving the sister's names
  in full, hers first: apart;
- ``correction-after-link``: a person's record, then a homonym's record (same family name,
  given name and birth year) typed with the first person's birth date, later corrected: apart;
- ``ins-qualified-later``: a person's qualified record, then a homonym's unqualified record
  with the same traits, later qualified with the homonym's own INS: apart;
- ``overlay``: a person's record, then an A31 on the same IPP carrying a homonym's birth date
  and another first given name (an identity collision): the update is held, not applied.

Command line: ``python -m adapters.evaluation.sequences --persons 5000`` prints how many
sequences of each scenario the population gives; ``tests/unit/test_safety_sequences.py``
replays them through the identity use cases.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from random import Random

from adapters.evaluation.population import SourceRow, generate_population
from adapters.evaluation.tables import INS_AUTHORITY
from mpi.identity import RecordData

__all__ = ["Step", "SafetySequence", "SCENARIOS", "safety_sequences", "record_data", "main"]

SCENARIOS = ("twin-later", "second-given-name", "correction-after-link",
             "ins-qualified-later", "overlay")
_ESTABLISHMENTS = ("CHRU", "ICL", "MRUN", "CCEG")


@dataclass(frozen=True)
class Step:
    """One message: ``event`` A28 (a new record) or A31 (an update) of ``row``'s record."""

    event: str
    row: SourceRow


@dataclass(frozen=True)
class SafetySequence:
    """Messages to send in order, and the pairs of records (authority, local id) that must end
    in different persons; ``held`` names a record whose last update must be held for review
    (its given names stay ``held_given_names``)."""

    scenario: str
    steps: tuple[Step, ...]
    apart: tuple[tuple[tuple[str, str], tuple[str, str]], ...]
    held: tuple[str, str] | None = None
    held_given_names: tuple[str, ...] = ()


def record_data(row: SourceRow) -> RecordData:
    """What an A28/A31 of ``row`` says, as the feed hands it to the identity use cases."""
    from mpi.model import Identifier

    demographics = {
        "birth_family_name": row.birth_family_name, "used_family_name": row.used_family_name,
        "given_names": row.given_names, "birth_date": row.birth_date, "sex": row.sex,
        "birthplace": row.birthplace, "street": row.street, "city": row.city,
        "postcode": row.postcode, "phone": row.phone,
    }
    ins = Identifier(INS_AUTHORITY, row.ins) if row.qualified and row.ins else None
    return RecordData(Identifier(row.authority, row.local_id), demographics, ins,
                      row.reliability)


def _key(row: SourceRow) -> tuple[str, str]:
    return row.authority, row.local_id


def _clean(row: SourceRow) -> bool:
    """A record without data-entry errors, with given names and a full birth date."""
    return not row.errors and bool(row.given_names) and row.birth_date is not None and (
        row.birth_family_name is not None)


class _Builder:
    def __init__(self, rows: Sequence[SourceRow], seed: int) -> None:
        self.rng = Random(seed)
        self.counter = 0
        by_person: dict[str, list[SourceRow]] = defaultdict(list)
        for row in rows:
            by_person[row.person_key].append(row)
        self.persons = by_person
        twins: dict[tuple[str | None, date | None], list[str]] = defaultdict(list)
        homonyms: dict[tuple[str | None, str, int], list[str]] = defaultdict(list)
        for key, person_rows in sorted(by_person.items()):
            first = next((r for r in person_rows if _clean(r)), None)
            if first is None:
                continue
            if first.scenario == "twin":
                twins[(first.birth_family_name, first.birth_date)].append(key)
            if first.scenario in ("plain", "homonym") and first.birth_date is not None:
                homonyms[(first.birth_family_name, first.given_names[0],
                          first.birth_date.year)].append(key)
        self.twin_pairs = [tuple(v[:2]) for v in twins.values() if len(v) >= 2]
        self.homonym_pairs = [tuple(v[:2]) for v in homonyms.values() if len(v) >= 2]

    def row(self, person: str, authority: str, **changes: object) -> SourceRow:
        """A fresh record of ``person`` at ``authority``: its clean traits, a new IPP."""
        base = next(r for r in self.persons[person] if _clean(r))
        self.counter += 1
        values: dict[str, object] = dict(authority=authority,
                                         local_id=f"SEQ{self.counter:06d}")
        values.update(changes)
        return dataclasses.replace(base, **values)  # type: ignore[arg-type]

    def sites(self, count: int) -> list[str]:
        return self.rng.sample(_ESTABLISHMENTS, count)

    # -- the scenarios ---------------------------------------------------------------------

    def twin_later(self, first: str, sister: str) -> SafetySequence:
        a, b, c = self.sites(3)
        twin = self.row(first, a, ins=None, reliability=("PROV",))
        bridge = self.row(sister, b, given_names=(), ins=None, reliability=("PROV",))
        own = self.row(sister, c, ins=None, reliability=("PROV",))
        completed = dataclasses.replace(bridge, given_names=own.given_names)
        return SafetySequence("twin-later", (
            Step("A28", twin), Step("A28", bridge), Step("A28", own), Step("A31", completed)),
            ((_key(twin), _key(own)), (_key(twin), _key(bridge))))

    def second_given_name(self, first: str, sister: str) -> SafetySequence:
        a, b = self.sites(2)
        twin = self.row(first, a, ins=None, reliability=("PROV",))
        own = self.row(sister, b, ins=None, reliability=("PROV",))
        borrowed = dataclasses.replace(own, given_names=twin.given_names[:1])
        full = dataclasses.replace(own, given_names=own.given_names[:1] + twin.given_names[:1])
        return SafetySequence("second-given-name", (
            Step("A28", twin), Step("A28", borrowed), Step("A31", full)),
            ((_key(twin), _key(own)),))

    def correction_after_link(self, first: str, other: str) -> SafetySequence:
        a, b = self.sites(2)
        one = self.row(first, a, ins=None, reliability=("PROV",))
        true = self.row(other, b, ins=None, reliability=("PROV",))
        if true.birth_date == one.birth_date:
            true = dataclasses.replace(true, birth_date=date(true.birth_date.year - 1, 2, 3)
                                       if true.birth_date else None)
        typed = dataclasses.replace(true, birth_date=one.birth_date, phone=one.phone,
                                    postcode=one.postcode, birthplace=one.birthplace)
        return SafetySequence("correction-after-link", (
            Step("A28", one), Step("A28", typed), Step("A31", true)),
            ((_key(one), _key(true)),))

    def ins_qualified_later(self, first: str, other: str) -> SafetySequence:
        a, b = self.sites(2)
        one = self.row(first, a)
        one = dataclasses.replace(one, ins=one.ins or _nir(self.rng, one.sex),
                                  reliability=("VALI",))
        other_row = self.row(other, b)
        other_ins = other_row.ins or _nir(self.rng, other_row.sex)
        if other_ins == one.ins:
            other_ins = _nir(self.rng, other_row.sex)
        looks_alike = dataclasses.replace(
            one, authority=other_row.authority, local_id=other_row.local_id, ins=None,
            reliability=("PROV",))
        qualified = dataclasses.replace(looks_alike, ins=other_ins, reliability=("VALI",))
        return SafetySequence("ins-qualified-later", (
            Step("A28", one), Step("A28", looks_alike), Step("A31", qualified)),
            ((_key(one), _key(qualified)),))

    def overlay(self, first: str, other: str) -> SafetySequence:
        (a,) = self.sites(1)
        one = self.row(first, a, ins=None, reliability=("PROV",))
        them = self.row(other, a, ins=None, reliability=("PROV",))
        birth = them.birth_date if them.birth_date != one.birth_date else (
            date(one.birth_date.year - 1, 2, 3) if one.birth_date else None)
        given = them.given_names if them.given_names[:1] != one.given_names[:1] else (
            "AUGUSTIN",) if one.sex == "M" else ("BERENICE",)
        overwritten = dataclasses.replace(one, birth_date=birth, given_names=given,
                                          sex=them.sex)
        return SafetySequence("overlay", (Step("A28", one), Step("A31", overwritten)), (),
                              held=_key(one), held_given_names=one.given_names)


def _nir(rng: Random, sex: str | None) -> str:
    from mpi.normalize import nir_key

    body = f"{'2' if sex == 'F' else '1'}{rng.randint(0, 99):02d}{rng.randint(1, 12):02d}54" \
           f"{rng.randint(100, 999):03d}{rng.randint(1, 999):03d}"
    return f"{body}{nir_key(body):02d}"


def safety_sequences(rows: Sequence[SourceRow], seed: int = 2026,
                     per_scenario: int = 20) -> list[SafetySequence]:
    """Up to ``per_scenario`` sequences of each scenario from the persons of ``rows``
    (twins for the first two, homonyms for the others), the same for a seed."""
    builder = _Builder(rows, seed)
    makers: list[tuple[Callable[[str, str], SafetySequence], list[tuple[str, ...]]]] = [
        (builder.twin_later, builder.twin_pairs),
        (builder.second_given_name, builder.twin_pairs),
        (builder.correction_after_link, builder.homonym_pairs),
        (builder.ins_qualified_later, builder.homonym_pairs),
        (builder.overlay, builder.homonym_pairs),
    ]
    found = []
    for make, pairs in makers:
        for first, second in pairs[:per_scenario]:
            found.append(make(first, second))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Print how many sequences of each scenario the population gives."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--per-scenario", type=int, default=20)
    args = parser.parse_args(argv)
    sequences = safety_sequences(generate_population(args.persons, args.seed), args.seed,
                                 args.per_scenario)
    counts: dict[str, int] = defaultdict(int)
    for sequence in sequences:
        counts[sequence.scenario] += 1
    for scenario in SCENARIOS:
        print(f"{scenario}: {counts[scenario]} sequences")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
