"""R.1112-7: the worked examples of LIFECYCLE.md, and the rule's invariants on any dates."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpi.archive.retention import RetentionPolicy, add_years, retention_end


@pytest.mark.parametrize(("birth", "last_visit", "death", "end", "basis"), [
    (date(1950, 3, 10), date(2010, 6, 1), None, date(2030, 6, 1), "last-visit+20y"),
    (date(2008, 5, 20), date(2010, 1, 15), None, date(2036, 5, 20), "28th-birthday"),
    (date(1940, 1, 1), date(2010, 6, 1), date(2012, 2, 1), date(2022, 2, 1), "death+10y"),
    (date(1940, 1, 1), date(2010, 6, 1), date(2022, 1, 1), date(2030, 6, 1), "last-visit+20y"),
    (date(2005, 1, 1), date(2006, 1, 1), date(2007, 1, 1), date(2017, 1, 1), "death+10y"),
])
def test_the_worked_examples_of_the_lifecycle_design(birth: date, last_visit: date,
                                                     death: date | None, end: date,
                                                     basis: str) -> None:
    found = retention_end(last_visit, birth, death)
    assert (found.expires_on, found.basis) == (end, basis)


def test_a_29_february_plus_years_never_ends_a_day_early() -> None:
    assert add_years(date(2004, 2, 29), 20) == date(2024, 2, 29)
    assert add_years(date(2004, 2, 29), 21) == date(2025, 3, 1)


def test_a_death_recorded_before_the_last_visit_is_not_applied() -> None:
    found = retention_end(date(2010, 6, 1), date(1940, 1, 1), date(2009, 1, 1))
    assert (found.expires_on, found.basis) == (date(2030, 6, 1), "last-visit+20y")


def test_an_establishment_may_keep_its_records_longer_but_never_shorter() -> None:
    policy = RetentionPolicy({"ICL": 30})
    assert (policy.years_for("ICL"), policy.years_for("CHRU")) == (30, 20)
    found = retention_end(date(2010, 6, 1), date(1950, 1, 1), None, policy.years_for("ICL"))
    assert (found.expires_on, found.basis) == (date(2040, 6, 1), "last-visit+30y")
    with pytest.raises(ValueError):
        RetentionPolicy({"CHRU": 10})


days = st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31))


@given(birth=days, visit=days, death=st.none() | days)
def test_the_end_follows_the_rule_whatever_the_dates(birth: date, visit: date,
                                                     death: date | None) -> None:
    found = retention_end(visit, birth, death)
    death_applies = death is not None and visit <= death < add_years(visit, 10)
    if death_applies:
        assert death is not None
        assert (found.expires_on, found.basis) == (add_years(death, 10), "death+10y")
    else:
        # Never before the last visit + 20 years, never before the 28th birthday.
        assert found.expires_on >= add_years(visit, 20)
        assert found.expires_on >= add_years(birth, 28)
        assert found.expires_on == max(add_years(visit, 20), add_years(birth, 28))
    assert found.expires_on > visit


@given(birth=days, visit=days, later=st.integers(min_value=1, max_value=3650))
def test_a_later_visit_never_shortens_the_retention_of_the_living(birth: date, visit: date,
                                                                  later: int) -> None:
    from datetime import timedelta

    if visit + timedelta(days=later) > date(2100, 12, 31):
        return
    first = retention_end(visit, birth)
    second = retention_end(visit + timedelta(days=later), birth)
    assert second.expires_on >= first.expires_on
