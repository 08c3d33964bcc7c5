"""French phonetic code of a family name: PHONEX, with five documented extensions.

The encoder follows PHONEX, the French phonetic algorithm of Claude Bouvier, as described
step by step in Frédéric Brouard's article on phonetic search algorithms ("Les algorithmes
phonétiques", SQLPro). PHONEX keeps the vowel sounds that SOUNDEX-style codes throw away, so
its codes separate common French surnames much better than a four-letter Soundex.

The input is first folded (``mpi.normalize.fold``: upper case, accents removed, ligatures
expanded) and everything but the letters A-Z is removed, so separators, digits and letters of
other scripts do not take part in the code. The letters then go through the extensions and
the PHONEX steps below.

Extensions, added because PHONEX alone tells the spellings in brackets apart:

* E1 — a final ``-IER`` is read ``-IE``: the R of the ending is silent (MEUNIER / MEUNIE).
* E2 — a final mute E is dropped (FAURE / FAUR, MICHEL / MICHELLE, MEUNIE / MEUNI). It is
  mute when the name has three letters or more and the letter before it is not A, E or O
  (NOE, CHLOE, JOSEE keep theirs, which folding took the accent from). The E is dropped after
  step 14 rather than before step 1, so that it still does its work in PHONEX: ROSE keeps the
  Z sound of its S (step 9) and MARTINE is not read as the nasal MARTIN (step 8).
* E3 — ``CH`` before R or L is the sound K, as in names of Greek origin
  (CHRISTOPHE / CRISTOPHE, CHLOE / KLOE).
* E4 — a final ``-AULT`` is read ``-AUT``: its L is silent (RENAULT / RENAUD, PERRAULT).
* E5 — NN and MM are written N and M. PHONEX squeezes doubled letters only at step 15, after
  step 8 has read ANN as the nasal AN followed by N, so that a doubled N or M alone would
  separate ZIMMERMANN from ZIMERMAN, or ANNE from ANE, ETIENNE from ETIENE.

E1, E3, E4 and E5 rewrite the letters before PHONEX step 1.

PHONEX (the step numbers of the published description):

1. Y becomes I.
2. H is removed unless it follows C, S or P.
3. PH becomes F.
4. G before AN, AM, AIN, AIM is hard: it becomes K.
5. AIN, EIN, AIM, EIM followed by a vowel become YN (Y stands for the sound "é" from here).
6. EAU becomes O, OUA becomes 2, EIN, AIN, EIM, AIM become 4.
7. AI and EI become Y; ER, ESS, ET become YR, YSS, YT (the accented letters of the published
   step are gone after folding, so É, È, Ê need no rule).
8. AN, AM, EN, EM become 1 and IN becomes 4, unless followed by a vowel or by a sound 1-4.
9. S between two vowels or sounds 1-4 becomes Z.
10. OE and EU become E, AU becomes O, OI and OY become 2, OU becomes 3.
11. SCH, CH, SH become 5, SS and SC become S (SCH is replaced before CH, where the published
    list names CH first, so that SCH does not end up as S5).
12. C before E or I becomes S.
13. QU, GU, C, Q become K (longest first); GA, GO, GY become KA, KO, KY.
14. A becomes O, D and P become T, J becomes G, B and V become F, M becomes N.
15. Runs of the same symbol are reduced to one.
16. A final T or X is removed.

The code is the resulting string over the 22 PHONEX symbols (1-5, E F G H I K L N O R S T U W
X Y Z). The published algorithm then reads that string as a base-22 fraction; the string is kept
instead because it compares the same way without the loss of precision of a float on long names.
"""

from __future__ import annotations

import re
from functools import lru_cache
from itertools import groupby

from mpi.normalize import family_name_key, fold

__all__ = ["french_phonetic", "phonetic_key"]

_NOT_LETTER = re.compile(r"[^A-Z]+")

_Rule = tuple[re.Pattern[str], str]


def _rules(*pairs: tuple[str, str]) -> tuple[_Rule, ...]:
    """Returns the (compiled pattern, replacement) pairs, in the order given."""
    return tuple((re.compile(pattern), replacement) for pattern, replacement in pairs)


_EXTENSIONS = _rules(
    (r"IER$", "IE"),  # E1
    (r"CH(?=[RL])", "K"),  # E3
    (r"AULT$", "AUT"),  # E4
    (r"NN", "N"),  # E5
    (r"MM", "M"),
)
# E2: at least two letters before the final E, the one just before it not A, E or O.
_MUTE_FINAL_E = re.compile(r"(?<=[A-Z][B-DF-NP-Z])E$")

_VOWEL = "AEIOU"
_VOWEL_OR_SOUND = "AEIOU1234"

# Steps 1 to 14 as ordered rewrite rules; inside a step the longer groups come first so that
# a shorter rule cannot break a group a longer one is meant to rewrite (SCH before CH).
_PHONEX = _rules(
    (r"Y", "I"),  # 1
    (r"(?<![CSP])H", ""),  # 2
    (r"PH", "F"),  # 3
    (r"G(?=AI?[NM])", "K"),  # 4
    (rf"[AE]I[NM](?=[{_VOWEL}])", "YN"),  # 5
    (r"EAU", "O"),  # 6
    (r"OUA", "2"),
    (r"[AE]I[NM]", "4"),
    (r"[AE]I", "Y"),  # 7
    (r"ER", "YR"),
    (r"ESS", "YSS"),
    (r"ET", "YT"),
    (rf"[AE][NM](?![{_VOWEL_OR_SOUND}])", "1"),  # 8
    (rf"IN(?![{_VOWEL_OR_SOUND}])", "4"),
    (rf"(?<=[{_VOWEL_OR_SOUND}])S(?=[{_VOWEL_OR_SOUND}])", "Z"),  # 9
    (r"OE", "E"),  # 10
    (r"EU", "E"),
    (r"AU", "O"),
    (r"O[IY]", "2"),
    (r"OU", "3"),
    (r"SCH", "5"),  # 11
    (r"[CS]H", "5"),
    (r"S[SC]", "S"),
    (r"C(?=[EI])", "S"),  # 12
    (r"[QG]U", "K"),  # 13
    (r"[CQ]", "K"),
    (r"G(?=[AOY])", "K"),
)

_STEP_14 = str.maketrans("ADPJBVM", "OTTGFFN")


def _apply(rules: tuple[_Rule, ...], text: str) -> str:
    """Returns ``text`` after every rule, applied in turn to the whole string."""
    for pattern, replacement in rules:
        text = pattern.sub(replacement, text)
    return text


def _squeeze(text: str) -> str:
    """Returns ``text`` with every run of one symbol reduced to a single symbol (step 15)."""
    return "".join(symbol for symbol, _ in groupby(text))


def _drop_final_t_or_x(text: str) -> str:
    """Returns ``text`` without its last symbol when that is T or X (step 16)."""
    return text[:-1] if text.endswith(("T", "X")) else text


def french_phonetic(name: str | None) -> str:
    """Returns the phonetic code of ``name`` (see the module docstring), "" when it has no letter.

    Never raises: any text is accepted, and characters other than letters are ignored.
    """
    letters = _apply(_EXTENSIONS, _NOT_LETTER.sub("", fold(name)))
    code = _apply(_PHONEX, letters).translate(_STEP_14)
    if _MUTE_FINAL_E.search(letters):
        # No rule of steps 1-14 rewrites an E that ends the name after a letter other than
        # A, E or O, so the code still ends with that E here.
        code = code.removesuffix("E")
    return _drop_final_t_or_x(_squeeze(code))


@lru_cache(maxsize=1 << 16)
def phonetic_key(name: str | None) -> str:
    """Returns the phonetic code of a whole family name, its parts encoded as one word.

    "LE GALL", "LE-GALL" and "LEGALL" get the same code, because separators are removed
    (``family_name_key``) before encoding. Returns "" for None or a name without letters.
    """
    return french_phonetic(family_name_key(name))
