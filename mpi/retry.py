"""The one way to run a unit of work again when a concurrent transaction got in the way.

A use case runs in one transaction; when the database refuses it for a conflict (a deadlock,
a lost race on a unique key, a version that moved), the whole unit of work is rolled back and
may simply be run again from the start: it reads the new state and decides anew.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from mpi.errors import ConcurrencyError

__all__ = ["ATTEMPTS", "retry_on_conflict"]

ATTEMPTS = 5  # conflicts are rare and short: five tries end every race seen in the drills

T = TypeVar("T")


def retry_on_conflict(work: Callable[[], T], *, attempts: int = ATTEMPTS) -> T:
    """Run ``work`` (which opens, fills and commits its own unit of work) until it does not
    raise ConcurrencyError, at most ``attempts`` times. Raises the last ConcurrencyError when
    every attempt met a conflict; any other error propagates at once."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(attempts):
        try:
            return work()
        except ConcurrencyError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")
