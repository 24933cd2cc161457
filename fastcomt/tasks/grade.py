"""Grade one completion end to end: answer, numeric steps, step correctness, token spans. Stdlib only.

This is what a CCRL step calls per rollout: its output feeds the reward kernel directly (per-token
step ids, per-step correctness, answer correctness).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from .answers import answers_match, find_answer
from .problem import Problem
from .steps import StepSpan, char_to_token_spans, find_steps, question_values, step_correctness, token_step_ids

__all__ = ["GradedCompletion", "grade_completion", "gold_step_values"]


class GradedCompletion(NamedTuple):
    """The grade of one completion (a NamedTuple: cheap to build per rollout).

    answer: the extracted answer string (None when the completion states none).
    answer_correct: whether it matches the gold answer.
    steps: the computed numbers (find_steps); step_correct: 1/0 per step; step_source: the rule
    that decided each (gold / arithmetic / outcome).
    token_spans: per step, its token range [a, b) (None when not mapped); token_step_ids: per token
    the step index or -1. Both are empty when no offsets were given.
    """

    answer: str | None
    answer_correct: bool
    steps: tuple[StepSpan, ...]
    step_correct: tuple[int, ...]
    step_source: tuple[str, ...]
    token_spans: tuple[tuple[int, int] | None, ...] = ()
    token_step_ids: tuple[int, ...] = ()


def _written_decimals(value: float) -> int:
    text = repr(float(value))
    if "e" in text or "E" in text:
        return -1
    whole, _, frac = text.partition(".")
    return 0 if frac == "0" else len(frac)


def gold_step_values(problem: Problem) -> list[tuple[float, int]]:
    """The problem's gold intermediate values as (value, decimals as written) for step_correctness."""
    return [(float(s.value), _written_decimals(s.value)) for s in problem.steps]


def grade_completion(
    text: str,
    problem: Problem,
    offsets: Sequence[tuple[int, int]] | None = None,
    *,
    gold: Sequence[tuple[float, int]] | None = None,
    drop_unmapped: bool = True,
) -> GradedCompletion:
    """Grade `text` (the completion only, not the prompt) against `problem`.

    offsets: the tokenizer offset mapping of the completion's tokens, to place steps on tokens.
    gold: precomputed gold_step_values(problem) (pass it when grading many executions of a problem).
    drop_unmapped: with offsets, drop steps no token overlaps (they cannot carry a confidence).
    """
    if not isinstance(problem, Problem):
        raise TypeError(f"problem: expected Problem, got {type(problem).__name__}")
    found = find_answer(text)
    answer = None if found is None else found[0]
    correct = answers_match(answer, problem.answer)
    # The last-number fallback is an answer too: its number is graded as the answer, not as a step.
    steps = find_steps(text, question_values(problem.question), answer_span=None if found is None else found[1:])
    spans: list[tuple[int, int] | None] = []
    ids: list[int] = []
    if offsets is not None:
        spans = char_to_token_spans(steps, offsets)
        if drop_unmapped and None in spans:
            keep = [i for i, sp in enumerate(spans) if sp is not None]
            steps = [steps[i] for i in keep]
            spans = [spans[i] for i in keep]
        ids = token_step_ids(spans, len(offsets))
    if gold is None:
        gold = gold_step_values(problem)
    z, source = step_correctness(steps, gold, correct)
    return GradedCompletion(answer, correct, tuple(steps), tuple(z), tuple(source), tuple(spans), tuple(ids))
