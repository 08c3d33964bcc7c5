"""Typing slips on a French AZERTY keyboard: what a clerk's finger does to a name.

A slip is one of: a key struck for its neighbour (MULLER typed MUPLER), two adjacent letters
swapped (MATRIN), a letter struck twice or not at all where it is doubled (ANE for ANNE), or a
neighbouring key struck with the intended one (MARTZIN). A slip is the typing error a feed
makes; another letter altogether (LOUIS and LOUISE, LEA and LEO) is not one.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["AZERTY_NEIGHBOURS", "are_neighbours", "keyboard_slip"]

_ROWS = ("AZERTYUIOP", "QSDFGHJKLM", "WXCVBN")


def _neighbours() -> dict[str, frozenset[str]]:
    table: dict[str, frozenset[str]] = {}
    for r, row in enumerate(_ROWS):
        for i, char in enumerate(row):
            near = {row[j] for j in (i - 1, i + 1) if 0 <= j < len(row)}
            for other in (r - 1, r + 1):
                if 0 <= other < len(_ROWS):
                    near |= {_ROWS[other][j] for j in (i - 1, i, i + 1)
                             if 0 <= j < len(_ROWS[other])}
            table[char] = frozenset(near)
    return table


#: For each letter, the keys around it on the keyboard.
AZERTY_NEIGHBOURS: dict[str, frozenset[str]] = _neighbours()


def are_neighbours(a: str, b: str) -> bool:
    """Whether two letters are next to each other on the keyboard."""
    return b in AZERTY_NEIGHBOURS.get(a, frozenset())


def _extra_is_a_slip(longer: str, shorter: str, neighbour_insertions: bool) -> bool:
    """``longer`` is ``shorter`` with one letter more: is it struck twice (or, with
    ``neighbour_insertions``, a neighbour of a letter beside it)?"""
    for i in range(len(shorter)):
        if longer[i] != shorter[i]:
            break
    else:
        i = len(shorter)
    if longer[i + 1:] != shorter[i:]:
        return False
    extra = longer[i]
    beside = [longer[j] for j in (i - 1, i + 1) if 0 <= j < len(longer)]
    return any(extra == c or (neighbour_insertions and are_neighbours(extra, c))
               for c in beside)


@lru_cache(maxsize=1 << 16)
def keyboard_slip(a: str, b: str, minimum_length: int = 4,
                  neighbour_insertions: bool = True) -> bool:
    """Whether two folded names (upper case, no accents) differ by exactly one typing slip.
    Names shorter than ``minimum_length`` letters are never said to: among short names a
    slip and another name cannot be told apart. Without ``neighbour_insertions``, a letter
    more or less counts only where it is doubled (ANNE and ANE): LOUNA and LUNA, LOUIS and
    LOUISE are then two names, as they are for twins."""
    if a == b or min(len(a), len(b)) < minimum_length:
        return False
    if len(a) == len(b):
        differ = [i for i in range(len(a)) if a[i] != b[i]]
        if len(differ) == 1:
            return are_neighbours(a[differ[0]], b[differ[0]])
        if len(differ) == 2:
            i, j = differ
            return j == i + 1 and a[i] == b[j] and a[j] == b[i]
        return False
    if abs(len(a) - len(b)) != 1:
        return False
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    return _extra_is_a_slip(longer, shorter, neighbour_insertions)
