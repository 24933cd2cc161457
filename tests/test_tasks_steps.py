"""Numeric steps: which numbers count as computed, their spans, correctness rules, token mapping."""

import ast
import operator
import random

import pytest

from fastcomt.tasks import (
    STEP_ARITHMETIC,
    STEP_GOLD,
    STEP_OUTCOME,
    Problem,
    Step,
    char_to_token_spans,
    find_steps,
    grade_completion,
    step_correctness,
    synthetic_problems,
    token_step_ids,
    values_match,
)
from fastcomt.tasks.arith import binary_steps, evaluate


def _numbers(text, steps):
    return [text[s.start : s.end] for s in steps]


def test_results_operands_question_numbers_and_answer():
    question = "Janet's ducks lay 16 eggs per day. She eats 3 and bakes with 4. She sells each egg for $2."
    text = (
        "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\n"
        "She makes 9 * 2 = $18 every day.\n"
        "That is 16 eggs laid and 18 dollars.\n"  # restated numbers: not new steps
        "The answer is 18."
    )
    steps = find_steps(text, question)
    assert _numbers(text, steps) == ["9", "18"]
    assert [(s.expression, s.arithmetic_ok) for s in steps] == [("16 - 3 - 4", True), ("9 * 2", True)]
    assert steps[1].start == text.index("$18") + 1


def test_prose_results_chains_lists_and_wrong_arithmetic():
    question = "Ana has 50 apples. 20% are red. She buys 5 bags of 3 and gives 2 to each friend."
    text = (
        "1. First, 20% of 50 is 10.\n"
        "2. Then (5 + 3) x 2 = 16 and 16 ÷ 4 = 5.\n"
        "So 2 * 5 = 10 * 3 = 30 apples, and x = 77.\n"
        "#### 30"
    )
    steps = find_steps(text, question)
    assert [(text[s.start : s.end], s.expression, s.arithmetic_ok) for s in steps] == [
        ("10", None, None),  # prose: new value, not in the question
        ("16", "(5 + 3) x 2", True),
        ("5", "16 ÷ 4", False),  # an equation result is a step even when 5 is in the question
        ("10", "2 * 5", True),
        ("30", "10 * 3", True),  # the result "10" also opens the next chain
        ("77", None, None),
    ]


def test_decimals_commas_negatives_percent():
    text = "Cost = 1,200 * 0.15 = 180.00 dollars; change = 20 - 25 = -5; rate = 30 * 50% = 15%."
    steps = find_steps(text, "1,200 0.15 20 25 30 50%")
    assert [(s.value, s.decimals, s.arithmetic_ok) for s in steps] == [
        (180.0, 2, True),
        (-5.0, 0, True),
        (15.0, 0, True),
    ]


def test_values_match_rounding():
    assert values_match(3.33, 2, 10 / 3, -1)  # written rounded, gold exact
    assert values_match(3.333, 3, 3.33, 2)  # both written rounded
    assert not values_match(3.0, 0, 3.33, 2)
    assert not values_match(3.4, 1, 10 / 3, -1)
    assert values_match(0.3, 1, 0.1 + 0.2, -1)


def test_step_correctness_rule_order():
    text = "a = 2 + 2 = 4\nb = 4 * 3 = 13\nso 99 left."
    steps = find_steps(text, "2 3")
    z, src = step_correctness(steps, [(4.0, 0), (12.0, 0)], answer_correct=True)
    assert (z, src) == ([1, 0, 0], [STEP_GOLD] * 3)
    z, src = step_correctness(steps, None, answer_correct=True)
    assert (z, src) == ([1, 0, 1], [STEP_ARITHMETIC, STEP_ARITHMETIC, STEP_OUTCOME])
    z, _ = step_correctness(steps, [], answer_correct=False)
    assert z == [1, 0, 0]


def _python_eval(expr):
    ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}

    def walk(n):
        if isinstance(n, ast.BinOp):
            return ops[type(n.op)](walk(n.left), walk(n.right))
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub):
            return -walk(n.operand)
        return n.value

    return walk(ast.parse(expr, mode="eval").body)


def test_arith_matches_python_on_random_expressions():
    rng = random.Random(0)
    for _ in range(300):
        expr = str(rng.randint(1, 50))
        for _ in range(rng.randint(1, 4)):
            op = rng.choice("+-*/")
            operand = str(rng.randint(1, 50))
            expr = f"({expr}) {op} {operand}" if rng.random() < 0.3 else f"{expr} {op} {operand}"
        assert evaluate(expr) == pytest.approx(_python_eval(expr), rel=1e-12)
        # the chain evaluator inside find_steps agrees with Python too
        value = _python_eval(expr)
        written = expr.replace(" ", "") if rng.random() < 0.3 else expr  # "60/100 * 5" and "9*2" forms too
        (step,) = find_steps(f"so {written} = {value!r}", ())
        assert step.arithmetic_ok and step.expression == written, written
        (wrong,) = find_steps(f"so {written} = {value + 1!r}", ())
        assert wrong.arithmetic_ok is False, written
    assert binary_steps("( ( 5.0 + 3.0 ) * 2.0 )") == [("5 + 3", 8.0), ("8 * 2", 16.0)]
    assert evaluate("3 × 4 − 20%") == pytest.approx(11.8)


def test_char_to_token_spans_hand_offsets():
    text = "x = 12 + 345 = 357"
    # digit-split tokens: "x", " =", " ", "1", "2", " +", " ", "3", "4", "5", " =", " ", "3", "5", "7", then EOS (0, 0)
    offsets = [
        (0, 1),
        (1, 3),
        (3, 4),
        (4, 5),
        (5, 6),
        (6, 8),
        (8, 9),
        (9, 10),
        (10, 11),
        (11, 12),
        (12, 14),
        (14, 15),
        (15, 16),
        (16, 17),
        (17, 18),
        (0, 0),
    ]
    steps = find_steps(text, ())
    spans = char_to_token_spans([(s.start, s.end) for s in steps], offsets)
    assert spans == [(12, 15)]
    assert token_step_ids(spans, len(offsets)) == [-1] * 12 + [0, 0, 0] + [-1]
    # a token carrying a leading space and digits together still counts
    assert char_to_token_spans([(4, 6)], [(0, 3), (3, 6), (6, 8)]) == [(1, 2)]
    assert char_to_token_spans([(4, 6)], [(0, 2), (2, 3)]) == [None]
    with pytest.raises(ValueError, match="spans"):
        char_to_token_spans([(3, 3)], offsets)


def test_token_spans_with_a_trained_tokenizer():
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers, trainers

    problems = synthetic_problems(64, seed=2)
    for individual_digits in (True, False):
        tok = tokenizers.Tokenizer(models.BPE(unk_token="[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=individual_digits)]
        )
        tok.train_from_iterator(
            [p.solution for p in problems], trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]"])
        )
        for p in problems[:16]:
            enc = tok.encode(p.solution)
            graded = grade_completion(p.solution, p, enc.offsets)
            assert graded.answer_correct and list(graded.step_correct) == [1] * len(p.steps)
            assert [s.value for s in graded.steps] == [s.value for s in p.steps]
            for k, (step, (a, b)) in enumerate(zip(graded.steps, graded.token_spans)):
                covered = "".join(p.solution[s:e] for s, e in enc.offsets[a:b])
                assert covered == p.solution[step.start : step.end]  # exactly the digits, split or not
                assert graded.token_step_ids[a:b] == (k,) * (b - a)
            assert sum(i >= 0 for i in graded.token_step_ids) == sum(b - a for a, b in graded.token_spans)


def test_grade_completion_gold_outcome_and_unmapped():
    p = Problem(
        id="t", question="Tom has 12 apples and eats 5.", answer=7.0, steps=(Step(value=7.0, expression="12-5"),)
    )
    good = grade_completion("apples_left = 12 - 5 = 7\nThe answer is 7.", p)
    assert good.answer_correct and good.step_correct == (1,) and good.step_source == (STEP_GOLD,)
    bad = grade_completion("apples_left = 12 - 5 = 8\nThe answer is 8.", p)
    assert not bad.answer_correct and bad.step_correct == (0,)
    no_gold = Problem(id="u", question=p.question, answer=7.0)
    g = grade_completion("She has 7 now. The answer is 7.", no_gold)
    assert g.answer == "7" and [s.start for s in g.steps] == [8]  # prose step; the answer statement is not one
    assert g.step_source == (STEP_OUTCOME,) and g.step_correct == (1,)
    assert grade_completion("She has 7 now. The answer is 6.", no_gold).step_correct == (0,)
    # offsets that stop early: the step past them is dropped rather than given no tokens
    text = "a = 1 + 1 = 2\nb = 2 + 2 = 4\nThe answer is 4."
    g = grade_completion(text, no_gold, [(0, 14)])
    assert [s.value for s in g.steps] == [2.0] and g.token_spans == ((0, 1),)
    with pytest.raises(TypeError, match="problem"):
        grade_completion(text, "not a problem")
