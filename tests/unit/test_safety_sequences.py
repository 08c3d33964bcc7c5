"""The population's safety sequences (adapters.evaluation.sequences) replayed through the
identity use cases with the real matcher: whatever arrives later or is corrected after a link,
the records of two persons end apart, and an overlay is held."""

from __future__ import annotations

from collections import Counter

import pytest

from adapters.evaluation.population import generate_population
from adapters.evaluation.sequences import (
    SCENARIOS,
    SafetySequence,
    record_data,
    safety_sequences,
)
from mpi.identity import Actor, RegisterRecord
from mpi.model import ReviewKind
from tests.identity_env import IdentityEnv

SEQUENCES = safety_sequences(generate_population(3000, seed=7), seed=7, per_scenario=8)


def replay(sequence: SafetySequence) -> tuple[IdentityEnv, list[set[int | None]]]:
    """The index after the sequence, and after each step the persons of its apart pairs."""
    env = IdentityEnv()
    along: list[set[int | None]] = []
    for step in sequence.steps:
        row = step.row
        env.run("register", RegisterRecord(record_data(row)),
                Actor(f"hl7:{row.authority}", row.authority))
        along.append({env.person(*a) == env.person(*b) for a, b in sequence.apart
                      if env.person(*a) is not None and env.person(*b) is not None})
    return env, along


def test_the_population_gives_every_scenario() -> None:
    counts = Counter(sequence.scenario for sequence in SEQUENCES)
    assert set(counts) == set(SCENARIOS)


@pytest.mark.parametrize("sequence", SEQUENCES, ids=lambda s: s.scenario)
def test_two_persons_end_apart_whatever_came_later(sequence: SafetySequence) -> None:
    env, _ = replay(sequence)
    for first, second in sequence.apart:
        assert env.person(*first) != env.person(*second), (first, second)
    held: dict[int, set[str]] = {}
    for record in env.store.records.values():
        if record.is_active and record.qualified_ins is not None:
            held.setdefault(env.store.links[record.id].person_id, set()).add(
                str(record.qualified_ins))
    assert all(len(ins) == 1 for ins in held.values())
    if sequence.held is not None:
        assert env.record(*sequence.held).demographics.given_names == tuple(
            sequence.held_given_names)
        assert env.open_tasks(ReviewKind.COLLISION)


def test_the_sequences_make_links_that_later_changes_must_undo() -> None:
    # Not vacuous: in most sequences a wrong link is made first, then undone by a later step.
    undone = Counter()
    for sequence in SEQUENCES:
        if sequence.scenario in ("correction-after-link", "ins-qualified-later",
                                 "second-given-name", "twin-later"):
            _, along = replay(sequence)
            if any(True in linked for linked in along[:-1]):
                undone[sequence.scenario] += 1
    assert undone["correction-after-link"] >= 4
    assert undone["ins-qualified-later"] >= 4
    assert undone["twin-later"] + undone["second-given-name"] >= 4
