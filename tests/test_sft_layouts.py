"""SFT example layouts: plans that end with the execution marker, and data files whose loss is on
the execution only (the demo's rehearsed execution documents)."""

import pytest

from fastcomt.comt.chat import sft_messages
from fastcomt.comt.offline import offline_meta_thought
from fastcomt.comt.records import ComtRecord, read_records
from fastcomt.formats import EXECUTION_MARKER, end_of_turn_ids, marker_ids, prompt_ids, text_ids
from fastcomt.tasks import synthetic_problems
from fastcomt.tokenizer import encode_chat_examples, train_tokenizer
from fastcomt.train.sft import encode_records
from fastcomt_recipes.replay import replay_problems, replay_records, write_replay_data

DOCUMENTS, SEED = 6, 3


@pytest.fixture(scope="module")
def tokenizer():
    problems = synthetic_problems(40, seed=0)
    texts = [f"{p.question}\n{offline_meta_thought(p).render()}\n{p.solution}" for p in problems]
    replayed = [f"{r.question}\n{r.target}" for r in replay_records(DOCUMENTS, seed=SEED)]
    return train_tokenizer(texts + [EXECUTION_MARKER] + replayed, kind="number_word", vocab_size=4096, number_max=1000)


def _records():
    problems = synthetic_problems(3, seed=1)
    plans = [
        ComtRecord(f"p{i}", "synthetic", "meta_thought", p.question, offline_meta_thought(p).render(), p.answer)
        for i, p in enumerate(problems)
    ]
    cot = [ComtRecord(f"c{i}", "synthetic", "cot", p.question, p.solution, p.answer) for i, p in enumerate(problems)]
    return plans, cot


def test_plan_ends_with_the_marker_exactly_as_rollouts_continue_it(tokenizer):
    plans, _ = _records()
    examples, dropped = encode_records(tokenizer, plans, row_tokens=512, plan_end="marker")
    assert dropped == 0 and len(examples) == len(plans)
    marker = marker_ids(tokenizer)
    for record, ex in zip(plans, examples):
        context = prompt_ids(tokenizer, record.question)
        trained = text_ids(tokenizer, record.target.strip()) + marker
        assert list(ex.input_ids) == context + trained  # the rollout's execution prefix, token for token
        assert ex.num_loss_tokens == len(trained)
        assert tokenizer.eos_token_id not in trained  # the plan never ends the turn


def test_end_of_turn_layout_and_cot_records_use_the_chat_template(tokenizer):
    plans, cot = _records()
    for records, plan_end in ((plans, "end_of_turn"), (cot, "marker"), (cot, "end_of_turn")):
        examples, _ = encode_records(tokenizer, records, row_tokens=512, plan_end=plan_end)
        expected = encode_chat_examples(tokenizer, [sft_messages(r.question, r.target) for r in records])
        assert [list(ex.input_ids) for ex in examples] == [list(ids) for ids, _ in expected]
        assert [ex.num_loss_tokens for ex in examples] == [sum(flags) for _, flags in expected]


def test_mixed_records_keep_their_order_and_bad_plan_end_is_rejected(tokenizer):
    plans, cot = _records()
    mixed = [plans[0], cot[0], plans[1]]
    examples, _ = encode_records(tokenizer, mixed, row_tokens=512)
    assert list(examples[0].input_ids[-len(marker_ids(tokenizer)) :]) == marker_ids(tokenizer)
    assert list(examples[1].input_ids[-len(end_of_turn_ids(tokenizer)) :]) == end_of_turn_ids(tokenizer)
    with pytest.raises(ValueError, match="data.plan_end"):
        encode_records(tokenizer, plans, row_tokens=512, plan_end="eos")


def test_long_examples_are_dropped_and_counted(tokenizer):
    plans, _ = _records()
    examples, dropped = encode_records(tokenizer, plans, row_tokens=20)
    assert examples == [] and dropped == len(plans)


def test_loss_on_execution_trains_the_execution_of_the_plan_in_context(tokenizer, tmp_path):
    path = tmp_path / "replay.jsonl"
    assert write_replay_data(path, DOCUMENTS, seed=SEED) == DOCUMENTS
    examples, dropped = encode_records(tokenizer, read_records(path), row_tokens=512, loss_on="execution")
    documents, questions = replay_problems(DOCUMENTS, seed=SEED)
    assert dropped == 0 and len(examples) == DOCUMENTS
    closing = end_of_turn_ids(tokenizer)
    assert closing and tokenizer.decode(closing).strip() != ""
    for doc, other, ex in zip(documents, questions, examples):
        trained = text_ids(tokenizer, doc.solution.strip()) + closing
        context = (
            prompt_ids(tokenizer, other.question)
            + text_ids(tokenizer, offline_meta_thought(doc).render().strip())
            + marker_ids(tokenizer)
        )
        assert list(ex.input_ids) == context + trained
        assert ex.num_loss_tokens == len(trained)  # the question and the plan are context only
        assert other.question != doc.question  # shown under an unrelated question


def test_loss_on_execution_validates_its_records_and_drops_long_ones(tokenizer):
    with pytest.raises(ValueError, match="replay_documents"):
        replay_records(-1, seed=0)
    assert replay_records(0, seed=0) == []
    records = replay_records(DOCUMENTS, seed=SEED)
    examples, dropped = encode_records(tokenizer, records, row_tokens=30, loss_on="execution")
    assert dropped == DOCUMENTS - len(examples) > 0
    plans, _ = _records()  # a plan without the marker has no execution to train
    with pytest.raises(ValueError, match="execution marker"):
        encode_records(tokenizer, plans, row_tokens=512, loss_on="execution")
    with pytest.raises(ValueError, match="loss_on"):
        encode_records(tokenizer, plans, row_tokens=512, loss_on="plan")
