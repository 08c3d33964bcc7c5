"""Normalization of identity traits: pure functions, no I/O."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["fold", "search_key", "nir_key", "is_valid_nir"]

_SEPARATORS = re.compile(r"[\s\-'’`´.,]+")


def fold(text: str | None) -> str:
    """Upper case without accents, with ligatures expanded and separators made single spaces.

    ``fold("Lefèvre-d'Œuf ") == "LEFEVRE D OEUF"``. Empty or None gives "".
    """
    if not text:
        return ""
    text = text.replace("œ", "oe").replace("Œ", "OE").replace("æ", "ae").replace("Æ", "AE")
    text = text.replace("ß", "ss")
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _SEPARATORS.sub(" ", stripped).strip().upper()


def search_key(text: str | None) -> str:
    """A name as searched: folded, and without separators (MARTIN-DUPONT == MARTIN DUPONT)."""
    return fold(text).replace(" ", "")


def nir_key(first13: str) -> int:
    """The two-digit control key of a NIR: 97 - (N mod 97), with Corsica's 2A/2B as 19/18.

    Raises ValueError when the 13 characters are not a NIR body.
    """
    body = first13.upper()
    if len(body) != 13:
        raise ValueError("a NIR body has 13 characters")
    if body[5:7] == "2A":
        body = body[:5] + "19" + body[7:]
    elif body[5:7] == "2B":
        body = body[:5] + "18" + body[7:]
    if not body.isdigit():
        raise ValueError("a NIR body is made of digits (2A/2B allowed for Corsica)")
    return 97 - int(body) % 97


def is_valid_nir(value: str) -> bool:
    """True when ``value`` is 13 characters plus the right 2-digit key."""
    if len(value) != 15 or not value[13:].isdigit():
        return False
    try:
        return nir_key(value[:13]) == int(value[13:])
    except ValueError:
        return False
