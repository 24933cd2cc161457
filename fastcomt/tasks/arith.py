"""A small, safe evaluator for the arithmetic written in math solutions. Stdlib only.

Used twice: the synthetic generator evaluates its step templates exactly (with `Fraction`), and
step grading re-computes the left side of a line such as `3 x (4 + 2) = 18` to check the model's
local arithmetic. `eval()` is never used: model output is untrusted text.

Grammar (usual precedence, left associative):
    expr   := term (('+' | '-') term)*
    term   := unary (('*' | 'x' | '×' | '/' | '÷') unary)*
    unary  := '-' unary | postfix
    postfix:= atom '%'*          (percent: divides by 100)
    atom   := number | name | '(' expr ')'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

__all__ = ["ArithmeticError_", "evaluate", "evaluate_exact", "binary_steps", "substitute_names", "format_number"]


class ArithmeticError_(ValueError):
    """The text is not an arithmetic expression this evaluator understands (or divides by zero)."""


# One alternation, so tokenising is a single C-level scan. 'x' is multiplication only when it stands
# alone between operands; names are tried first, so "x" alone becomes a name and is remapped below.
_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)|(?P<name>[A-Za-z_][A-Za-z_0-9]*)|(?P<op>[-+*/()%×÷−·]))"
)
_MUL = {"*", "x", "×", "·"}
_DIV = {"/", "÷"}


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos:].strip() == "":
                break
            raise ArithmeticError_(f"unexpected character {text[pos]!r} in {text!r}")
        pos = m.end()
        kind = m.lastgroup
        tok = m.group(kind)  # type: ignore[arg-type]
        if kind == "name" and tok == "x":
            kind = "op"
        if kind == "op" and tok == "−":
            tok = "-"
        out.append((kind, tok))  # type: ignore[arg-type]
    return out


class _Parser:
    __slots__ = ("toks", "i", "number", "env")

    def __init__(self, toks: list[tuple[str, str]], number: Callable[[str], Any], env: Mapping[str, Any] | None):
        self.toks = toks
        self.i = 0
        self.number = number
        self.env = env

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def expr(self) -> Any:
        val = self.term()
        while (t := self.peek()) is not None and t[0] == "op" and t[1] in "+-":
            self.i += 1
            rhs = self.term()
            val = val + rhs if t[1] == "+" else val - rhs
        return val

    def term(self) -> Any:
        val = self.unary()
        while (t := self.peek()) is not None and t[0] == "op" and (t[1] in _MUL or t[1] in _DIV):
            self.i += 1
            rhs = self.unary()
            if t[1] in _MUL:
                val = val * rhs
            else:
                if rhs == 0:
                    raise ArithmeticError_("division by zero")
                val = val / rhs
        return val

    def unary(self) -> Any:
        t = self.peek()
        if t is not None and t == ("op", "-"):
            self.i += 1
            return -self.unary()
        if t is not None and t == ("op", "+"):
            self.i += 1
            return self.unary()
        return self.postfix()

    def postfix(self) -> Any:
        val = self.atom()
        while (t := self.peek()) is not None and t == ("op", "%"):
            self.i += 1
            val = val / 100
        return val

    def atom(self) -> Any:
        t = self.peek()
        if t is None:
            raise ArithmeticError_("expression ends early")
        self.i += 1
        kind, tok = t
        if kind == "num":
            return self.number(tok.replace(",", ""))
        if kind == "name":
            if self.env is None or tok not in self.env:
                raise ArithmeticError_(f"unknown name {tok!r}")
            return self.env[tok]
        if tok == "(":
            val = self.expr()
            if self.peek() != ("op", ")"):
                raise ArithmeticError_("unbalanced parentheses")
            self.i += 1
            return val
        raise ArithmeticError_(f"unexpected {tok!r}")


def evaluate(text: str, env: Mapping[str, Any] | None = None, *, number: Callable[[str], Any] = float) -> Any:
    """Evaluate arithmetic `text`; names are looked up in `env`.

    number: builds a value from a digit string (float by default; `Fraction` for exact results).
    Raises ArithmeticError_ (a ValueError) on anything that is not plain arithmetic.
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    toks = _tokens(text)
    if not toks:
        raise ArithmeticError_("empty expression")
    p = _Parser(toks, number, env)
    val = p.expr()
    if p.i != len(toks):
        raise ArithmeticError_(f"trailing tokens in {text!r}")
    return val


_NAME = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")


def format_number(value: Any) -> str:
    """Print a number the way a solution writes it: 7 not 7.0, 2.5, -3, fractions as decimals."""
    if isinstance(value, Fraction):
        if value.denominator == 1:
            return str(value.numerator)
        value = float(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return f"{value:.6g}" if abs(value) < 1e15 else repr(value)
    return str(value)


def substitute_names(symbolic: str, env: Mapping[str, Any]) -> str:
    """Replace every variable name in `symbolic` by its formatted value: "a - b" -> "12 - 5"."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(0)
        if name not in env:
            raise KeyError(f"symbolic expression names {name!r}, which has no value")
        return format_number(env[name])

    return _NAME.sub(repl, symbolic)


def evaluate_exact(text: str, env: Mapping[str, Any] | None = None) -> Fraction:
    """Exact rational evaluation (used where integrality must be checked, e.g. by the generator)."""
    exact_env = None if env is None else {k: Fraction(v) for k, v in env.items()}
    return evaluate(text, exact_env, number=Fraction)


class _Traced:
    """A number that records every binary operation applied to it, in evaluation order."""

    __slots__ = ("value", "log")

    def __init__(self, value: float, log: list[tuple[str, float]]):
        self.value = value
        self.log = log

    def _op(self, other: _Traced, symbol: str, value: float) -> _Traced:
        self.log.append((f"{format_number(self.value)} {symbol} {format_number(other.value)}", value))
        return _Traced(value, self.log)

    def __add__(self, other: _Traced) -> _Traced:
        return self._op(other, "+", self.value + other.value)

    def __sub__(self, other: _Traced) -> _Traced:
        return self._op(other, "-", self.value - other.value)

    def __mul__(self, other: _Traced) -> _Traced:
        return self._op(other, "*", self.value * other.value)

    def __truediv__(self, other: _Traced | int) -> _Traced:
        if isinstance(other, int):  # percent postfix divides by the literal 100
            other = _Traced(float(other), self.log)
        return self._op(other, "/", self.value / other.value)

    def __neg__(self) -> _Traced:
        return _Traced(-self.value, self.log)

    def __eq__(self, other: object) -> bool:
        return (other.value if isinstance(other, _Traced) else other) == self.value

    __hash__ = None  # type: ignore[assignment]


def binary_steps(text: str) -> list[tuple[str, float]]:
    """Each binary operation of `text` as (expression over its operand values, result), in order.

    "( ( 5.0 + 3.0 ) * 2.0 )" -> [("5 + 3", 8.0), ("8 * 2", 16.0)]: the intermediate results a
    solution writing the formula out step by step would state.
    """
    log: list[tuple[str, float]] = []
    evaluate(text, number=lambda s: _Traced(float(s), log))
    return log
