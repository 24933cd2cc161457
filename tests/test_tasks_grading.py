"""Answer extraction and matching: hand-written cases for each normalisation."""

import re

import pytest

from fastcomt.tasks import answers_match, extract_answer, normalize_text_answer, parse_number


@pytest.mark.parametrize(
    "text,expected",
    [
        ("She has 5 left.\nThe answer is 18.", "18"),
        ("The answer is 3.5.", "3.5"),
        ("The final answer is: $1,234.50", "$1,234.50"),
        ("Answer: -7", "-7"),
        ("step 1\n#### 1,234", "1,234"),
        ("so \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("The answer is 4. Wait. The answer is 5.", "5"),  # the last statement wins
        ("The answer is Mrs. Hilt.", "Mrs. Hilt"),
        ("The answer is 7. Next, we check.", "7"),
        ("I think 12 plus 3 gives 15", "15"),  # last-number fallback
        ("no numbers here", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_extract_answer_options():
    text = "The answer is 3.\n#### 4"
    assert extract_answer(text) == "3"
    assert extract_answer(text, patterns=("hashes",)) == "4"
    assert extract_answer("about 12", patterns=("answer_is",), last_number_fallback=False) is None
    assert extract_answer("Result => 42!", patterns=(re.compile(r"Result => (\d+)"),)) == "42"
    with pytest.raises(ValueError, match="patterns"):
        extract_answer("x", patterns=("nope",))
    with pytest.raises(TypeError, match="text"):
        extract_answer(12)


@pytest.mark.parametrize(
    "pred,gold",
    [
        ("1,234", 1234),
        ("$18", 18.0),
        ("18 dollars", 18),
        ("25%", 25),
        ("25%", 0.25),
        ("3/4", 0.75),
        ("\\frac{3}{4}", 0.75),
        ("1 1/2", 1.5),
        ("-2", -2.0),
        ("−2", -2),
        ("2.50", 2.5),
        ("$-5", -5),
        ("12 cm^2", 12),
        ("1e-05", 1e-05),
        ("18.00001", 18),
        ("x = 18", 18),
        (18, "18"),
        ("4,656", "4,656"),
        ("3/10", "3/10"),
        ("(B) surplus", "surplus"),
        ("Shortage.", "shortage"),
        ("Mrs.  Hilt", "Mrs. Hilt"),
        ("3 and 5", "3; 5"),
        ("3; 5", "3; 5"),
        ("0.3", 0.30000000000000004),
    ],
)
def test_answers_match_true(pred, gold):
    assert answers_match(pred, gold)


@pytest.mark.parametrize(
    "pred,gold",
    [
        ("19", 18),
        ("18.01", 18),
        ("-18", 18),
        ("0", 2e-06),
        ("3/4", 0.7),
        ("surplus", "shortage"),
        ("3", "3; 5"),
        ("5; 3", "3; 5"),
        (None, 18),
        ("", 18),
        ("eighteen", 18),
        ("2:35 P.M.", "2:25 P.M."),
        (float("nan"), 1.0),
        ("7", float("inf")),
    ],
)
def test_answers_match_false(pred, gold):
    assert not answers_match(pred, gold)


def test_tolerance_is_configurable():
    assert not answers_match("3.33", 10 / 3)
    assert answers_match("3.33", 10 / 3, rel_tol=1e-2)


def test_parse_number_strict_and_lenient():
    assert parse_number("2:35 P.M.", strict=True) is None
    assert parse_number("3 or 4", strict=True) is None
    assert parse_number("about 3 or 4") == 3.0
    assert parse_number("Champ") is None
    assert parse_number("0.5 cm²", strict=True) == 0.5
    assert normalize_text_answer("  **(C) Web Page  Design class.** ") == "web page design class"


def test_bad_types():
    with pytest.raises(TypeError, match="gold"):
        answers_match("1", [1])
    with pytest.raises(TypeError, match="predicted"):
        answers_match(True, 1)
