"""Teacher-written meta-thoughts: the prompt, and turning a teacher's reply into a filtered record.

The instruction follows the paper: describe the solution's reasoning steps in natural language using
only variable names, without calculating any specific number. To make the result checkable, the
teacher also binds each name to a number of the question (`Variables:`) and ends with one answer
expression over the names (`Answer:`); `filters.consistency_filter` evaluates that expression with
the bound numbers and compares it with the gold answer.

Bump PROMPT_VERSION whenever the wording changes: it is recorded in every record's provenance, and
the client's cache keys on the messages, so a new wording never reuses old replies.
"""

from __future__ import annotations

from typing import Any

from fastcomt.tasks import Problem

from .cot import clean_worked_solution
from .filters import FilterOutcome, FilterSettings, run_filters

__all__ = ["PROMPT_VERSION", "TEACHER_SYSTEM", "teacher_messages", "teacher_outcome"]

PROMPT_VERSION = "comt-teacher-v1"

TEACHER_SYSTEM = "You are a careful mathematics teacher who explains solution strategies."

_INSTRUCTION = """\
Describe the solution's reasoning steps in natural language using only variable names, without \
calculating any specific number.

Write exactly three sections:
Variables:
<one line per quantity given in the problem that the solution uses: snake_case_name = number, the \
number exactly as the problem states it, without units or % signs>
Steps:
1. <the first reasoning step, in words, using only the variable names>
2. <...one numbered line per step; a step may define a new name as `new_name = expression`>
Answer: <one arithmetic expression over the variable names that gives the final answer>

Rules: never compute or write an intermediate or final result; never write a number in Steps or \
Answer except a constant the problem implies (such as 2 for "twice" or 100 for a percent)."""


def teacher_messages(problem: Problem, *, include_solution: bool = True) -> list[dict[str, str]]:
    """The chat messages asking a teacher for the meta-thought of one problem."""
    parts = [f"Problem:\n{problem.question.strip()}"]
    if include_solution:
        if not problem.solution:
            raise ValueError(f"problem {problem.id!r}: include_solution=True needs a worked solution")
        parts.append(f"Solution:\n{clean_worked_solution(problem.solution)}")
    parts.append(_INSTRUCTION)
    return [{"role": "system", "content": TEACHER_SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def teacher_outcome(
    problem: Problem, reply: str, settings: FilterSettings | None = None
) -> tuple[str | None, FilterOutcome, dict[str, Any]]:
    """(normalised target or None, filter outcome, filter verdicts for provenance) of one reply;
    settings: the filters' settings (None: their defaults)."""
    settings = FilterSettings() if settings is None else settings
    if not isinstance(reply, str):
        raise TypeError(f"reply: expected str, got {type(reply).__name__}")
    outcome = run_filters(reply, problem.question, problem.answer, settings)
    verdicts = {r.name: r.to_dict() for r in outcome.results}
    # The target is re-rendered from the parsed form: one layout across teachers, no markdown.
    target = outcome.thought.render() if outcome.thought is not None else None
    return target, outcome, verdicts
