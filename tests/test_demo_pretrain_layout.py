"""Stage 0's document layout: which question each pre-training document is shown under.

Regression for the demo's near-zero accuracy: with every document under an *unrelated* question,
the base model learned that the question never matters, and plan-only SFT then wrote the same
plan (or the right plan with wrong numbers) for every question. `own_question_fraction` shows a
share of the documents under their own question.
"""

import pytest
from pretrain_capture import pretrain_examples

from fastcomt.tasks import synthetic_problems
from fastcomt_recipes.pretrain import document_questions, own_question_flags, run_pretrain


def _pairs(n=400):
    docs = synthetic_problems(n, seed=0)
    others = synthetic_problems(n, seed=2)
    return docs, others


def test_fraction_zero_keeps_every_document_under_the_other_question():
    docs, others = _pairs()
    assert document_questions(docs, others, 0.0, seed=3) == [p.question for p in others]


def test_fraction_one_puts_every_document_under_its_own_question():
    docs, others = _pairs()
    assert document_questions(docs, others, 1.0, seed=3) == [p.question for p in docs]


def test_half_the_documents_get_their_own_question_reproducibly():
    docs, others = _pairs(2000)
    questions = document_questions(docs, others, 0.5, seed=7)
    own = [q == d.question for q, d in zip(questions, docs)]
    # each document gets exactly one of its two candidates
    assert all(q in (d.question, o.question) for q, d, o in zip(questions, docs, others))
    # binomial(2000, 0.5): sd 22 documents; +-100 is more than 4 sd (a draw repeated by chance
    # in `others` can only add own matches, and is rare among templated questions)
    assert 900 <= sum(own) <= 1100
    assert document_questions(docs, others, 0.5, seed=7) == questions
    assert document_questions(docs, others, 0.5, seed=8) != questions


@pytest.mark.parametrize("fraction", [-0.1, 1.5, True, "0.5", float("nan")])
def test_bad_fraction_is_rejected(fraction):
    docs, others = _pairs(4)
    with pytest.raises(ValueError, match="own_question_fraction"):
        document_questions(docs, others, fraction)


def test_mismatched_lengths_are_rejected():
    docs, others = _pairs(4)
    with pytest.raises(ValueError, match="others"):
        document_questions(docs, others[:3], 0.5)


def test_run_pretrain_rejects_a_bad_fraction_before_writing(tmp_path):
    out = tmp_path / "base"
    with pytest.raises(ValueError, match="own_question_fraction"):
        run_pretrain({"output_dir": str(out), "num_documents": 4, "own_question_fraction": 2.0})
    assert not out.exists()


def test_own_question_documents_can_hold_the_worked_execution_only(tmp_path, monkeypatch):
    # own_question_response: cot -> a document under its own question is its execution (no plan);
    # the others keep plan + execution under an unrelated question.
    from fastcomt.tokenizer import load_tokenizer

    cfg = {
        "output_dir": str(tmp_path / "base"),
        "num_documents": 24,
        "tokenizer_problems": 16,
        "own_question_fraction": 0.5,
        "own_question_response": "cot",
        "progress": False,
        "model": {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1, "intermediate_size": 32},
        "optim": {"max_steps": 1, "row_tokens": 512, "tokens_per_step": 512},
    }
    captured = []
    import fastcomt_recipes.pretrain as pretrain

    original = pretrain.encode_chat_examples

    def capture(tokenizer, conversations):  # the conversations the base model is trained on
        captured.extend(conversations)
        return original(tokenizer, conversations)

    monkeypatch.setattr(pretrain, "encode_chat_examples", capture)
    summary = run_pretrain(cfg)
    assert load_tokenizer(summary["tokenizer_dir"]) is not None
    docs = synthetic_problems(24, seed=0)
    flags = own_question_flags(24, 0.5, seed=0)
    assert 0 < sum(flags) < 24
    for doc, is_own, conversation in zip(docs, flags, captured):
        user, assistant = conversation[-2]["content"], conversation[-1]["content"]
        if is_own:
            assert user == doc.question and assistant == doc.solution.strip() and "Steps:" not in assistant
        else:
            assert "Steps:" in assistant and "Execution:" in assistant


def _tiny_tokenizer(problems):
    from fastcomt.tokenizer import train_tokenizer
    from fastcomt_recipes.pretrain import execution_document, tokenizer_texts

    docs = [execution_document(p) for p in problems]
    return train_tokenizer(tokenizer_texts(problems) + docs, kind="number_word", vocab_size=4096, number_max=1000)


def test_execution_only_example_has_the_chat_ids_and_trains_only_the_execution():
    from fastcomt.comt.chat import sft_messages
    from fastcomt.tokenizer import encode_chat_examples
    from fastcomt_recipes.pretrain import execution_document, execution_only_example

    problems = synthetic_problems(30, seed=0)
    tokenizer = _tiny_tokenizer(problems)
    for question_of, doc_of in zip(problems[:10], problems[10:20]):
        document = execution_document(doc_of)
        ids, flags = execution_only_example(tokenizer, question_of.question, document)
        chat_ids, chat_flags = encode_chat_examples(tokenizer, [sft_messages(question_of.question, document)])[0]
        assert ids == chat_ids  # the same tokens the chat layout gives: only the loss mask differs
        trained = tokenizer.decode([t for t, f in zip(ids, flags) if f])
        assert trained.startswith(doc_of.solution.strip().split("\n")[0])
        assert "Variables" not in trained and "Steps" not in trained and "Execution:" not in trained
        assert flags == sorted(flags)  # one untrained context, then one trained tail
        assert sum(flags) < sum(chat_flags)


def test_execution_only_example_rejects_a_document_without_the_marker():
    from fastcomt_recipes.pretrain import execution_only_example

    problems = synthetic_problems(4, seed=0)
    with pytest.raises(ValueError, match="document: expected the execution marker"):
        execution_only_example(_tiny_tokenizer(problems), problems[0].question, problems[0].solution)


def _trained_examples(tmp_path, monkeypatch, other_question_loss_on):
    """Every (ids, trained flags) a tiny 24-document pre-training run builds (half under their own
    question, worked solutions), and its tokenizer."""
    from fastcomt.tokenizer import load_tokenizer

    made, summary = pretrain_examples(
        tmp_path, monkeypatch, num_documents=24, other_question_loss_on=other_question_loss_on
    )
    return made, load_tokenizer(summary["tokenizer_dir"])


def test_other_question_documents_can_train_their_execution_only(tmp_path, monkeypatch):
    # other_question_loss_on: execution -> a document under another problem's question trains its
    # execution only, so the base model never learns to answer a question with a plan.
    made, tokenizer = _trained_examples(tmp_path, monkeypatch, "execution")
    flags = own_question_flags(24, 0.5, seed=0)  # the layout run_pretrain draws with seed 0
    assert len(made) == 24 and 0 < sum(flags) < 24
    for (ids, trained), is_own in zip(made, flags):
        text = tokenizer.decode([t for t, f in zip(ids, trained) if f])
        context = tokenizer.decode([t for t, f in zip(ids, trained) if not f])
        assert "Variables" not in text  # no document trains writing a plan
        assert ("Variables" in context) != is_own  # ... though the other-question ones show one


def test_a_bad_other_question_loss_on_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="other_question_loss_on"):
        run_pretrain({"output_dir": str(tmp_path / "base"), "num_documents": 4, "other_question_loss_on": "plan"})


def test_other_question_documents_can_leave_only_their_first_token_untrained(tmp_path, monkeypatch):
    # other_question_loss_on: after_first_token -> a document under another problem's question
    # trains its plan body, marker and execution, but not the token an answer begins with: only
    # worked solutions under their own question teach how to begin an answer.
    made, tokenizer = _trained_examples(tmp_path, monkeypatch, "after_first_token")
    docs = synthetic_problems(24, seed=0)
    flags = own_question_flags(24, 0.5, seed=0)  # the layout run_pretrain draws with seed 0
    assert len(made) == 24 and 0 < sum(flags) < 24
    for (ids, trained), is_own, doc in zip(made, flags, docs):
        first = trained.index(True)
        text = tokenizer.decode(ids[first:])
        if is_own:  # the worked solution, first token included
            assert text.startswith(doc.solution.strip().split(" ")[0])
        else:  # "Variables" (the start of the plan) is context; the rest of the plan is trained
            assert tokenizer.decode(ids[first - 1 : first]).strip() == "Variables"
            assert "Steps:" in text and "Execution:" in text
            assert all(trained[first:])


def test_without_first_response_token_needs_a_trained_token():
    from fastcomt_recipes.pretrain import without_first_response_token

    assert without_first_response_token(([5, 6, 7], [False, True, True])) == ([5, 6, 7], [False, False, True])
    with pytest.raises(ValueError, match="example: expected at least one trained token"):
        without_first_response_token(([5, 6], [False, False]))


def test_other_question_documents_can_leave_their_variable_values_untrained(tmp_path, monkeypatch):
    # other_question_loss_on: without_values -> as after_first_token, and the values of the plan's
    # Variables lines are context too (an unrelated question does not hold them); every other plan
    # token (names, steps, answer) and the whole execution are trained.
    made, tokenizer = _trained_examples(tmp_path, monkeypatch, "without_values")
    docs = synthetic_problems(24, seed=0)
    flags = own_question_flags(24, 0.5, seed=0)
    assert len(made) == 24 and 0 < sum(flags) < 24
    for (ids, trained), is_own, doc in zip(made, flags, docs):
        first = trained.index(True)
        if is_own:
            assert all(trained[first:])
            continue
        assert tokenizer.decode(ids[first - 1 : first]).strip() == "Variables"
        plan, _, execution = tokenizer.decode(ids[first:]).partition("Steps:")
        untrained = [tokenizer.decode([t]).strip() for t, f in zip(ids[first:], trained[first:]) if not f]
        values = [line.split(" = ")[1] for line in plan.strip().splitlines()[1:]]
        assert untrained == values and len(values) >= 2  # exactly the values, nothing else
        assert str(doc.answer).rstrip("0").rstrip(".") in execution


def test_without_variable_values_needs_the_plan_tokens():
    from fastcomt_recipes.pretrain import without_variable_values

    class NoSteps:
        unk_token_id = 0

        def convert_tokens_to_ids(self, token):
            return 0 if token == "Steps" else 5

    with pytest.raises(ValueError, match="tokenizer: expected tokens for"):
        without_variable_values(NoSteps(), ([1, 2], [True, True]))
