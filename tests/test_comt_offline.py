"""Offline meta-thoughts from annotated GSM8K solutions and synthetic plans; CoT targets."""

import ast
import json
import operator

import pytest

from fastcomt.comt.cot import clean_worked_solution, cot_target
from fastcomt.comt.filters import run_filters
from fastcomt.comt.offline import OfflineAbstractionError, annotated_meta_thought, offline_meta_thought
from fastcomt.tasks import Problem, Step, load_benchmark, plan_text, synthetic_problems

_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
}


def _run_plan(steps: tuple[str, ...], answer: str, env: dict[str, float]) -> float:
    """Independent reference: execute `name = expr` lines with Python's parser and float ops."""

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.BinOp):
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            return env[node.id]
        raise AssertionError(ast.dump(node))

    for line in steps:
        name, expr = (part.strip() for part in line.split("=", 1))
        env[name] = walk(ast.parse(expr, mode="eval").body)
    return walk(ast.parse(answer, mode="eval").body)


@pytest.fixture(scope="module")
def gsm8k_train(shared_data):
    return load_benchmark("gsm8k", split="train")[:300]


def test_first_gsm8k_problem_by_hand(gsm8k_train):
    natalia = gsm8k_train[0]
    assert annotated_meta_thought(natalia).render() == (
        "Steps:\n1. clips = 48 / 2\n2. clips_april = 48 + clips\nAnswer: clips_april"
    )


def test_repeated_values_get_different_names():
    # Two different 20s (Monday, Thursday+Friday) feed the last sum: each maps to its own step.
    solution = (
        "On Monday there are 20/100 * 25 = <<20/100*25=5>>5 cars passing the street less than on Tuesday.\n"
        "So on Monday, there are 25 - 5 = <<25-5=20>>20 cars on Happy Street.\n"
        "On Wednesday, there are 20 + 2 = <<20+2=22>>22 cars on this street.\n"
        "On Thursday and Friday, there is a total of 10 * 2 = <<10*2=20>>20 cars passing.\n"
        "On the weekend 5 * 2 = <<5*2=10>>10 cars are passing.\n"
        "So from Monday through Sunday, there are 20 + 25 + 22 + 20 + 10 = <<20+25+22+20+10=97>>97 cars.\n#### 97"
    )
    question = (
        "Most cars pass on Tuesday - 25. On Monday, {monday} less than on Tuesday, and on Wednesday, 2 more "
        "cars than on Monday. On Thursday and Friday, it is about 10 cars each day. On the weekend, traffic "
        "drops to 5 cars per day. How many cars travel down the street from Monday through Sunday?"
    )
    thought = annotated_meta_thought(Problem("happy", question.format(monday="a fifth"), 97.0, solution=solution))
    names = [s.split(" = ")[0] for s in thought.steps]
    assert thought.steps[-1] == f"{names[5]} = {names[3]} + 25 + {names[2]} + {names[1]} + {names[4]}"
    assert _run_plan(thought.steps, thought.answer, {}) == 97
    # When the question states 20 itself, a 20 whose steps are all used already stays a literal.
    stated = annotated_meta_thought(Problem("happy", question.format(monday="20%"), 97.0, solution=solution))
    assert stated.steps[-1].split(" = ")[1] == f"{names[3]} + 25 + {names[2]} + 20 + {names[4]}"


def test_annotations_and_stripped_solution_agree(gsm8k_train, shared_data):
    # The reader strips <<...>> and keeps the steps; the raw file keeps both: same abstraction.
    raw = [json.loads(line) for line in open(shared_data / "gsm8k" / "train.jsonl")][: len(gsm8k_train)]
    for problem, row in zip(gsm8k_train, raw):
        annotated = Problem(problem.id, problem.question, problem.answer, source="gsm8k", solution=row["answer"])
        try:
            expected = annotated_meta_thought(annotated)
        except OfflineAbstractionError:
            with pytest.raises(OfflineAbstractionError):
                annotated_meta_thought(problem)
            continue
        assert annotated_meta_thought(problem) == expected, problem.id


def test_kept_gsm8k_meta_thoughts_compute_the_gold_answer(gsm8k_train):
    kept = 0
    for problem in gsm8k_train:
        try:
            thought = annotated_meta_thought(problem)
        except OfflineAbstractionError:
            continue
        if not run_filters(thought.render(), problem.question, problem.answer).passed:
            continue
        kept += 1
        assert _run_plan(thought.steps, thought.answer, {}) == pytest.approx(problem.answer, rel=1e-9), problem.id
    assert kept >= 0.75 * len(gsm8k_train)  # measured 82% on the whole train split


def test_synthetic_plans_match_the_generator():
    for problem in synthetic_problems(16, seed=3):
        thought = offline_meta_thought(problem)
        assert "\n".join(thought.steps) == plan_text(problem.steps)
        assert dict(thought.variables) == {k: str(v) for k, v in problem.quantities.items()}
        env = {k: float(v) for k, v in problem.quantities.items()}
        assert _run_plan(thought.steps, thought.answer, env) == problem.answer
        assert run_filters(thought.render(), problem.question, problem.answer).passed


def test_unabstractable_problems_raise():
    with pytest.raises(OfflineAbstractionError, match="no annotated steps"):
        annotated_meta_thought(Problem("p", "What is 2 and 3?", 5.0, source="gsm8k", solution="It is 5.\n#### 5"))
    with pytest.raises(OfflineAbstractionError, match="gold answer"):
        annotated_meta_thought(Problem("p", "2 and 3?", 7.0, steps=(Step(5.0, "2+3"),), solution="2+3=5\n#### 7"))
    with pytest.raises(OfflineAbstractionError, match="not numeric"):
        annotated_meta_thought(Problem("p", "Who?", "Ann", solution="Ann"))


def test_cot_targets():
    raw = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nTotal 48+24 = <<48+24=72>>72.\n#### 1,072"
    assert clean_worked_solution(raw) == "Natalia sold 48/2 = 24 clips in May.\nTotal 48+24 = 72.\nThe answer is 1072."
    synthetic = synthetic_problems(1, seed=0)[0]
    assert cot_target(synthetic) == synthetic.solution
    with pytest.raises(ValueError, match="worked solution"):
        cot_target(Problem("p", "q?", 1.0))
