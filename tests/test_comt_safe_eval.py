"""The ast-based evaluator: exact values, bound names, and refusal of anything but arithmetic."""

from fractions import Fraction

import pytest

from fastcomt.comt.safe_eval import UnsafeExpressionError, expression_names, normalise_expression, safe_evaluate


@pytest.mark.parametrize(
    ("text", "variables", "expected"),
    [
        ("0.2 * 50", None, Fraction(10)),  # exact: 0.2 is 1/5, not 0.2000000000000000111
        ("100 - 50 - 30 - 15", None, Fraction(5)),
        ("(a + b) / c", {"a": 3, "b": 4, "c": 2}, Fraction(7, 2)),
        ("-x + 2 ** 3", {"x": 1.5}, Fraction(13, 2)),
        ("560 // 10", None, Fraction(56)),
        ("$1,200 × 3", None, Fraction(3600)),
        ("20% * 25", None, Fraction(5)),
        ("total_cost ÷ 4 − 1.", {"total_cost": 10}, Fraction(3, 2)),
    ],
)
def test_values_match_hand_computation(text, variables, expected):
    assert safe_evaluate(text, variables) == expected


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "a.b",
        "x[0]",
        "open('f')",
        "lambda: 1",
        "1 if 2 else 3",
        "2 < 3",
        "9 ** 9 ** 9",  # refused before it can hang
        "2 ** 0.5",
        "'abc'",
        "True + 1",
        "unknown_name + 1",
        "1 / (2 - 2)",
        "",
        "3 +",
    ],
)
def test_refuses_non_arithmetic(text):
    with pytest.raises(UnsafeExpressionError):
        safe_evaluate(text)


def test_names_in_first_use_order_and_shape_check_without_values():
    assert expression_names("b * (a + b) / (c - c)") == ["b", "a", "c"]  # no evaluation: c - c is fine
    with pytest.raises(UnsafeExpressionError):
        expression_names("f(a)")


def test_normalise_and_type_errors():
    assert normalise_expression(" `12 x 3 ^ 2` ") == "12 x 3 ** 2"
    with pytest.raises(TypeError, match="text"):
        safe_evaluate(12)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="variables"):
        safe_evaluate("a", [("a", 1)])  # type: ignore[arg-type]
