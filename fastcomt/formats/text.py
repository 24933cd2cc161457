"""The response formats as text: their layout, how a response splits into plan / execution /
answer, and whether it has its format's shape.

- ``cot``: the worked execution, one line per computation, closing with the answer statement::

      items_cost = 2 * 5 = 10
      total_cost = 10 + 10 = 20
      change = 50 - 20 = 30
      The answer is 30.

- ``comt``: a plan (a meta-thought in `comt.meta_thought` form: numbered steps over variable names,
  no computed numbers), the marker line ``Execution:``, then the execution as above::

      Variables:
      item_count = 2
      ...
      Steps:
      1. items_cost = item_count * item_price
      ...
      Answer: change
      Execution:
      items_cost = 2 * 5 = 10
      ...
      The answer is 30.

  i.e. ``plan.strip() + EXECUTION_MARKER + execution.strip()`` with ``EXECUTION_MARKER = "\\nExecution:\\n"``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from fastcomt.comt.filters import DEFAULT_ALLOWED_CONSTANTS
from fastcomt.comt.meta_thought import MetaThoughtParseError, parse_meta_thought
from fastcomt.comt.numbers import find_numbers, question_numbers, strip_step_enumerators
from fastcomt.comt.safe_eval import to_fraction
from fastcomt.tasks import answer_statement_span, extract_answer

__all__ = [
    "FORMATS",
    "EXECUTION_MARKER",
    "ResponseParts",
    "FormatCheck",
    "render_response",
    "split_response",
    "check_format",
    "plan_leaks",
]

FORMATS: tuple[str, ...] = ("comt", "cot")
EXECUTION_MARKER = "\nExecution:\n"

# The marker as a model may write it: its own line, surrounding spaces tolerated. The first one
# splits; an "Execution:" inside a plan line ("Execution: do x") does not count.
_MARKER_LINE = re.compile(r"(?:^|\n)[ \t]*Execution:[ \t]*(?:\n|$)")
# Where a plan stopped on the marker's word token the colon and newline were never sampled.
MARKER_START = re.compile(r"(?:^|\n)[ \t]*Execution\b")
MARKER_WORD = "Execution"


def check_format_name(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"fmt: expected one of {FORMATS}, got {fmt!r}")
    return fmt


# --- text layout -------------------------------------------------------------------------------


def render_response(fmt: str, execution: str, plan: str | None = None) -> str:
    """The assistant text of one example: the execution (cot), or plan + marker + execution (comt)."""
    check_format_name(fmt)
    if not isinstance(execution, str):
        raise TypeError(f"execution: expected str, got {type(execution).__name__}")
    if fmt == "cot":
        if plan is not None:
            raise ValueError("plan: the cot format has no plan; pass plan=None")
        return execution.strip()
    if not isinstance(plan, str) or not plan.strip():
        raise ValueError("plan: the comt format needs a non-empty plan text")
    return plan.strip() + EXECUTION_MARKER + execution.strip()


@dataclass(frozen=True)
class ResponseParts:
    """A response cut into its parts.

    plan: the text before the marker (comt), None for cot. execution: the text after the marker
    (comt; empty when the marker is missing) or the whole response (cot). answer: the answer the
    execution states (`tasks.extract_answer`, last-number fallback included), None when none.
    has_marker: whether a comt response holds the marker line (always False for cot).
    """

    plan: str | None
    execution: str
    answer: str | None
    has_marker: bool


def split_response(text: str, fmt: str = "comt") -> ResponseParts:
    """Cut an assistant response into plan / execution / answer (see ResponseParts)."""
    check_format_name(fmt)
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    if fmt == "cot":
        execution = text.strip()
        return ResponseParts(None, execution, extract_answer(execution) if execution else None, False)
    m = _MARKER_LINE.search(text)
    if m is None:
        # No execution was written: the answer belongs to the execution, so there is none.
        return ResponseParts(text.strip(), "", None, False)
    execution = text[m.end() :].strip()
    return ResponseParts(text[: m.start()].strip(), execution, extract_answer(execution) if execution else None, True)


@dataclass(frozen=True)
class FormatCheck:
    """Whether a response has its format's shape, and why not.

    ok: format-correct. comt: the marker is there, the plan parses as a meta-thought with >= 1 step
    and states no number the question does not (besides the allowed constants), and the execution
    ends in an answer statement. cot: the response ends in an answer statement.
    plan_steps: numbered steps in the plan (0 when it does not parse; 0 for cot).
    leaked_numbers: numbers the plan computed (written as in the text).
    ends_with_answer: the execution's last statement is an explicit answer ("The answer is N.",
    "#### N", a boxed answer) with nothing but punctuation after it.
    reasons: a short phrase per failed condition (empty when ok).
    """

    ok: bool
    plan_steps: int
    leaked_numbers: tuple[str, ...]
    ends_with_answer: bool
    reasons: tuple[str, ...]


def _ends_with_answer(execution: str) -> bool:
    span = answer_statement_span(execution)
    return span is not None and execution[span[1] :].strip(" \t\r\n.!") == ""


def plan_leaks(plan: str, question: str, allowed_constants: Sequence[float] = DEFAULT_ALLOWED_CONSTANTS) -> list[str]:
    """The numbers a plan states that the question does not (step numbering and constants excepted)."""
    allowed = question_numbers(question) | {to_fraction(c) for c in allowed_constants}
    leaked: list[str] = []
    for span in find_numbers(strip_step_enumerators(plan)):
        if span.value not in allowed and span.text not in leaked:
            leaked.append(span.text)
    return leaked


def check_format(
    text: str, fmt: str, question: str, *, allowed_constants: Sequence[float] = DEFAULT_ALLOWED_CONSTANTS
) -> FormatCheck:
    """Check one assistant response against its format (see FormatCheck)."""
    parts = split_response(text, fmt)
    if not isinstance(question, str):
        raise TypeError(f"question: expected str, got {type(question).__name__}")
    reasons: list[str] = []
    steps = 0
    leaked: list[str] = []
    if fmt == "comt":
        if not parts.has_marker:
            reasons.append("no execution marker")
        try:
            steps = len(parse_meta_thought(parts.plan or "").steps)
        except MetaThoughtParseError:
            steps = 0
        if steps < 1:
            reasons.append("plan has no numbered steps")
        leaked = plan_leaks(parts.plan or "", question, allowed_constants)
        if leaked:
            reasons.append("plan computes numbers: " + ", ".join(leaked[:5]))
    ends = _ends_with_answer(parts.execution)
    if not ends:
        reasons.append("execution does not end in an answer statement")
    return FormatCheck(not reasons, steps, tuple(leaked), ends, tuple(reasons))
