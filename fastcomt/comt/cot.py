"""Chain-of-thought targets for the CoT-SFT baseline: the benchmark's own worked solutions.

GSM8K answers lose their calculator annotations (`<<48/2=24>>`) and their `#### 72` line becomes
`The answer is 72.`, the same closing sentence the synthetic executions use, so one answer extractor
reads both. Synthetic problems keep their execution text as it is.
"""

from __future__ import annotations

import re

from fastcomt.tasks import Problem

__all__ = ["cot_target", "clean_worked_solution"]

_ANNOTATION = re.compile(r"<<[^<>]*>>")
_HASHES = re.compile(r"^\s*####\s*(.+?)\s*$", re.MULTILINE)


def clean_worked_solution(solution: str) -> str:
    """Strip `<<...>>` annotations and turn the final `#### N` into `The answer is N.`"""
    if not isinstance(solution, str):
        raise TypeError(f"solution: expected str, got {type(solution).__name__}")
    text = _ANNOTATION.sub("", solution)
    text = _HASHES.sub(lambda m: f"The answer is {m.group(1).replace(',', '')}.", text)
    return text.strip()


def cot_target(problem: Problem) -> str:
    """The CoT training target of a problem; ValueError when it has no worked solution."""
    if not problem.solution:
        raise ValueError(f"problem {problem.id!r}: expected a worked solution for a CoT target, got none")
    return clean_worked_solution(problem.solution)
