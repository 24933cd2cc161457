"""Offline meta-thoughts: abstract an annotated gold solution, no teacher model needed.

Synthetic problems: the generator's steps already carry names and symbolic forms; the meta-thought
binds the question's quantities under `Variables` and lists `name = symbolic` steps.

Annotated solutions (GSM8K's `<<expr=value>>`): each annotation becomes one step `name = expression`
in which every number that an earlier step computed is replaced by that step's name; numbers the
question states stay as written (the leak filter allows them). How a number is matched to an earlier
step when several steps computed the same value (e.g. two different 20s in one sum):
  1. a step not already used in this expression,
  2. a step whose value no later step has used yet (a computed value usually feeds the next step),
  3. the most recent step.
A question number that only matches steps already used elsewhere stays a literal.

Naming a computed step (the words around the annotation in its sentence):
  1. the words after the value, up to the end of the clause (`24 clips in May.` -> `clips_may`),
  2. otherwise the words before the expression in the same clause (`she earned 0.2 x 50 =` -> `she_earned`),
  3. otherwise `result<k>`;
  lower-cased, articles, pronouns, auxiliaries and prepositions (except `per`) dropped, at most three
  words, a numeric suffix when the name is taken.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from fractions import Fraction

from fastcomt.tasks import Problem

from .meta_thought import MetaThought
from .numbers import find_numbers, question_numbers
from .safe_eval import UnsafeExpressionError, safe_evaluate, to_fraction

__all__ = [
    "OFFLINE_VERSION",
    "OfflineAbstractionError",
    "offline_meta_thought",
    "synthetic_meta_thought",
    "annotated_meta_thought",
]

OFFLINE_VERSION = "offline-v1"

_ANNOTATION = re.compile(r"<<([^=<>]*)=([^<>]*)>>")
_NUMERAL = r"\$?(?:\d[\d,]*(?:\.\d+)?|\.\d+)%?"
_PLAIN_EQUATION = re.compile(
    rf"(?<![\w.#])({_NUMERAL}(?:\s*[-+*/x×]\s*\(?\s*{_NUMERAL}\s*\)?)+)\s*=\s*\$?(\d[\d,]*(?:\.\d+)?)(?![\d#])"
)
_DISPLAYED_RESULT = re.compile(r"=\s*[$€£]?\s*$")
_AFTER_VALUE = re.compile(r"^\s*[$€£]?\s*-?[\d,]*\.?\d*\s*")
_CLAUSE_END = re.compile(r"[.!?;:,\n]|\s(?:so|and|which|because|then)\s")
_MAX_NAME_WORDS = 3

_STOPWORDS = frozenset(
    """a an the this that these those his her hers their theirs its our ours my mine your yours he she they it we i
    you him them us me is are was were be been being am will would can could should shall may might must has have
    had do does did so and or but then there here which who whom whose what when where how if than as also just
    only still both either neither not no all some any more most much many each every other another such own same
    in on at of for to from by with after before into onto over under during about between through per up down off
    out again once altogether therefore thus hence now because since towards toward while although until""".split()
)
_KEEP = frozenset({"per", "total", "each"})


class OfflineAbstractionError(ValueError):
    """The solution cannot be abstracted (no annotated steps, or the answer is never computed)."""


@dataclass
class _Computed:
    name: str
    value: Fraction
    consumed: bool = False


def synthetic_meta_thought(problem: Problem) -> MetaThought:
    """Variables from the problem's quantities, steps from its named symbolic steps."""
    if not problem.steps or any(s.name is None or s.symbolic is None for s in problem.steps):
        raise OfflineAbstractionError(
            f"{problem.id}: expected synthetic steps that all carry name and symbolic, got one without"
        )
    variables = tuple((name, _format(to_fraction(value))) for name, value in problem.quantities.items())
    steps = tuple(f"{s.name} = {s.symbolic}" for s in problem.steps)
    return MetaThought(variables, steps, problem.steps[-1].name)  # type: ignore[arg-type]


def annotated_meta_thought(problem: Problem) -> MetaThought:
    """Abstract a GSM8K-style solution (gold steps from `<<expr=value>>`) into named steps."""
    if isinstance(problem.answer, str):
        raise OfflineAbstractionError(f"{problem.id}: gold answer is not numeric")
    text, gold_steps = _solution_and_steps(problem)
    stated = question_numbers(problem.question)
    computed: list[_Computed] = []
    steps: list[str] = []
    taken: set[str] = set()
    for start, end, expression, value in _computations(text, gold_steps):
        symbolic = _rewrite(expression, computed, stated)
        name = _derive_name(text, start, end) if start is not None and end is not None else None
        name = _unique(name or f"result{len(computed) + 1}", taken)
        computed.append(_Computed(name, value))
        steps.append(f"{name} = {symbolic}")
    if not steps:
        raise OfflineAbstractionError(f"{problem.id}: no annotated steps to abstract")
    gold = to_fraction(problem.answer)
    for item in reversed(computed):
        if item.value == gold:
            return MetaThought((), tuple(steps), item.name)
    raise OfflineAbstractionError(f"{problem.id}: no annotated step computes the gold answer {problem.answer}")


def offline_meta_thought(problem: Problem) -> MetaThought:
    """Synthetic problems use their plans; everything else its annotated solution."""
    if problem.source == "synthetic" or problem.quantities:
        return synthetic_meta_thought(problem)
    return annotated_meta_thought(problem)


def _solution_and_steps(problem: Problem) -> tuple[str, list[tuple[str, Fraction]]]:
    """The solution without annotations and the gold (expression, value) steps.

    A solution that still carries `<<expr=value>>` gives both itself; otherwise (the benchmark reader
    strips annotations) the steps come from `Problem.steps`.
    """
    solution = problem.solution or ""
    if _ANNOTATION.search(solution):
        steps = [(m.group(1), _annotated_value(m.group(1), m.group(2))) for m in _ANNOTATION.finditer(solution)]
        return _ANNOTATION.sub("", solution), steps
    return solution, [(s.expression, to_fraction(s.value)) for s in problem.steps if s.expression]


def _computations(
    text: str, gold_steps: list[tuple[str, Fraction]]
) -> list[tuple[int | None, int | None, str, Fraction]]:
    """(start, end, expression, value) of every computation, in solution order.

    Each gold step is placed at the first later number in the text equal to its value, preferring one
    right after an `=` (where the annotation displayed its result); plain equations the annotator left
    out (`54*5 = $270.00`) are added where their right side really is their left side's value.
    A gold step that cannot be placed keeps its order but has no sentence to name it from.
    """
    body = text.split("####")[0]
    numbers = find_numbers(body)
    events: list[tuple[int, int | None, int | None, str, Fraction]] = []
    placed_ends: set[int] = set()
    cursor = 0
    for expression, value in gold_steps:
        later = [n for n in numbers if n.start >= cursor and n.value == value]
        after_equals = [n for n in later if _DISPLAYED_RESULT.search(body, 0, n.start)]
        hit = (after_equals or later or [None])[0]
        if hit is None:
            events.append((cursor, None, None, expression, value))
            continue
        events.append((hit.start, hit.start, hit.end, expression, value))
        placed_ends.add(hit.end)
        cursor = hit.end
    for m in _PLAIN_EQUATION.finditer(body):
        if m.end() in placed_ends:
            continue
        expression = re.sub(r"\s[x×]\s|[x×]", " * ", m.group(1)).replace("$", "")
        try:
            value = Fraction(m.group(2).replace(",", ""))
            ok = safe_evaluate(expression) == value
        except (UnsafeExpressionError, ValueError, ZeroDivisionError):
            ok = False
        if ok:
            events.append((m.start(), m.start(), m.end(), expression, value))
    events.sort(key=lambda e: e[0])
    return [(start, end, expression, value) for _, start, end, expression, value in events]


def _annotated_value(expression: str, value_text: str) -> Fraction:
    try:
        return Fraction(value_text.replace(",", "").strip())
    except (ValueError, ZeroDivisionError):
        try:
            return safe_evaluate(expression)
        except UnsafeExpressionError as exc:
            raise OfflineAbstractionError(f"annotation <<{expression}={value_text}>> has no value") from exc


def _rewrite(expression: str, computed: list[_Computed], stated: set[Fraction]) -> str:
    """Replace computed numbers in `expression` by step names (rules in the module docstring)."""
    used_here: set[int] = set()
    pieces: list[str] = []
    pos = 0
    for span in find_numbers(expression):
        pieces.append(expression[pos : span.start])
        pos = span.end
        candidates = [i for i, c in enumerate(computed) if c.value == span.value]
        if candidates and span.value in stated and all(computed[i].consumed for i in candidates):
            candidates = []
        if not candidates:
            pieces.append(span.text.replace(",", ""))
            continue
        chosen = max(candidates, key=lambda i: (i not in used_here, not computed[i].consumed, i))
        used_here.add(chosen)
        computed[chosen].consumed = True
        pieces.append(computed[chosen].name)
    pieces.append(expression[pos:])
    return _spaced("".join(pieces))


def _spaced(expression: str) -> str:
    out = re.sub(r"\s*(//|[-+*/])\s*", r" \1 ", expression.strip())
    out = re.sub(r"\(\s+", "(", out)
    out = re.sub(r"\s+\)", ")", out)
    out = re.sub(r"^ - ", "-", out)
    out = re.sub(r"^ \+ ", "", out)
    out = re.sub(r"\( - ", "(-", out)
    return re.sub(r"\s+", " ", out).strip()


def _words_to_name(words: list[str]) -> str | None:
    kept = [w for w in words if w in _KEEP or (w not in _STOPWORDS and len(w) > 1)]
    while kept and kept[-1] == "per":
        kept.pop()
    return "_".join(kept[:_MAX_NAME_WORDS]) if kept else None


def _derive_name(text: str, start: int, end: int) -> str | None:
    """A variable name from the words around a computation (rules in the module docstring)."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    after = text[end : len(text) if line_end < 0 else line_end]
    after = after[_AFTER_VALUE.match(after).end() :]  # type: ignore[union-attr]
    stop = _CLAUSE_END.search(after)
    name = _words_to_name(re.findall(r"[A-Za-z]+", (after[: stop.start()] if stop else after).lower()))
    if name is None:
        # Drop the written-out expression ("48/2 = $") that precedes the result.
        before = re.sub(r"[\d\s.,+\-*/x×()$=%]*$", "", text[line_start:start])
        clause = re.split(r"[.!?;:,]", before)[-1]
        words = re.findall(r"[A-Za-z]+", clause.lower())
        content = [w for w in words if w in _KEEP or (w not in _STOPWORDS and len(w) > 1)]
        name = "_".join(content[-_MAX_NAME_WORDS + 1 :]) if content else None
    if name is None:
        return None
    return name + "_" if keyword.iskeyword(name) else name


def _unique(name: str, taken: set[str]) -> str:
    candidate, k = name, 2
    while candidate in taken:
        candidate = f"{name}_{k}"
        k += 1
    taken.add(candidate)
    return candidate


def _format(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.10g}"
