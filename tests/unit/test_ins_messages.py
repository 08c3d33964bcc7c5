"""What an integration engineer reads when an INS is refused: which part is wrong."""

from __future__ import annotations

from mpi.normalize import nir_key, nir_problem

BODY = "2800154395007"
GOOD = f"{BODY}{nir_key(BODY):02d}"


def test_a_well_formed_ins_has_no_problem() -> None:
    assert nir_problem(GOOD) is None
    assert nir_problem("1800354395012" + f"{nir_key('1800354395012'):02d}") is None


def test_fifteen_characters_with_a_wrong_key_say_the_key_is_wrong() -> None:
    wrong = BODY + f"{(nir_key(BODY) % 96) + 1:02d}"
    message = nir_problem(wrong)
    assert message is not None
    assert "key" in message and "wrong" in message and "characters;" not in message


def test_a_wrong_length_says_how_many_characters() -> None:
    message = nir_problem(GOOD[:14])
    assert message == f"INS {GOOD[:14]!r} has 14 characters; an INS has 15 (13 and a 2-digit key)"


def test_letters_in_the_body_or_the_key_are_named() -> None:
    assert "digits" in (nir_problem("28001543950X7" + "12") or "")
    assert "not two digits" in (nir_problem(BODY + "1A") or "")
