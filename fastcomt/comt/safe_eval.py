"""Exact, safe evaluation of the arithmetic in meta-thoughts, via `ast` (never `eval`).

Teacher output is untrusted text, so an expression is parsed with `ast.parse(mode="eval")` and only
numbers, bound names, `+ - * /`, unary signs, parentheses and small integer powers are accepted;
anything else (calls, attributes, subscripts, comparisons, huge powers) raises `UnsafeExpressionError`.

Values are `Fraction`s, so `0.2 * 50` is exactly 10 and a consistency check compares the teacher's
answer expression with the gold answer without float noise.
"""

from __future__ import annotations

import ast
import keyword
import re
from collections.abc import Mapping
from fractions import Fraction

__all__ = ["UnsafeExpressionError", "safe_evaluate", "normalise_expression", "expression_names", "to_fraction"]


class UnsafeExpressionError(ValueError):
    """The text is not plain arithmetic over known names (or divides by zero)."""


# Exponents above this are refused: `9**9**9` must not hang the data builder.
_MAX_EXPONENT = 16
_MAX_ABS_BASE = 10**12

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*%")
_CURRENCY = re.compile(r"[$€£]")
_BINARY_OPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Pow)


def normalise_expression(text: str) -> str:
    """Rewrite the symbols people write into Python arithmetic: × ÷ − ^, `$`, `1,200`, `20%`."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    out = text.strip().strip("`").strip()
    out = out.replace("×", "*").replace("·", "*").replace("÷", "/").replace("−", "-").replace("^", "**")
    out = _CURRENCY.sub("", out)
    out = _THOUSANDS.sub("", out)
    out = _PERCENT.sub(r"(\1/100)", out)
    return out.rstrip(".").strip()


def to_fraction(value: object) -> Fraction:
    """An exact rational from an int, a float (through its shortest repr: 0.2 -> 1/5) or a Fraction."""
    if isinstance(value, bool):
        raise TypeError("value: expected a number, got bool")
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise UnsafeExpressionError(f"value: expected a finite number, got {value!r}")
        return Fraction(repr(value))
    raise TypeError(f"value: expected int, float or Fraction, got {type(value).__name__}")


def _parse(text: str) -> ast.expr:
    normalised = normalise_expression(text)
    if not normalised:
        raise UnsafeExpressionError("empty expression")
    try:
        tree = ast.parse(normalised, mode="eval")
    except SyntaxError as exc:
        raise UnsafeExpressionError(f"not an arithmetic expression: {text!r}") from exc
    return tree.body


def expression_names(text: str) -> list[str]:
    """The variable names of an arithmetic expression, in first-use order.

    Checks the shape without evaluating (so `a / (b - c)` is arithmetic whatever the values);
    raises UnsafeExpressionError on anything that is not plain arithmetic.
    """
    names: list[str] = []

    def visit(node: ast.expr) -> None:
        if isinstance(node, ast.Name):
            if keyword.iskeyword(node.id):
                raise UnsafeExpressionError(f"not a variable name: {node.id!r}")
            if node.id not in names:
                names.append(node.id)
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise UnsafeExpressionError(f"only numbers are allowed, got {node.value!r}")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, _BINARY_OPS):
            visit(node.left)
            visit(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
            visit(node.operand)
        else:
            raise UnsafeExpressionError(f"operation not allowed in arithmetic: {ast.dump(node)[:60]}")

    visit(_parse(text))
    return names


def safe_evaluate(text: str, variables: Mapping[str, object] | None = None) -> Fraction:
    """Evaluate `text` exactly with `variables` bound; raises UnsafeExpressionError on anything else."""
    env = {} if variables is None else variables
    if not isinstance(env, Mapping):
        raise TypeError(f"variables: expected a mapping of name -> number, got {type(variables).__name__}")
    return _eval(_parse(text), env)


def _eval(node: ast.expr, env: Mapping[str, object]) -> Fraction:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise UnsafeExpressionError(f"only numbers are allowed, got {node.value!r}")
        return to_fraction(node.value)
    if isinstance(node, ast.Name):
        if keyword.iskeyword(node.id) or node.id not in env:
            raise UnsafeExpressionError(f"unknown name {node.id!r}")
        return to_fraction(env[node.id])
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        value = _eval(node.operand, env)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        left = _eval(node.left, env)
        right = _eval(node.right, env)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if isinstance(node.op, (ast.Div, ast.FloorDiv)):
            if right == 0:
                raise UnsafeExpressionError("division by zero")
            return left / right if isinstance(node.op, ast.Div) else Fraction(left // right)
        if isinstance(node.op, ast.Pow):
            if right.denominator != 1 or abs(right) > _MAX_EXPONENT or abs(left) > _MAX_ABS_BASE:
                raise UnsafeExpressionError(f"power too large or not an integer exponent: {left} ** {right}")
            if left == 0 and right < 0:
                raise UnsafeExpressionError("division by zero")
            return left ** int(right)
    raise UnsafeExpressionError(f"operation not allowed in arithmetic: {ast.dump(node)[:60]}")
