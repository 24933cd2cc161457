"""Quality filters for meta-thoughts; every record carries each filter's verdict as provenance.

- parse: the text has the Variables / Steps / Answer shape.
- leak: no number appears that the question does not state (the meta-thought must not calculate);
  small constants (2 for "twice", 60 minutes per hour, 100 for percents, ...) are allowed by a list.
- length: step count and character bounds (an empty or rambling plan is useless as a target).
- consistency: the answer expression, evaluated with the variables bound to the question's numbers,
  equals the gold answer (exact rational arithmetic, a relative tolerance for decimal gold answers).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from fractions import Fraction

from .meta_thought import MetaThought, MetaThoughtParseError, evaluate_meta_thought, parse_meta_thought
from .numbers import find_numbers, question_numbers, strip_step_enumerators
from .safe_eval import UnsafeExpressionError, to_fraction

__all__ = [
    "DEFAULT_ALLOWED_CONSTANTS",
    "FilterSettings",
    "FilterResult",
    "leak_filter",
    "length_filter",
    "consistency_filter",
    "run_filters",
]

# Unit conversions and the "half / twice / percent" constants a plan may need although the question
# states them in words or not at all (7 days a week, 12 months, 24 hours, 52 weeks, 60 minutes,
# 100 and 0.01 for percents).
DEFAULT_ALLOWED_CONSTANTS: tuple[float, ...] = (0, 0.01, 1, 2, 7, 10, 12, 24, 52, 60, 100, 1000)


@dataclass(frozen=True)
class FilterSettings:
    """Thresholds for the filters (all configurable from the data-build config)."""

    allowed_constants: tuple[float, ...] = DEFAULT_ALLOWED_CONSTANTS
    min_steps: int = 1
    max_steps: int = 16
    min_chars: int = 10
    max_chars: int = 2000
    answer_rel_tol: float = 1e-6

    def __post_init__(self) -> None:
        for name in ("min_steps", "max_steps", "min_chars", "max_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: expected a non-negative int, got {value!r}")
        if self.min_steps > self.max_steps or self.min_chars > self.max_chars:
            raise ValueError("min_steps/min_chars: expected at most max_steps/max_chars")
        if not isinstance(self.answer_rel_tol, (int, float)) or self.answer_rel_tol < 0:
            raise ValueError(f"answer_rel_tol: expected a non-negative float, got {self.answer_rel_tol!r}")


@dataclass(frozen=True)
class FilterResult:
    name: str
    passed: bool
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def leak_filter(
    text: str, question: str, allowed_constants: Iterable[float] = DEFAULT_ALLOWED_CONSTANTS
) -> FilterResult:
    """Fails when `text` states a number that is neither in `question` nor an allowed constant."""
    allowed = question_numbers(question) | {to_fraction(c) for c in allowed_constants}
    leaked = []
    for span in find_numbers(strip_step_enumerators(text)):
        if span.value not in allowed and span.text not in leaked:
            leaked.append(span.text)
    if leaked:
        return FilterResult("leak", False, "numbers not in the question: " + ", ".join(leaked[:8]))
    return FilterResult("leak", True)


def length_filter(thought: MetaThought, text: str, settings: FilterSettings = FilterSettings()) -> FilterResult:
    """Fails when the step count or the character count is outside the configured bounds."""
    n_steps, n_chars = len(thought.steps), len(text)
    detail = f"{n_steps} steps, {n_chars} chars"
    ok = settings.min_steps <= n_steps <= settings.max_steps and settings.min_chars <= n_chars <= settings.max_chars
    return FilterResult("length", ok, detail)


def consistency_filter(thought: MetaThought, gold_answer: float | str, rel_tol: float = 1e-6) -> FilterResult:
    """Fails unless the answer expression, evaluated with the bound variables, equals the gold answer."""
    if isinstance(gold_answer, str):
        return FilterResult("consistency", False, f"gold answer is not numeric: {gold_answer[:30]!r}")
    try:
        value = evaluate_meta_thought(thought)
    except UnsafeExpressionError as exc:
        return FilterResult("consistency", False, f"answer not evaluable: {exc}")
    gold = to_fraction(gold_answer)
    ok = abs(value - gold) <= Fraction(rel_tol) * max(Fraction(1), abs(gold))
    return FilterResult("consistency", ok, f"evaluates to {float(value):.6g}, gold {float(gold):.6g}")


@dataclass
class FilterOutcome:
    thought: MetaThought | None
    results: list[FilterResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def failed(self) -> list[str]:
        return [r.name for r in self.results if not r.passed]


def run_filters(
    text: str, question: str, gold_answer: float | str, settings: FilterSettings = FilterSettings()
) -> FilterOutcome:
    """Parse, then run every filter on the re-rendered text (the training target), all of them, so
    the report counts each failure reason."""
    try:
        thought = parse_meta_thought(text)
    except MetaThoughtParseError as exc:
        return FilterOutcome(None, [FilterResult("parse", False, str(exc))])
    rendered = thought.render()
    return FilterOutcome(
        thought,
        [
            FilterResult("parse", True),
            leak_filter(rendered, question, settings.allowed_constants),
            length_filter(thought, rendered, settings),
            consistency_filter(thought, gold_answer, settings.answer_rel_tol),
        ],
    )
