"""Stage 0's arithmetic documents: lines `name = a op b = c` from worked solutions, trained on `c` only.

The base model's weak, seed-dependent arithmetic was what its CoT accuracy varied with across seeds
(recipes/DEMO.md): a worked-problem document holds a few results among ~110 tokens of copying,
these documents one result every ~9 tokens.
"""

import re

import pytest
from pretrain_capture import pretrain_examples

from fastcomt.tasks import synthetic_problems
from fastcomt_recipes.pretrain import (
    arithmetic_texts,
    execution_document,
    results_only_example,
    run_pretrain,
    solution_equations,
    tokenizer_texts,
)

EQUATION = re.compile(r"^(\w+) = ([\d +*/-]+) = (\d+)$")  # name = a op b (op c) = result


def _tokenizer():
    from fastcomt.tokenizer import train_tokenizer

    problems = synthetic_problems(64, seed=1)
    docs = [execution_document(p) for p in problems]
    return train_tokenizer(tokenizer_texts(problems) + docs, kind="number_word", vocab_size=4096, number_max=1000)


def test_solution_equations_are_the_worked_solutions_arithmetic_lines():
    problems = synthetic_problems(40, seed=0)
    lines = solution_equations(problems)
    worked = sum(p.solution.count("\n") for p in problems)  # one line per step, then "The answer is"
    assert len(lines) == worked
    for line in lines:
        _, expression, result = EQUATION.match(line).groups()
        assert eval(expression) == int(result), line  # digits, spaces and + - * / only


def test_arithmetic_texts_hold_the_asked_lines_reproducibly():
    texts = arithmetic_texts(7, 5, seed=3, families=None)
    assert len(texts) == 7 and all(len(t.splitlines()) == 5 for t in texts)
    assert all(EQUATION.match(line) for t in texts for line in t.splitlines())
    assert arithmetic_texts(7, 5, seed=3, families=None) == texts
    assert arithmetic_texts(7, 5, seed=4, families=None) != texts
    assert arithmetic_texts(0, 5, seed=3, families=None) == []


def test_arithmetic_texts_keep_to_the_given_families():
    # The demo passes its training families: the out-of-distribution family stays unseen.
    ages_names = {
        line.split(" = ")[0] for line in solution_equations(synthetic_problems(200, seed=0, families=["ages"]))
    }
    shopping_names = {
        line.split(" = ")[0]
        for line in solution_equations(synthetic_problems(200, seed=0, families=["shopping_change"]))
    }
    assert ages_names and not ages_names & shopping_names
    names = {
        line.split(" = ")[0]
        for t in arithmetic_texts(50, 8, seed=3, families=["shopping_change"])
        for line in t.splitlines()
    }
    assert names <= shopping_names


@pytest.mark.parametrize(
    ("documents", "lines", "key"),
    [
        (-1, 16, "arithmetic_documents"),
        (True, 16, "arithmetic_documents"),
        (4, 0, "arithmetic_lines"),
        (4, 2.5, "arithmetic_lines"),
    ],
)
def test_bad_arithmetic_counts_are_rejected_before_writing(tmp_path, documents, lines, key):
    out = tmp_path / "base"
    with pytest.raises(ValueError, match=f"{key}: expected"):
        run_pretrain(
            {"output_dir": str(out), "num_documents": 4, "arithmetic_documents": documents, "arithmetic_lines": lines}
        )
    assert not out.exists()


def test_results_only_example_trains_exactly_the_results():
    tokenizer = _tokenizer()
    text = "items_cost = 7 * 9 = 63\nchange = 100 - 70 = 30\ntotal_cost = 63 + 7 = 70"
    ids, trained = results_only_example(tokenizer, text)
    assert tokenizer.decode(ids).strip() == text
    assert [tokenizer.decode([t]).strip() for t, f in zip(ids, trained) if f] == ["63", "30", "70"]


def test_run_pretrain_adds_the_arithmetic_documents(tmp_path, monkeypatch):
    made, summary = pretrain_examples(
        tmp_path,
        monkeypatch,
        num_documents=12,
        arithmetic_documents=5,
        arithmetic_lines=4,
        other_question_loss_on="without_values",
    )
    assert summary["documents"] == 17 and len(made) == 17
    # the last five: four results each, drawn with the run's seed + 3
    assert [sum(flags) for _, flags in made[12:]] == [4] * 5
    from fastcomt.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(summary["tokenizer_dir"])
    texts = arithmetic_texts(5, 4, seed=3, families=None)
    assert [tokenizer.decode(ids).strip() for ids, _ in made[12:]] == texts
