"""Seeded, templated multi-step arithmetic word problems. Stdlib only.

Every problem is built from a family template: the given numbers (`quantities`, by variable name),
an ordered list of steps over those names (`Step.symbolic`), and a question text that mentions every
given number exactly as written. Step values are computed exactly (rationals) and a draw is rejected
unless every intermediate value is a non-negative integer below a small ceiling, so a tiny model can
learn the arithmetic.

The execution text (`Problem.solution`) is deliberately regular: one line per step,
`name = expression = value`, then `The answer is N.`. A plan (meta-thought) is the same lines with
variable names only (`name = symbolic`); both are derived from `Problem.steps`.

Numbers in synthetic problems are Python ints (exact), which are valid wherever a float is expected.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .arith import evaluate_exact, format_number, substitute_names
from .problem import Problem, Step

__all__ = ["SYNTHETIC_FAMILIES", "synthetic_problems", "execution_text", "plan_text"]

# Values above this are rejected: small numbers keep the arithmetic learnable by a tiny model.
_MAX_VALUE = 999
_MAX_DRAWS = 1000

_PEOPLE = (
    ("Ana", "she"),
    ("Ben", "he"),
    ("Mia", "she"),
    ("Sam", "he"),
    ("Lena", "she"),
    ("Tom", "he"),
    ("Zoe", "she"),
    ("Omar", "he"),
    ("Ravi", "he"),
    ("Kim", "she"),
    ("Nora", "she"),
    ("Leo", "he"),
)


@dataclass(frozen=True)
class _Draw:
    """One family instance before evaluation: text, given numbers, steps as (name, symbolic)."""

    question: str
    quantities: dict[str, int]
    steps: tuple[tuple[str, str], ...]


def _person(rng: random.Random) -> tuple[str, str]:
    return rng.choice(_PEOPLE)


def _shopping_change(rng: random.Random) -> _Draw:
    name, he = _person(rng)
    item, other = rng.choice(
        (("pens", "notebook"), ("apples", "melon"), ("stickers", "card"), ("socks", "hat"), ("cups", "plate"))
    )
    q = {
        "item_count": rng.randint(2, 9),
        "item_price": rng.randint(1, 9),
        "other_price": rng.randint(2, 15),
        "money_paid": rng.choice((20, 50, 100)),
    }
    text = (
        f"{name} buys {q['item_count']} {item} for {q['item_price']} dollars each and a {other} for "
        f"{q['other_price']} dollars. {he.capitalize()} pays with {q['money_paid']} dollars. "
        f"How many dollars of change does {he} get?"
    )
    steps: tuple[tuple[str, str], ...] = (
        ("items_cost", "item_count * item_price"),
        ("total_cost", "items_cost + other_price"),
        ("change", "money_paid - total_cost"),
    )
    return _Draw(text, q, steps)


def _rates_time(rng: random.Random) -> _Draw:
    if rng.random() < 0.5:
        item = rng.choice(("toys", "bottles", "boxes", "cakes", "shirts"))
        q = {
            "items_per_hour": rng.randint(3, 12),
            "hours_monday": rng.randint(2, 8),
            "hours_tuesday": rng.randint(2, 8),
            "items_broken": rng.randint(1, 9),
        }
        text = (
            f"A machine makes {q['items_per_hour']} {item} per hour. It works {q['hours_monday']} hours on "
            f"Monday and {q['hours_tuesday']} hours on Tuesday. Then {q['items_broken']} of the {item} are "
            f"broken. How many good {item} are left?"
        )
        steps: tuple[tuple[str, str], ...] = (
            ("total_hours", "hours_monday + hours_tuesday"),
            ("items_made", "total_hours * items_per_hour"),
            ("items_good", "items_made - items_broken"),
        )
    else:
        name, he = _person(rng)
        q = {"speed": rng.randint(20, 60), "hours_driven": rng.randint(2, 6), "km_walked": rng.randint(1, 9)}
        text = (
            f"{name} drives at {q['speed']} km per hour for {q['hours_driven']} hours. Then {he} walks "
            f"{q['km_walked']} km. How many km does {he} travel in total?"
        )
        steps = (
            ("km_driven", "speed * hours_driven"),
            ("total_km", "km_driven + km_walked"),
        )
    return _Draw(text, q, steps)


def _sharing_division(rng: random.Random) -> _Draw:
    name, he = _person(rng)
    item = rng.choice(("candies", "marbles", "cookies", "stickers", "grapes"))
    q = {
        "bag_count": rng.randint(2, 9),
        "per_bag": rng.randint(3, 12),
        "kept": rng.randint(1, 9),
        "friend_count": rng.randint(2, 6),
    }
    text = (
        f"{name} has {q['bag_count']} bags with {q['per_bag']} {item} in each bag. {he.capitalize()} keeps "
        f"{q['kept']} {item} and shares the rest equally among {q['friend_count']} friends. "
        f"How many {item} does each friend get?"
    )
    steps: tuple[tuple[str, str], ...] = (
        ("total_items", "bag_count * per_bag"),
        ("items_shared", "total_items - kept"),
        ("items_each", "items_shared / friend_count"),
    )
    return _Draw(text, q, steps)


def _percent_discount(rng: random.Random) -> _Draw:
    name, he = _person(rng)
    item = rng.choice(("jacket", "lamp", "game", "chair", "backpack"))
    q = {
        "price": rng.choice(range(20, 201, 20)),
        "discount_percent": rng.choice((10, 20, 25, 50)),
        "item_count": rng.randint(2, 5),
    }
    text = (
        f"A {item} costs {q['price']} dollars. The store gives {q['discount_percent']} percent off. "
        f"{name} buys {q['item_count']} of them. How many dollars does {he} pay?"
    )
    steps: tuple[tuple[str, str], ...] = (
        ("discount", "price * discount_percent / 100"),
        ("sale_price", "price - discount"),
        ("total_paid", "sale_price * item_count"),
    )
    return _Draw(text, q, steps)


def _area_perimeter(rng: random.Random) -> _Draw:
    if rng.random() < 0.5:
        q = {"length": rng.randint(3, 20), "width": rng.randint(2, 15), "price_per_meter": rng.randint(2, 9)}
        text = (
            f"A garden is {q['length']} meters long and {q['width']} meters wide. A fence costs "
            f"{q['price_per_meter']} dollars per meter. How many dollars does it cost to fence the garden?"
        )
        steps: tuple[tuple[str, str], ...] = (
            ("side_sum", "length + width"),
            ("perimeter", "2 * side_sum"),
            ("fence_cost", "perimeter * price_per_meter"),
        )
    else:
        q = {"length": rng.randint(2, 12), "width": rng.randint(2, 12), "tiles_per_box": rng.choice((2, 3, 4, 5, 6))}
        text = (
            f"A room is {q['length']} meters long and {q['width']} meters wide. One tile covers one square "
            f"meter and a box holds {q['tiles_per_box']} tiles. How many boxes of tiles cover the floor?"
        )
        steps = (("area", "length * width"), ("boxes", "area / tiles_per_box"))
    return _Draw(text, q, steps)


def _ages(rng: random.Random) -> _Draw:
    name, _ = _person(rng)
    q = {
        "child_age": rng.randint(3, 12),
        "age_factor": rng.randint(2, 5),
        "grandpa_gap": rng.randint(18, 35),
        "years_later": rng.randint(2, 10),
    }
    text = (
        f"{name} is {q['child_age']} years old. {name}'s mother is {q['age_factor']} times as old as {name}. "
        f"{name}'s grandfather is {q['grandpa_gap']} years older than the mother. "
        f"How old will the grandfather be in {q['years_later']} years?"
    )
    steps: tuple[tuple[str, str], ...] = (
        ("mother_age", "child_age * age_factor"),
        ("grandpa_age", "mother_age + grandpa_gap"),
        ("grandpa_future_age", "grandpa_age + years_later"),
    )
    return _Draw(text, q, steps)


def _savings_weeks(rng: random.Random) -> _Draw:
    name, he = _person(rng)
    thing = rng.choice(("bike", "guitar", "tablet", "scooter", "tent"))
    q = {
        "weekly_pay": rng.randint(10, 40),
        "weekly_spend": rng.randint(2, 9),
        "weeks": rng.randint(3, 10),
        "gift": rng.randint(5, 30),
        "thing_price": rng.randint(40, 200),
    }
    text = (
        f"{name} earns {q['weekly_pay']} dollars a week and spends {q['weekly_spend']} dollars a week. "
        f"After {q['weeks']} weeks {he} also gets a gift of {q['gift']} dollars. Then {he} buys a {thing} for "
        f"{q['thing_price']} dollars. How many dollars does {he} have left?"
    )
    steps: tuple[tuple[str, str], ...] = (
        ("weekly_saving", "weekly_pay - weekly_spend"),
        ("total_saved", "weekly_saving * weeks"),
        ("total_money", "total_saved + gift"),
        ("money_left", "total_money - thing_price"),
    )
    return _Draw(text, q, steps)


def _inventory(rng: random.Random) -> _Draw:
    name, he = _person(rng)
    item, verb = rng.choice((("apples", "eats"), ("pencils", "loses"), ("eggs", "uses"), ("books", "gives away")))
    q = {
        f"{item}_start": rng.randint(10, 40),
        f"{item}_gone": rng.randint(1, 9),
        "box_count": rng.randint(2, 6),
        "per_box": rng.randint(2, 12),
    }
    text = (
        f"{name} has {q[f'{item}_start']} {item}. {he.capitalize()} {verb} {q[f'{item}_gone']} of them. "
        f"Then {he} buys {q['box_count']} boxes with {q['per_box']} {item} in each box. "
        f"How many {item} does {he} have now?"
    )
    steps: tuple[tuple[str, str], ...] = (
        (f"{item}_left", f"{item}_start - {item}_gone"),
        (f"{item}_bought", "box_count * per_box"),
        (f"{item}_total", f"{item}_left + {item}_bought"),
    )
    return _Draw(text, q, steps)


_FAMILY_BUILDERS: dict[str, Callable[[random.Random], _Draw]] = {
    "shopping_change": _shopping_change,
    "rates_time": _rates_time,
    "sharing_division": _sharing_division,
    "percent_discount": _percent_discount,
    "area_perimeter": _area_perimeter,
    "ages": _ages,
    "savings_weeks": _savings_weeks,
    "inventory": _inventory,
}

SYNTHETIC_FAMILIES: tuple[str, ...] = tuple(_FAMILY_BUILDERS)


def execution_text(steps: Sequence[Step], answer: object) -> str:
    """The execution: `name = expression = value` per step, then `The answer is N.`"""
    lines = [f"{s.name} = {s.expression} = {format_number(s.value)}" for s in steps]
    lines.append(f"The answer is {format_number(answer)}.")
    return "\n".join(lines)


def plan_text(steps: Sequence[Step]) -> str:
    """The plan over variable names only: `name = symbolic` per step, no computed numbers."""
    return "\n".join(f"{s.name} = {s.symbolic}" for s in steps)


def _instantiate(draw: _Draw) -> tuple[Step, ...] | None:
    """Evaluate the draw's steps exactly; None when any value is not a small non-negative integer."""
    env: dict[str, object] = dict(draw.quantities)
    steps = []
    for name, symbolic in draw.steps:
        value = evaluate_exact(symbolic, env)
        if value.denominator != 1 or value < 0 or value > _MAX_VALUE:
            return None
        expression = substitute_names(symbolic, env)
        env[name] = int(value)
        steps.append(Step(value=int(value), expression=expression, name=name, symbolic=symbolic))
    return tuple(steps)


def synthetic_problems(n: int, *, seed: int, families: Sequence[str] | None = None) -> list[Problem]:
    """`n` problems, cycling through `families` (default: all of SYNTHETIC_FAMILIES) in order.

    Deterministic in (n, seed, families); a larger n with the same seed and families extends the
    smaller list (problem i depends only on the draws before it).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n: expected a non-negative int, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
    if families is None:
        chosen = SYNTHETIC_FAMILIES
    else:
        if isinstance(families, str):
            raise TypeError("families: expected a sequence of family names, got a single str")
        chosen = tuple(families)
        unknown = [f for f in chosen if f not in _FAMILY_BUILDERS]
        if unknown or not chosen:
            raise ValueError(f"families: expected a non-empty subset of {SYNTHETIC_FAMILIES}, got {list(families)}")
    rng = random.Random(seed)
    problems: list[Problem] = []
    for i in range(n):
        family = chosen[i % len(chosen)]
        build = _FAMILY_BUILDERS[family]
        for _ in range(_MAX_DRAWS):
            draw = build(rng)
            steps = _instantiate(draw)
            if steps is not None:
                break
        else:  # pragma: no cover - every family accepts a large share of its draws
            raise RuntimeError(f"family {family!r} rejected {_MAX_DRAWS} draws in a row")
        answer = steps[-1].value
        problems.append(
            Problem(
                id=f"synthetic-{seed}-{i}",
                question=draw.question,
                answer=answer,
                steps=steps,
                source="synthetic",
                solution=execution_text(steps, answer),
                quantities=dict(draw.quantities),
                family=family,
            )
        )
    return problems
