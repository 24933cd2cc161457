"""Numeric steps of an execution: which numbers the model computed, where they are, whether they are right.

A *step* is a number the completion computed rather than copied:
  - the result of an equation, `... 12 - 5 = 7` (always a step, even when 7 also occurs in the question:
    the model produced it by arithmetic);
  - a number stated in prose whose value is neither in the question nor stated earlier in the
    completion ("so she has 9 eggs left" after nothing produced 9).
Operands (`12` and `5` above) are never steps: they are copied or restated. Numbers inside the final
answer statement ("The answer is 7.", "#### 7", "\\boxed{7}") are not steps; the answer is graded
separately (grading.extract_answer / answers_match).

Step correctness follows the project's CCRL definition, in this order:
  1. the problem has gold intermediate values: the step is right iff its value matches one of them;
  2. else the step is an equation result: right iff its left side evaluates to it (local arithmetic);
  3. else: right iff the final answer is right (outcome).

Hot path: graders run on every rollout, so each completion is scanned once by one compiled regex and
per-number work is a handful of comparisons.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Collection, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import NamedTuple

from .answers import find_answer
from .arith import ArithmeticError_, evaluate

__all__ = [
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
]

# Which rule decided a step's correctness (kept per step for analysis and tests).
STEP_GOLD = "gold"
STEP_ARITHMETIC = "arithmetic"
STEP_OUTCOME = "outcome"


class StepSpan(NamedTuple):
    """One computed number in a completion (a NamedTuple: graders build thousands per second).

    start, end: character span of the number (sign and digits; no currency, no unit).
    value: the number. decimals: digits written after the decimal point (for rounding-aware matching).
    expression: the arithmetic left of '=' when the number is an equation result, else None.
    arithmetic_ok: whether `expression` evaluates to `value` (None without an expression, or when
    the left side is not plain arithmetic).
    """

    start: int
    end: int
    value: float
    decimals: int = 0
    expression: str | None = None
    arithmetic_ok: bool | None = None


# One scan over the completion, one match per arithmetic chain or lone number, so operands cost
# nothing in Python:
#   chain: `operand (op operand)+`, optionally followed by `= result`; a result that is itself an
#          operand ("2 * 5 = 10 * 3 = 30") is captured in a lookahead, not consumed, so that it
#          starts the next chain;
#   lone:  a number not followed by an operator, optionally right after an '=' ("x = 7").
_NUM = r"(?>(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?)"
_OPCHAR = r"(?:[-+*/×÷·^]|x(?=[ \t]*[\d($]))"
_OPERAND = rf"(?:\([ \t]*)*(?:\\?\$)?{_NUM}%?(?:[ \t]*\))*"
# The leading lookahead lets the engine reject most positions with one character test (2x faster).
# Numbers are atomic groups: "10" followed by an operator must not backtrack into a lone "1".
_NUMBER_SCAN = re.compile(
    rf"(?=[\d(=$\\-])(?:(?<![\w.,])(?P<chain>(?:\([ \t]*)*-?(?:\\?\$)?{_NUM}%?(?:[ \t]*\))*(?:[ \t]*{_OPCHAR}[ \t]*{_OPERAND})+)"
    rf"(?:[ \t]*=[ \t]*(?:\\?\$[ \t]*)?(?:(?P<res>(?>-?{_NUM}))(?!%?[ \t)]*{_OPCHAR})|(?=(?P<res_operand>-?{_NUM}))))?"
    rf"|(?P<eq>=[ \t]*(?:\\?\$[ \t]*)?)?(?<![\w.,])(?P<num>(?>-?{_NUM}))(?!%?[ \t)]*{_OPCHAR}))"
)
# Chain pieces for the fast evaluator: a number (with %), an operator, or a parenthesis.
_CHAIN_TOKEN = re.compile(rf"({_NUM})(%?)|({_OPCHAR})|([()])")
_SIMPLE_BINARY = re.compile(rf"(-?{_NUM})[ \t]*([-+*/×÷·x])[ \t]*({_NUM})")
_BINARY_OPS = frozenset("+-*/×÷·x")
_PLAIN_NUMBER = re.compile(r"(?<![\w.])(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")


@lru_cache(maxsize=4096)
def question_values(question: str) -> frozenset[float]:
    """The numbers written in a question (cached: every execution of a problem asks again)."""
    if not isinstance(question, str):
        raise TypeError(f"question: expected str, got {type(question).__name__}")
    return frozenset(float(m.group(0).replace(",", "")) for m in _PLAIN_NUMBER.finditer(question))


def answer_statement_span(text: str) -> tuple[int, int] | None:
    """Character span of the last explicit answer statement (boxed, "the answer is", "####"), or None."""
    found = find_answer(text, last_number_fallback=False)
    return None if found is None else (found[1], found[2])


def _evaluate_chain(chain: str) -> float | None:
    """The value of an arithmetic chain, or None when it is not plain arithmetic (or divides by 0).

    "a op b" (most equation lines) is computed directly; longer chains go through
    _evaluate_chain_general.
    """
    parts = chain.split()
    if len(parts) == 3 and parts[1] in _BINARY_OPS:  # "a op b" with spaces: most equation lines
        a_raw, op, b_raw = parts
    else:
        m = _SIMPLE_BINARY.fullmatch(chain)
        if m is None:
            return _evaluate_chain_general(chain)
        a_raw, op, b_raw = m.groups()
    try:  # the chain regex admits only digits, signs, , . % $ ( ) and operators: float() fails on all but numbers
        a = float(a_raw.replace(",", "")) if "," in a_raw else float(a_raw)
        b = float(b_raw.replace(",", "")) if "," in b_raw else float(b_raw)
    except ValueError:
        return _evaluate_chain_general(chain)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "/" or op == "÷":
        return a / b if b != 0 else None
    return a * b


def _evaluate_chain_general(chain: str) -> float | None:
    """Chains with several operations, parentheses, currency or percent signs.

    Without parentheses: two passes folded into one loop (× ÷ into the current term, + − between
    terms); with parentheses: the general recursive-descent parser.
    """
    if "(" in chain or ")" in chain:
        try:
            return float(evaluate(chain.replace("$", "").replace("\\", "")))
        except (ArithmeticError_, ZeroDivisionError, OverflowError):
            return None
    total = 0.0
    term = 0.0
    sign = 1.0
    pending = ""  # the × or ÷ waiting for its right operand
    negate_next = False
    for num, pct, op, _paren in _CHAIN_TOKEN.findall(chain):
        if num:
            v = float(num.replace(",", "")) if "," in num else float(num)
            if pct:
                v /= 100.0
            if negate_next:
                v, negate_next = -v, False
            if pending == "":
                term = v
            elif pending == "/":
                if v == 0:
                    return None
                term /= v
            else:
                term *= v
            pending = "="  # an operand was read
        elif op in ("+", "-"):
            if pending != "=":  # leading sign, not a binary operator
                negate_next = op == "-"
                continue
            total += sign * term
            sign = 1.0 if op == "+" else -1.0
            pending = ""
        elif op == "^":
            return None
        else:
            pending = "/" if op in "/÷" else "*"
    if pending != "=":
        return None
    return total + sign * term


def find_steps(
    text: str,
    question: str | Collection[float],
    *,
    exclude_answer: bool = True,
    answer_span: tuple[int, int] | None = None,
) -> list[StepSpan]:
    """The numbers `text` computed, in order, with character spans (see the module docstring).

    question: the question text, or the set of its numbers (question_values) when precomputed.
    exclude_answer: skip numbers inside the final answer statement.
    answer_span: that statement's character span when already known (saves a scan).
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    given: Collection[float]
    if type(question) is frozenset:  # the precomputed question_values: skip the slower ABC check
        given = question
    elif isinstance(question, str):
        given = question_values(question)
    elif isinstance(question, Collection):
        given = question
    else:
        raise TypeError(f"question: expected str or a collection of numbers, got {type(question).__name__}")
    if answer_span is None and exclude_answer:
        answer_span = answer_statement_span(text)
    ans_start, ans_end = answer_span if answer_span is not None else (-1, -1)

    steps: list[StepSpan] = []
    append = steps.append
    seen: set[float] = set()
    seen_add = seen.add
    result_at = -1  # start of the last equation result (matched again as the next lone number)
    for m in _NUMBER_SCAN.finditer(text):
        chain, res, res_operand, eq, raw = m.groups()
        if chain is not None:
            if res is not None:
                start = m.start(2)
            elif res_operand is not None:
                start = result_at = m.start(3)
                res = res_operand
            else:
                continue
            if ans_start <= start < ans_end:
                continue
            raw = res
            value = float(raw.replace(",", "")) if "," in raw else float(raw)
            dot = raw.find(".")
            decimals = 0 if dot < 0 else len(raw) - dot - 1
            computed = _evaluate_chain(chain)
            ok = None if computed is None else (value == computed or values_match(value, decimals, computed, -1))
            append(StepSpan(start, start + len(raw), value, decimals, chain, ok))
            seen_add(value)
            continue
        start = m.start(5)  # num
        if start == result_at or ans_start <= start < ans_end:
            continue
        value = float(raw.replace(",", "")) if "," in raw else float(raw)
        if value in given or value in seen:
            continue
        seen_add(value)
        end = start + len(raw)
        if not _is_list_marker(text, start, end):
            dot = raw.find(".")
            append(StepSpan(start, end, value, 0 if dot < 0 else len(raw) - dot - 1))
    return steps


def _is_list_marker(text: str, start: int, end: int) -> bool:
    # "1. Compute ..." / "2) Then ..." at a line start, or "Step 3": numbering, not a result.
    nxt = text[end : end + 2]
    if nxt[:1] in (".", ")", ":") and (len(nxt) < 2 or nxt[1] in " \t\n"):
        return text[text.rfind("\n", 0, start) + 1 : start].strip() == ""
    return text[max(0, start - 5) : start].lower() == "step "


def values_match(value: float, value_decimals: int, gold: float, gold_decimals: int) -> bool:
    """Whether a written value equals a gold one, allowing for rounding.

    Exact (to 1e-6 relative) in general; when both sides were written with decimals, within half a
    unit of the coarser one's last digit (3.33 matches 3.333). gold_decimals=-1: gold is an exact
    computed number, so a written value with d decimals matches it rounded to d digits.
    """
    if math.isclose(value, gold, rel_tol=1e-6, abs_tol=1e-9):
        return True
    if gold_decimals < 0:
        d = value_decimals
    elif value_decimals > 0 and gold_decimals > 0:
        d = min(value_decimals, gold_decimals)
    else:
        return False
    return d > 0 and abs(value - gold) <= 0.5 * 10.0 ** (-d) + 1e-9 * max(1.0, abs(gold))


def step_correctness(
    steps: Sequence[StepSpan],
    gold: Sequence[tuple[float, int]] | None,
    answer_correct: bool,
) -> tuple[list[int], list[str]]:
    """Per step, 1/0 correctness and the rule that decided it (STEP_GOLD / _ARITHMETIC / _OUTCOME).

    gold: the problem's gold intermediate values as (value, decimals written); decimals -1 for an
    exactly computed value. Empty or None: no gold steps, so local arithmetic then outcome decide.
    """
    correct: list[int] = []
    source: list[str] = []
    outcome = 1 if answer_correct else 0
    exact = {g for g, _ in gold} if gold else None
    for s in steps:
        if exact is not None:
            v = s.value
            # exact hits are the common case; the rounding-aware scan runs only for the rest
            hit = v in exact or any(values_match(v, s.decimals, g, gd) for g, gd in gold or ())
            correct.append(1 if hit else 0)
            source.append(STEP_GOLD)
        elif s.arithmetic_ok is not None:
            correct.append(1 if s.arithmetic_ok else 0)
            source.append(STEP_ARITHMETIC)
        else:
            correct.append(outcome)
            source.append(STEP_OUTCOME)
    return correct, source


_END = itemgetter(1)


def char_to_token_spans(
    spans: Sequence[tuple[int, int] | StepSpan], offsets: Sequence[tuple[int, int]]
) -> list[tuple[int, int] | None]:
    """Token range [first, last+1) covering each character span, or None when no token overlaps it.

    spans: (start, end) pairs, or StepSpans (whose first two fields are start and end).
    offsets: one (start, end) character pair per token, in order, as a tokenizer's offset mapping
    for the same text returns it (ends non-decreasing); zero-width entries (special tokens) never
    overlap, and may also sit at either end out of order (e.g. (0, 0) for a trailing EOS). A number split
    over several tokens (digit-split tokenizers) gets all of them; a token that also carries a
    leading space or a unit is included when it overlaps the number.
    """
    out: list[tuple[int, int] | None] = []
    # Zero-width entries at either end (BOS/EOS) would break the ends' order that bisect relies on.
    lo, n = 0, len(offsets)
    while n > lo and offsets[n - 1][1] <= offsets[n - 1][0]:
        n -= 1
    while lo < n and offsets[lo][1] <= offsets[lo][0]:
        lo += 1
    for span in spans:
        s = span[0]
        e = span[1]
        if e <= s:
            raise ValueError(f"spans: expected start < end, got ({s}, {e})")
        # first token whose end is past s (ends are non-decreasing between lo and n)
        j = bisect_right(offsets, s, lo, n, key=_END)
        first = last = -1
        while j < n:
            ts, te = offsets[j]
            if ts >= e:
                break
            if te > ts:
                if first < 0:
                    first = j
                last = j
            j += 1
        out.append((first, last + 1) if first >= 0 else None)
    return out


def token_step_ids(token_spans: Sequence[tuple[int, int] | None], n_tokens: int) -> list[int]:
    """Per token, the index of the step it belongs to, -1 for none (the reward kernel's span ids).

    A token shared by two steps goes to the first one.
    """
    if n_tokens < 0:
        raise ValueError(f"n_tokens: expected >= 0, got {n_tokens}")
    ids = [-1] * n_tokens
    for k, span in enumerate(token_spans):
        if span is None:
            continue
        a, b = span
        if not 0 <= a < b <= n_tokens:
            raise ValueError(f"token_spans: span {span} outside [0, {n_tokens})")
        if ids[a:b].count(-1) == b - a:  # the usual case: no token shared with an earlier step
            ids[a:b] = [k] * (b - a)
        else:
            for t in range(a, b):
                if ids[t] < 0:
                    ids[t] = k
    return ids
