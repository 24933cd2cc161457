"""Final-answer extraction and comparison. Stdlib only; regexes compiled once (graders run per rollout).

`extract_answer` finds the answer a completion states; `answers_match` decides whether it equals the
gold answer after normalising the ways numbers get written (1,234 / $5 / 25% / 3/4 / \\frac{3}{4} /
1 1/2 / 5 apples / -2 / 2.50) and, for text answers (TabMWP multi-choice, ASDiv names and times),
after normalising case, spacing, punctuation and an option label such as "(B)".
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

__all__ = [
    "ANSWER_PATTERNS",
    "extract_answer",
    "find_answer",
    "answers_match",
    "parse_number",
    "normalize_text_answer",
]

# --- numbers -----------------------------------------------------------------------------------

_NUM_CORE = r"(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?"
# A whole answer string that is one number, allowing currency, a percent sign and trailing unit words.
_STRICT_NUMBER = re.compile(
    r"""^\s*(?P<sign>[-+−])?\s*(?:\\\$|\$|£|€|¥)?\s*(?P<sign2>[-−])?\s*
    (?:
        (?P<whole>\d+)\s+(?P<mnum>\d+)\s*/\s*(?P<mden>\d+)                      # mixed number 1 1/2
      | (?P<fnum>\d+(?:\.\d+)?)\s*/\s*(?P<fden>\d+(?:\.\d+)?)                   # fraction 3/4
      | \\d?frac\{\s*(?P<tnum>-?\d+(?:\.\d+)?)\s*\}\{\s*(?P<tden>\d+(?:\.\d+)?)\s*\}  # \\frac{3}{4}
      | (?P<num>"""
    + _NUM_CORE
    + r""")
    )
    \s*(?P<pct>\\?%|\s*percent\b)?
    (?:\s*(?P<unit>[A-Za-z][A-Za-z.'’/\-]*(?:\s*\^?\s*[23²³])?(?:\s+[A-Za-z][A-Za-z.'’/\-]*)*))?  # unit words
    \s*[.!]?\s*$""",
    re.VERBOSE,
)
_ANY_NUMBER = re.compile(r"[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?!\.\d))?|[-−]?\.\d+")
# Words that, written as a "unit", actually make a string non-numeric ("3 or 4", "5 and 6").
_NOT_UNITS = frozenset({"or", "and", "to", "r", "remainder", "times", "x", "by", "of", "out"})


def _strict(text: str) -> tuple[float, bool] | None:
    m = _STRICT_NUMBER.match(text)
    if m is None:
        return None
    g = m.group
    unit = g("unit")
    if unit is not None and unit.split(None, 1)[0].strip(".").lower() in _NOT_UNITS:
        return None
    if g("num") is not None:
        value = float(g("num").replace(",", ""))
    elif g("fnum") is not None:
        den = float(g("fden"))
        if den == 0:
            return None
        value = float(g("fnum")) / den
    elif g("tnum") is not None:
        den = float(g("tden"))
        if den == 0:
            return None
        value = float(g("tnum")) / den
    else:
        den = float(g("mden"))
        if den == 0:
            return None
        value = float(g("whole")) + float(g("mnum")) / den
    if g("sign") in ("-", "−") or g("sign2") is not None:
        value = -value
    return value, g("pct") is not None


def parse_number(text: str | float | int | None, *, strict: bool = False) -> float | None:
    """The number an answer string states, or None.

    strict=True accepts only a string that is one number (with currency, %, unit words);
    otherwise the text after the last '=' is tried, then the first number in the string.
    """
    if text is None:
        return None
    if isinstance(text, bool):
        raise TypeError("text: expected str or number, got bool")
    if isinstance(text, int | float):
        return float(text) if math.isfinite(text) else None
    if not isinstance(text, str):
        raise TypeError(f"text: expected str or number, got {type(text).__name__}")
    hit = _strict(text)
    if hit is not None:
        return hit[0]
    if strict:
        return None
    if "=" in text:
        hit = _strict(text.rsplit("=", 1)[1])
        if hit is not None:
            return hit[0]
    m = _ANY_NUMBER.search(text)
    if m is None:
        return None
    hit = _strict(m.group(0))
    return None if hit is None else hit[0]


def _parse_with_percent(text: str) -> tuple[float, bool] | None:
    hit = _strict(text)
    if hit is not None:
        return hit
    value = parse_number(text)
    return None if value is None else (value, False)


# --- text answers -------------------------------------------------------------------------------

_OPTION_LABEL = re.compile(r"^\s*(?:\(?[A-Ha-h]\)|[A-Ha-h][.:])\s+")
_MARKUP = re.compile(r"\\text\{([^{}]*)\}|\*\*|[\"'`“”‘’]|\\")
_SPACES = re.compile(r"\s+")


def normalize_text_answer(text: str) -> str:
    """Lower-case, drop an option label "(B) ", markup, quotes, final punctuation, collapse spaces."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    text = _MARKUP.sub(lambda m: m.group(1) or "", text)
    text = _OPTION_LABEL.sub("", text)
    text = _SPACES.sub(" ", text).strip().rstrip(".!").strip().lower()
    return text


# --- extraction ---------------------------------------------------------------------------------

# Name -> compiled pattern; group 1 is the answer. Each pattern starts at a literal anchor, so the
# scan is a C-speed rfind for the anchor followed by one anchored match (graders run per rollout).
ANSWER_PATTERNS: dict[str, re.Pattern[str]] = {
    "boxed": re.compile(r"\\boxed\s*\{((?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*)\}"),
    # The answer ends at the line end or at a sentence-ending period: one followed by the line end
    # or by a capitalised word, and not closing a title such as "Mrs." ("Mrs. Hilt").
    "answer_is": re.compile(
        r"[Aa]nswer\s*(?:is|:)\s*:?\s*(.+?)\s*"
        r"(?:(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bDr)(?<!\bSt)(?<!\bJr)(?<!\bSr)\.(?=[ \t]*$|\s+[A-Z])|$)",
        re.MULTILINE,
    ),
    "hashes": re.compile(r"####\s*(.+?)\s*$", re.MULTILINE),
}
# name -> (literal the match starts with, characters the match starts before it)
_ANCHORS: dict[str, tuple[str, int]] = {"boxed": ("\\boxed", 0), "answer_is": ("nswer", 1), "hashes": ("####", 0)}
_DEFAULT_ORDER: tuple[str, ...] = ("boxed", "answer_is", "hashes")
_LAST_NUMBER = re.compile(r"\\d?frac\{[^{}]*\}\{[^{}]*\}|[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?")


def _last_match(text: str, pattern: str | re.Pattern[str]) -> re.Match[str] | None:
    """The last match of a named (anchored) or custom pattern whose answer group is not empty."""
    if isinstance(pattern, re.Pattern):
        last: re.Match[str] | None = None
        for m in pattern.finditer(text):
            if m.group(1).strip():
                last = m
        return last
    compiled = ANSWER_PATTERNS.get(pattern)
    if compiled is None:
        raise ValueError(f"patterns: unknown pattern {pattern!r}; expected names from {tuple(ANSWER_PATTERNS)}")
    anchor, back = _ANCHORS[pattern]
    pos = len(text)
    while True:
        pos = text.rfind(anchor, 0, pos)
        if pos < 0:
            return None
        anchored = compiled.match(text, pos - back) if pos >= back else None
        if anchored is not None and anchored.group(1).strip():
            return anchored
        # a later "####"/"answer" may sit inside this match's text; keep looking further left


def find_answer(
    text: str,
    *,
    patterns: Sequence[str | re.Pattern[str]] = _DEFAULT_ORDER,
    last_number_fallback: bool = True,
) -> tuple[str, int, int] | None:
    """(answer string, start, end of the statement that gives it), or None. See extract_answer."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    if isinstance(patterns, str | re.Pattern):
        raise TypeError("patterns: expected a sequence of pattern names or compiled patterns")
    for pattern in patterns:
        m = _last_match(text, pattern)
        if m is not None:
            return m.group(1).strip(), m.start(), m.end()
    if last_number_fallback:
        last = None
        for match in _LAST_NUMBER.finditer(text):
            last = match
        if last is not None:
            return last.group(0), last.start(), last.end()
    return None


def extract_answer(
    text: str,
    *,
    patterns: Sequence[str | re.Pattern[str]] = _DEFAULT_ORDER,
    last_number_fallback: bool = True,
) -> str | None:
    """The answer string a completion states, or None.

    patterns: tried in order; names from ANSWER_PATTERNS ("boxed", "answer_is", "hashes") or compiled
    patterns whose group 1 is the answer. Within a pattern the last occurrence wins (a model may
    restate a draft answer before the final one).
    last_number_fallback: when no pattern matches, the last number in the text.
    """
    found = find_answer(text, patterns=patterns, last_number_fallback=last_number_fallback)
    return None if found is None else found[0]


# --- comparison ---------------------------------------------------------------------------------

_MULTI_SPLIT = re.compile(r"\s*(?:;|,\s+|\band\b)\s*")


def _numbers_close(a: float, b: float, rel_tol: float, abs_tol: float) -> bool:
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=abs_tol)


def answers_match(
    predicted: str | float | int | None,
    gold: str | float | int,
    *,
    rel_tol: float = 1e-4,
    abs_tol: float = 1e-9,
) -> bool:
    """Whether the predicted answer equals the gold one.

    Numeric gold (a number, or a string that is one number): the prediction is parsed as a number
    (commas, currency, %, units, fractions, \\frac, mixed numbers, negatives) and compared with
    math.isclose(rel_tol, abs_tol); a prediction written with % also matches gold/100 ("25%" vs 0.25).
    Gold "a; b" (several answers): the prediction must list as many answers, each matching in order.
    Otherwise both sides are compared as normalised text.
    """
    if predicted is None:
        return False
    if isinstance(gold, bool) or not isinstance(gold, str | int | float):
        raise TypeError(f"gold: expected str or number, got {type(gold).__name__}")
    if isinstance(predicted, bool) or not isinstance(predicted, str | int | float):
        raise TypeError(f"predicted: expected str, number or None, got {type(predicted).__name__}")
    if isinstance(gold, str):
        if ";" in gold:
            golds = [g for g in gold.split(";") if g.strip()]
            preds = (
                [p for p in _MULTI_SPLIT.split(str(predicted)) if p.strip()]
                if isinstance(predicted, str)
                else [predicted]
            )
            return len(golds) == len(preds) and all(
                answers_match(p, g, rel_tol=rel_tol, abs_tol=abs_tol) for p, g in zip(preds, golds)
            )
        gold_value = parse_number(gold, strict=True)
        if gold_value is None:
            if not isinstance(predicted, str):
                return False
            return normalize_text_answer(predicted) == normalize_text_answer(gold)
    else:
        if not math.isfinite(gold):
            return False
        gold_value = float(gold)
    if isinstance(predicted, int | float):
        return math.isfinite(predicted) and _numbers_close(float(predicted), gold_value, rel_tol, abs_tol)
    if predicted.isascii() and predicted.isdigit():  # the common "18": no normalisation needed
        return _numbers_close(float(predicted), gold_value, rel_tol, abs_tol)
    hit = _parse_with_percent(predicted)
    if hit is None:
        return False
    value, percent = hit
    if _numbers_close(value, gold_value, rel_tol, abs_tol):
        return True
    return percent and _numbers_close(value / 100.0, gold_value, rel_tol, abs_tol)
