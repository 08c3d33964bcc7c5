"""What keeps the feed from linking a record automatically, however high its score: the vetoes.

Only strong and unambiguous evidence links automatically: a false merge shows one patient's
images in another's record, a missed link is a duplicate the review queue still catches. A
veto holding for the best candidate sends the record to review at most: look-alike twins
(judged against every record of the candidate person, so that no third record bridges them),
newborns registered under a placeholder (BB1, NOUVEAU-NE, JUMEAU...), birth dates that differ beyond a typing error (a mother and her newborn share a name, an
address and a phone) or that are known only to the year (the 01/01 convention matches anybody
born that year), and a person that already has a record of the same establishment (two
identifiers of one source are two patients until that source merges them with an A40, or
identity vigilance decides).

Each veto's name is the key of its flag in the evidence of decisions, review tasks and
``$match`` candidates; stored review tasks are read by those keys, so the names stay.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from jellyfish import jaro_winkler_similarity

from mpi.matching.comparisons import CLOSE, EXACT, FAR, NAME_SIMILARITY
from mpi.matching.keyboard import keyboard_slip
from mpi.matching.profile import MatchProfile
from mpi.normalize import birth_date_relation, given_names_agree_any_order

__all__ = ["Candidacy", "Veto", "VETOES", "is_newborn_placeholder", "looks_like_twins",
           "unknown_day_corroborated", "vetoes_holding", "without_source"]


@dataclass(frozen=True)
class Candidacy:
    """What the vetoes are judged on: a record against one record of a candidate person."""

    levels: Mapping[str, str]  # the comparison of the two profiles (``compare``)
    record: MatchProfile
    candidate: MatchProfile
    same_source: bool  # the person already has a record of the record's establishment


@dataclass(frozen=True)
class Veto:
    """One reason never to link automatically. ``applies_without_source`` is False for a
    veto that only a record of an establishment can meet (``$match`` has no source)."""

    name: str
    explanation: str
    applies_without_source: bool
    holds: Callable[[Candidacy], bool]


def looks_like_twins(levels: Mapping[str, str], a: MatchProfile, b: MatchProfile) -> bool:
    """Same family name and birth date, different first given names (not a typo, not the same
    names in another order): twins until a person says otherwise; never linked automatically.
    Louise against Yasmine Louise is twins too: sisters often carry each other's names; so is
    Jean against Jeanne when the sexes differ (a brother and a sister, not a typo); and so are
    entirely different first given names under a family name one typo apart. A first given
    name struck with a neighbouring key, two letters swapped or a doubled letter (JEAN typed
    JRAN, ANNE typed ANE) is a typing slip, not another name."""
    if levels["family_name"] not in (EXACT, CLOSE) or levels["birth_date"] != EXACT:
        return False
    if levels["given_name"] == FAR:
        return True
    if levels["family_name"] != EXACT:
        return False
    if (levels["sex"] == FAR and a.first_given and b.first_given
            and a.first_given != b.first_given):
        return True
    return (
        levels["given_name"] == CLOSE
        and bool(a.first_given) and bool(b.first_given)
        and not given_names_agree_any_order(a.given_names, b.given_names)
        and jaro_winkler_similarity(a.first_given, b.first_given) < NAME_SIMILARITY
        and not keyboard_slip(a.first_given, b.first_given, neighbour_insertions=False)
    )


# What maternities write before a newborn is named: BB, BB1, BEBE, NOUVEAU-NE, NN, JUMEAU 2,
# JUMELLE..., as a family name part or as the given name. Twins registered so differ only by a
# digit, and a newborn so registered is not told apart from a sibling born the same day.
_NEWBORN_MARK = re.compile(r"(BB|BEBE|NN|NNE|NOUVEAU|NOUVEAUNE|NOUVNE|JUMEAU|JUMEAUX|JUMELLE"
                           r"|JUMELLES)[0-9]*|J[0-9]+")


def is_newborn_placeholder(profile: MatchProfile) -> bool:
    """Whether a record names a newborn by a placeholder rather than a given name."""
    parts = [*profile.birth_name_parts[:1], *profile.used_name_parts[:1]]
    parts += [name.split("-")[0] for name in profile.given_names[:1]]
    return any(_NEWBORN_MARK.fullmatch(part) for part in parts)


def _newborn_placeholder(c: Candidacy) -> bool:
    return is_newborn_placeholder(c.record) or is_newborn_placeholder(c.candidate)


def _twins(c: Candidacy) -> bool:
    return looks_like_twins(c.levels, c.record, c.candidate)


def _same_source(c: Candidacy) -> bool:
    return c.same_source


def _other_birth_date(c: Candidacy) -> bool:
    return c.levels["birth_date"] == FAR


def _partial_birth_date(c: Candidacy) -> bool:
    # A close level, told apart from a typo or a swap only when the dates are close at all.
    return (c.levels["birth_date"] == CLOSE
            and birth_date_relation(c.record.birth_date, c.candidate.birth_date)
            == "unknown_day"
            and not unknown_day_corroborated(c.levels))


def unknown_day_corroborated(levels: Mapping[str, str]) -> bool:
    """Whether a birth date known only to the year (or month) is made up for by everything
    else: the same birth name, first given name (the others not disagreeing) and sex, the
    same phone number, and the same commune of birth or postcode. A namesake born the same
    year does not share all of these; a father and his son of one name are not born the
    same year."""
    return (levels["family_name"] == EXACT and levels["given_name"] == EXACT
            and levels["sex"] == EXACT and levels["phone"] == EXACT
            and EXACT in (levels["birthplace"], levels["postcode"]))


# In the order of the flags in the evidence.
VETOES: tuple[Veto, ...] = (
    Veto("twins", "look-alike twins: same family name and birth date, other first given names",
         True, _twins),
    Veto("same_source", "the person already has a record of this establishment: two patients "
         "until it merges them (A40) or identity vigilance decides", False, _same_source),
    Veto("other_birth_date", "the birth dates differ beyond a typing error (a mother and her "
         "newborn share a name, an address and a phone)", True, _other_birth_date),
    Veto("partial_birth_date", "a birth date known only to the year or month (01/01 matches "
         "anybody born that year), unless the names, sex, phone and birthplace or postcode "
         "all agree", True, _partial_birth_date),
    Veto("newborn_placeholder", "a newborn registered under a placeholder (BB1, NOUVEAU-NE, "
         "JUMEAU...): twins and siblings are not told apart", True, _newborn_placeholder),
)

_WITHOUT_SOURCE = frozenset(veto.name for veto in VETOES if veto.applies_without_source)


def vetoes_holding(candidacy: Candidacy) -> dict[str, bool]:
    """Each veto's name and whether it holds for the candidacy, in :data:`VETOES` order: the
    flags of the evidence. Raises KeyError when ``levels`` lacks a compared field."""
    return {veto.name: veto.holds(candidacy) for veto in VETOES}


def without_source(flags: Mapping[str, bool]) -> dict[str, bool]:
    """The flags of the vetoes that apply to a record without a source (``$match``)."""
    return {name: flag for name, flag in flags.items() if name in _WITHOUT_SOURCE}
