"""Strict accuracy (a right answer stated in the expected format) is the headline of an evaluation;
the lenient figure (any right final number, a last-number guess from cut-off output included) beside it."""

import pytest

from fastcomt.eval.report import answer_stated, render_report, summarize_rows
from fastcomt.eval.runner import summary_line
from fastcomt.formats import check_format
from fastcomt.tasks import Problem, grade_completion


def _row(correct, stated, reasons=None):
    row = {
        "correct": correct,
        "format_ok": stated,
        "finish_reason": "stop",
        "response_tokens": 10,
        "plan_tokens": 0,
        "execution_tokens": 10,
        "generated_tokens": 10,
        "steps": [],
    }
    if reasons is None:
        row["answer_stated"] = stated
    else:
        row["format_reasons"] = reasons
    return row


def test_a_last_number_guess_is_lenient_only():
    problem = Problem(id="p", question="Tom has 2 apples and buys 3 more. How many apples?", answer=5.0, source="svamp")
    cut_off = "Tom has 2 apples. 2 + 3 = 5"  # no answer statement: the grader falls back to the last number
    graded = grade_completion(cut_off, problem)
    check = check_format(cut_off, "cot", problem.question)
    assert graded.answer_correct and not check.ends_with_answer
    stated = "2 + 3 = 5. The answer is 5."
    assert (
        grade_completion(stated, problem).answer_correct
        and check_format(stated, "cot", problem.question).ends_with_answer
    )


def test_strict_and_lenient_accuracy():
    rows = {
        "svamp": [_row(True, True), _row(True, False), _row(True, False), _row(False, False)],
        "gsm8k": [_row(True, True), _row(False, True)],
    }
    summary = summarize_rows(rows)
    svamp, gsm8k = summary["benchmarks"]["svamp"], summary["benchmarks"]["gsm8k"]
    assert (svamp["strict_accuracy"], svamp["accuracy"]) == (0.25, 0.75)
    assert (gsm8k["strict_accuracy"], gsm8k["accuracy"]) == (0.5, 0.5)
    overall = summary["groups"]["overall"]
    assert overall["strict_accuracy"] == pytest.approx((0.25 + 0.5) / 2)
    assert overall["accuracy"] == pytest.approx((0.75 + 0.5) / 2)
    text = render_report({**summary, "settings": {"fmt": "cot"}})
    table = [line for line in text.splitlines() if "accuracy (%)" in line]
    assert table[0] == "| Strict accuracy (%) | 50.0 | 25.0 | 37.5 | 37.5 |"
    assert table[1] == "| Lenient accuracy (%) | 50.0 | 75.0 | 62.5 | 62.5 |"
    assert "| SVAMP | 4 | 25.0 | 75.0 |" in text
    line = summary_line(summary, "runs/eval")
    assert line.startswith("overall accuracy 0.3750 strict (answer statement in the expected format), 0.6250 lenient")


def test_rows_written_before_the_field_read_the_format_reasons():
    assert not answer_stated(_row(True, None, ["execution does not end in an answer statement"]))
    assert answer_stated(_row(True, None, ["plan has no numbered steps"]))
