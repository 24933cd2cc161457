"""Meta-thought parsing and the four filters, on hand-written cases with known verdicts."""

from fractions import Fraction

import pytest

from fastcomt.comt.filters import FilterSettings, consistency_filter, leak_filter, length_filter, run_filters
from fastcomt.comt.meta_thought import (
    MetaThought,
    MetaThoughtParseError,
    evaluate_meta_thought,
    parse_meta_thought,
    step_definitions,
)
from fastcomt.comt.numbers import find_numbers, question_numbers

QUESTION = (
    "Ana buys 4 pens for 3 dollars each and a notebook for 12 dollars. She pays with 50 dollars. "
    "How many dollars of change does she get?"
)

# A teacher-style reply: markdown, bullets, a wrapped step, a definition inside a sentence.
TEACHER_REPLY = """**Variables:**
- pen_count = 4
- pen_price = $3 each
- notebook_price = 12
- money_paid = 50

**Steps:**
1. Find the cost of the pens: pens_cost = pen_count * pen_price dollars.
2. Add the notebook to get the total,
   total_cost = pens_cost + notebook_price.
3. Subtract the total from the money paid.

**Answer:** money_paid - total_cost
"""


def test_parse_teacher_reply():
    thought = parse_meta_thought(TEACHER_REPLY)
    assert thought.variables == (("pen_count", "4"), ("pen_price", "3"), ("notebook_price", "12"), ("money_paid", "50"))
    assert len(thought.steps) == 3
    assert thought.steps[1] == "Add the notebook to get the total, total_cost = pens_cost + notebook_price."
    assert thought.answer == "money_paid - total_cost"
    # 50 - (4*3 + 12) = 26, by hand
    assert evaluate_meta_thought(thought) == 26


def test_render_parse_round_trip():
    thought = MetaThought((("a", "2.5"), ("b", "4")), ("c = a * b", "Halve c."), "c / 2")
    assert parse_meta_thought(thought.render()) == thought
    assert thought.render() == "Variables:\na = 2.5\nb = 4\nSteps:\n1. c = a * b\n2. Halve c.\nAnswer: c / 2"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("Variables:\na = 1\nAnswer: a", "no numbered steps"),
        ("Steps:\n1. add\n", "no `Answer:`"),
        ("Variables:\na = many\nSteps:\n1. x\nAnswer: a", "not bound to a number"),
        ("Steps:\nadd them\nAnswer: a", "numbered"),
    ],
)
def test_parse_errors(text, match):
    with pytest.raises(MetaThoughtParseError, match=match):
        parse_meta_thought(text)


def test_step_definitions_trim_units_but_not_operands():
    assert step_definitions("Compute total = a + b dollars, then stop.") == [("total", "a + b")]
    assert step_definitions("x = a / / b") == []  # never cut an operator off to make it parse
    assert step_definitions("Find the rest by subtracting.") == []


def test_numbers_in_questions_and_identifiers():
    assert [s.value for s in find_numbers("result1 = 1,200 + .5 - x2")] == [Fraction(1200), Fraction(1, 2)]
    stated = question_numbers("Twice a week she pays $1,200 for 20% of 3/4 of a dozen pies.")
    assert {
        Fraction(2),
        Fraction(1200),
        Fraction(20),
        Fraction(1, 5),
        Fraction(3),
        Fraction(4),
        Fraction(3, 4),
        Fraction(12),
    } <= stated
    assert Fraction(7) not in stated


def test_leak_filter():
    ok = "Variables:\npen_count = 4\nSteps:\n1. cost = pen_count * 3\n2. Halve it: half = cost / 2\nAnswer: half"
    assert leak_filter(ok, QUESTION).passed  # 4, 3 stated; 2 and the step numbers allowed
    leaky = ok.replace("Answer: half", "Answer: half, which is 6")
    verdict = leak_filter(leaky, QUESTION)
    assert not verdict.passed and "6" in verdict.detail
    assert not leak_filter(ok, QUESTION, allowed_constants=()).passed  # 2 is not stated: only the list allows it


def test_length_filter_bounds():
    thought = MetaThought((), ("a = 1 + 1",) * 5, "a")
    text = thought.render()
    assert length_filter(thought, text, FilterSettings(max_steps=5)).passed
    assert not length_filter(thought, text, FilterSettings(max_steps=4)).passed
    assert not length_filter(thought, text, FilterSettings(max_chars=len(text) - 1)).passed


def test_consistency_filter():
    thought = parse_meta_thought(TEACHER_REPLY)
    assert consistency_filter(thought, 26.0).passed
    assert not consistency_filter(thought, 25.0).passed
    assert not consistency_filter(thought, "26 apples").passed  # non-numeric gold never passes
    unknown = MetaThought((("a", "1"),), ("b = a + c",), "b")
    verdict = consistency_filter(unknown, 1.0)
    assert not verdict.passed and "not evaluable" in verdict.detail


def test_run_filters_reports_every_failure():
    wrong_and_leaky = TEACHER_REPLY.replace(
        "**Answer:** money_paid - total_cost", "Answer: money_paid - total_cost - 9"
    )
    outcome = run_filters(wrong_and_leaky, QUESTION, 26.0)
    assert outcome.failed == ["leak", "consistency"]
    assert run_filters(TEACHER_REPLY, QUESTION, 26.0).passed
    assert run_filters("no structure", QUESTION, 26.0).failed == ["parse"]


def test_filter_settings_validation():
    with pytest.raises(ValueError, match="max_steps"):
        FilterSettings(max_steps=-1)
    with pytest.raises(ValueError, match="min_steps"):
        FilterSettings(min_steps=5, max_steps=2)
