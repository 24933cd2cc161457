"""The problem record every reader and generator produces. Stdlib only."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Step:
    """One gold intermediate result of a solution.

    value: the number the step computes.
    expression: the arithmetic with concrete numbers, e.g. "48/2".
    name: the quantity's variable name when known (synthetic problems), e.g. "apples_left".
    symbolic: the expression over variable names when known, e.g. "apples_start - apples_eaten".
    """

    value: float
    expression: str = ""
    name: str | None = None
    symbolic: str | None = None


@dataclass(frozen=True)
class Problem:
    """A math word problem.

    answer: a float where the gold answer is numeric, else the gold string (TabMWP multi-choice).
    steps: gold intermediate results in solution order; empty where the benchmark has none.
    solution: the benchmark's own worked solution text (chain of thought), when it has one.
    quantities: for synthetic problems, the question's given numbers by variable name.
    family: for synthetic problems, the template family (used for out-of-distribution splits).
    """

    id: str
    question: str
    answer: float | str
    steps: tuple[Step, ...] = ()
    source: str = ""
    solution: str | None = None
    quantities: dict[str, float] = field(default_factory=dict)
    family: str | None = None
