"""The meta-thought: one shape shared by teacher and offline data, its text form, parser and evaluator.

Text form (the SFT target):

    Variables:
    apples_start = 12
    apples_eaten = 5
    Steps:
    1. apples_left = apples_start - apples_eaten
    2. ...
    Answer: apples_left

`Variables` binds names to numbers stated in the question (omitted when the steps use the question's
numerals directly); `Steps` says what to compute, over names only; `Answer` is one expression over the
names. A step may define a name (`name = expression`, possibly inside a sentence); the evaluator binds
those in order, so an answer may use intermediate names as well as the variables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from .safe_eval import UnsafeExpressionError, expression_names, safe_evaluate

__all__ = ["MetaThought", "MetaThoughtParseError", "parse_meta_thought", "step_definitions", "evaluate_meta_thought"]


class MetaThoughtParseError(ValueError):
    """The text does not have the Variables / Steps / Answer shape."""


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_HEADER = re.compile(r"^\s*(variables|steps|answer)\s*:\s*(.*)$", re.IGNORECASE)
_VARIABLE_LINE = re.compile(rf"^\s*(?:[-*•]\s*)?({_NAME})\s*=\s*(.+?)\s*$")
_LEADING_NUMBER = re.compile(r"^[$€£]?\s*(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+)(?![\d/])")
_STEP_LINE = re.compile(r"^\s*(?:step\s*)?\d+\s*[.):]\s*(.*)$", re.IGNORECASE)
_DEFINITION = re.compile(rf"(?<![A-Za-z0-9_])({_NAME})\s*=\s*([^=\n]+)")
_PLAIN_WORD = re.compile(r"^[A-Za-z]+[.,:;!?]?$")
_MARKDOWN = re.compile(r"\*\*|__|^#+\s*", re.MULTILINE)


@dataclass(frozen=True)
class MetaThought:
    """variables: (name, number text) in order; steps: step texts without numbering; answer: an expression."""

    variables: tuple[tuple[str, str], ...]
    steps: tuple[str, ...]
    answer: str

    def render(self) -> str:
        lines: list[str] = []
        if self.variables:
            lines.append("Variables:")
            lines.extend(f"{name} = {value}" for name, value in self.variables)
        lines.append("Steps:")
        lines.extend(f"{i}. {step}" for i, step in enumerate(self.steps, start=1))
        lines.append(f"Answer: {self.answer}")
        return "\n".join(lines)


def parse_meta_thought(text: str) -> MetaThought:
    """Read a (teacher-written) meta-thought; lenient about markdown, bullets and header case."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    section = None
    variables: list[tuple[str, str]] = []
    steps: list[str] = []
    answer_parts: list[str] = []
    for raw_line in _MARKDOWN.sub("", text).splitlines():
        line = raw_line.strip()
        if not line:
            continue
        header = _HEADER.match(line)
        if header:
            section = header.group(1).lower()
            rest = header.group(2).strip()
            if section == "answer" and rest:
                answer_parts.append(rest)
            elif section == "variables" and rest:
                _add_variable(rest, variables)
            continue
        if section == "variables":
            _add_variable(line, variables)
        elif section == "steps":
            step = _STEP_LINE.match(line)
            if step:
                steps.append(step.group(1).strip())
            elif steps:  # a wrapped step continues on the next line
                steps[-1] = f"{steps[-1]} {line}"
            else:
                raise MetaThoughtParseError(f"steps: expected numbered lines (`1. ...`), got {line[:60]!r}")
        elif section == "answer" and not answer_parts:
            answer_parts.append(line)
    if not steps:
        raise MetaThoughtParseError("no numbered steps under a `Steps:` header")
    if not answer_parts:
        raise MetaThoughtParseError("no `Answer:` line")
    answer = answer_parts[0].strip().strip("`").rstrip(".").strip()
    if "=" in answer:  # "Answer: total = a + b" -> the expression on the right
        answer = answer.split("=")[-1].strip()
    return MetaThought(tuple(variables), tuple(steps), answer)


def _add_variable(line: str, variables: list[tuple[str, str]]) -> None:
    m = _VARIABLE_LINE.match(line)
    if m is None:
        raise MetaThoughtParseError(f"variable line: expected `name = number`, got {line[:60]!r}")
    number = _LEADING_NUMBER.match(m.group(2))
    if number is None:
        raise MetaThoughtParseError(f"variable {m.group(1)!r} is not bound to a number: {m.group(2)[:40]!r}")
    variables.append((m.group(1), number.group(1).replace(",", "")))


def step_definitions(step: str) -> list[tuple[str, str]]:
    """The `name = expression` definitions inside a step, the expression trimmed of trailing words.

    "Compute total_cost = items_cost + other_price dollars." -> [("total_cost", "items_cost + other_price")]
    A right side that never becomes arithmetic, however trimmed, is no definition.
    """
    found = []
    for m in _DEFINITION.finditer(step):
        rhs = re.split(r",|;|\.\s|\.$|\(in |\bwhich\b|\bthat\b", m.group(2))[0].strip()
        words = rhs.split()
        # Trailing unit words ("... + b dollars") are dropped one at a time until the rest parses;
        # only plain words may be dropped, never operators or operands ("a / / b" is no "a").
        for cut in range(len(words), max(len(words) - 6, 0), -1):
            if cut < len(words) and not _PLAIN_WORD.match(words[cut]):
                break
            candidate = " ".join(words[:cut])
            try:
                expression_names(candidate)
            except UnsafeExpressionError:
                continue
            found.append((m.group(1), candidate))
            break
    return found


def evaluate_meta_thought(thought: MetaThought, extra_variables: Mapping[str, object] | None = None) -> Fraction:
    """The answer's value: variables bound, then each step's definitions in order, then the answer.

    Raises UnsafeExpressionError when the answer cannot be evaluated (unknown name, not arithmetic).
    A step definition that cannot be evaluated yet is skipped: natural-language steps may define
    names loosely, and only the answer expression is the contract.
    """
    env: dict[str, Fraction] = {}
    if extra_variables:
        env.update({k: safe_evaluate(str(v)) for k, v in extra_variables.items()})
    for name, value in thought.variables:
        env[name] = safe_evaluate(value)
    for step in thought.steps:
        for name, expression in step_definitions(step):
            try:
                env[name] = safe_evaluate(expression, env)
            except UnsafeExpressionError:
                continue
    return safe_evaluate(thought.answer, env)
