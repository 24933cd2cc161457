"""Finding the numbers a text states, for the leak filter and the offline abstraction. Stdlib only.

A number inside an identifier (`result1`, `step_2`) is not a number: the meta-thought's variable
names may carry digits. A question states numbers as numerals (`$1,200`, `3.5`, `20%`, `1/4`) and as
words (`twice`, `half`, `a dozen`, `three`); both count as "in the question".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["NumberSpan", "find_numbers", "question_numbers", "strip_step_enumerators"]

# Not preceded by a letter, digit, underscore or dot: `result1` and the `5` of `2.5` are no match.
_NUMERAL = re.compile(r"(?<![A-Za-z_\d.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|(?<![A-Za-z_\d.])\.\d+")
_FRACTION = re.compile(r"(?<![A-Za-z_\d.])(\d+)\s*/\s*(\d+)(?![\d.])")
_PERCENT = re.compile(r"(?<![A-Za-z_\d.])(\d+(?:\.\d+)?)\s*(?:%|percent\b)", re.IGNORECASE)
_ENUMERATOR = re.compile(r"^(\s*)(?:step\s*)?\d+\s*[.):]\s+", re.IGNORECASE | re.MULTILINE)
_WORD = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)?")

# Number words and what they state. "half" states both 2 (divide by it) and 0.5 (multiply by it).
_WORD_VALUES: dict[str, tuple[Fraction, ...]] = {
    "zero": (Fraction(0),),
    "one": (Fraction(1),),
    "two": (Fraction(2),),
    "three": (Fraction(3),),
    "four": (Fraction(4),),
    "five": (Fraction(5),),
    "six": (Fraction(6),),
    "seven": (Fraction(7),),
    "eight": (Fraction(8),),
    "nine": (Fraction(9),),
    "ten": (Fraction(10),),
    "eleven": (Fraction(11),),
    "twelve": (Fraction(12),),
    "thirteen": (Fraction(13),),
    "fourteen": (Fraction(14),),
    "fifteen": (Fraction(15),),
    "sixteen": (Fraction(16),),
    "seventeen": (Fraction(17),),
    "eighteen": (Fraction(18),),
    "nineteen": (Fraction(19),),
    "twenty": (Fraction(20),),
    "thirty": (Fraction(30),),
    "forty": (Fraction(40),),
    "fifty": (Fraction(50),),
    "sixty": (Fraction(60),),
    "seventy": (Fraction(70),),
    "eighty": (Fraction(80),),
    "ninety": (Fraction(90),),
    "hundred": (Fraction(100),),
    "thousand": (Fraction(1000),),
    "million": (Fraction(10**6),),
    "once": (Fraction(1),),
    "twice": (Fraction(2),),
    "double": (Fraction(2),),
    "thrice": (Fraction(3),),
    "triple": (Fraction(3),),
    "half": (Fraction(2), Fraction(1, 2)),
    "halves": (Fraction(2), Fraction(1, 2)),
    "third": (Fraction(3), Fraction(1, 3)),
    "thirds": (Fraction(3), Fraction(1, 3)),
    "quarter": (Fraction(4), Fraction(1, 4)),
    "quarters": (Fraction(4), Fraction(1, 4)),
    "fourth": (Fraction(4), Fraction(1, 4)),
    "fifth": (Fraction(5), Fraction(1, 5)),
    "dozen": (Fraction(12),),
    "dozens": (Fraction(12),),
    "pair": (Fraction(2),),
    "pairs": (Fraction(2),),
    "couple": (Fraction(2),),
    "single": (Fraction(1),),
    "both": (Fraction(2),),
}


@dataclass(frozen=True)
class NumberSpan:
    """A numeral found in a text: its exact value and where it is."""

    value: Fraction
    start: int
    end: int
    text: str


def find_numbers(text: str) -> list[NumberSpan]:
    """Every numeral in `text` (thousands separators allowed), left to right, exact values."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    spans = []
    for m in _NUMERAL.finditer(text):
        raw = m.group(0)
        spans.append(NumberSpan(Fraction(raw.replace(",", "")), m.start(), m.end(), raw))
    return spans


def question_numbers(question: str) -> set[Fraction]:
    """The values a question states: numerals, percents (p and p/100), fractions (a, b and a/b), number words."""
    values = {span.value for span in find_numbers(question)}
    for m in _PERCENT.finditer(question):
        values.add(Fraction(m.group(1)) / 100)
    for m in _FRACTION.finditer(question):
        if int(m.group(2)) != 0:
            values.add(Fraction(int(m.group(1)), int(m.group(2))))
    for m in _WORD.finditer(question):
        for part in m.group(0).lower().split("-"):
            values.update(_WORD_VALUES.get(part, ()))
    return values


def strip_step_enumerators(text: str) -> str:
    """Remove the `1.` / `Step 2:` at line starts: step numbering is not a stated quantity."""
    return _ENUMERATOR.sub(r"\1", text)
