"""Math word problems: records, benchmark readers, synthetic generator, answer grading and numeric steps.

Stdlib only (no torch): graders run in rollout workers and data tools without the training stack.
"""

from ._records import RecordFormatError
from .answers import ANSWER_PATTERNS, answers_match, extract_answer, find_answer, normalize_text_answer, parse_number
from .benchmarks import BENCHMARKS, BenchmarkProblems, data_root, load_benchmark, load_problems, save_problems
from .grade import GradedCompletion, gold_step_values, grade_completion
from .problem import Problem, Step
from .steps import (
    STEP_ARITHMETIC,
    STEP_GOLD,
    STEP_OUTCOME,
    StepSpan,
    answer_statement_span,
    char_to_token_spans,
    find_steps,
    question_values,
    step_correctness,
    token_step_ids,
    values_match,
)
from .synthetic import SYNTHETIC_FAMILIES, execution_text, plan_text, synthetic_problems

__all__ = [
    "Problem",
    "Step",
    "SYNTHETIC_FAMILIES",
    "synthetic_problems",
    "execution_text",
    "plan_text",
    "BENCHMARKS",
    "BenchmarkProblems",
    "RecordFormatError",
    "data_root",
    "load_benchmark",
    "load_problems",
    "save_problems",
    "ANSWER_PATTERNS",
    "extract_answer",
    "find_answer",
    "answers_match",
    "parse_number",
    "normalize_text_answer",
    "StepSpan",
    "find_steps",
    "answer_statement_span",
    "question_values",
    "step_correctness",
    "values_match",
    "char_to_token_spans",
    "token_step_ids",
    "STEP_GOLD",
    "STEP_ARITHMETIC",
    "STEP_OUTCOME",
    "GradedCompletion",
    "grade_completion",
    "gold_step_values",
]
