"""Packing: shifting inside examples, greedy rows, token-budget steps, and no cross-contamination."""

import pytest
import torch
import torch.nn.functional as F

from fastcomt.kernels import linear_cross_entropy
from fastcomt.train.models import base_model, build_tiny_model, lm_head_weight
from fastcomt.train.packing import (
    IGNORE_INDEX,
    block_causal_mask,
    collate_row,
    epoch_plan,
    group_by_tokens,
    make_example,
    pack_rows,
    stack_rows,
    without_targets,
)

TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 64}


def test_targets_shift_inside_the_example():
    ex = make_example([5, 6, 7, 8], [False, False, True, True])
    assert ex.targets == (IGNORE_INDEX, 7, 8, IGNORE_INDEX)
    assert ex.num_loss_tokens == 2
    with pytest.raises(ValueError, match="train_mask"):
        make_example([1, 2], [True])


def test_rows_and_steps_by_hand():
    assert pack_rows([3, 4, 2, 5], [0, 1, 2, 3], row_tokens=6) == [[0], [1, 2], [3]]
    assert pack_rows([3, 4, 2, 5], [2, 0, 3, 1], row_tokens=6) == [[2, 0], [3], [1]]
    with pytest.raises(ValueError, match="row_tokens"):
        pack_rows([7], [0], row_tokens=6)
    assert group_by_tokens([3, 6, 5, 2, 8], tokens_per_step=8) == [[0], [1], [2, 3], [4]]


def test_epoch_plan_is_deterministic_and_complete():
    lengths = [5, 9, 3, 7, 2, 8, 4, 6, 1, 5]
    plan = epoch_plan(lengths, seed=1, epoch=0, row_tokens=12, tokens_per_step=24)
    assert plan == epoch_plan(lengths, seed=1, epoch=0, row_tokens=12, tokens_per_step=24)
    assert plan != epoch_plan(lengths, seed=1, epoch=1, row_tokens=12, tokens_per_step=24)
    flat = sorted(i for step in plan for row in step for i in row)
    assert flat == list(range(len(lengths)))
    for step in plan:
        assert all(sum(lengths[i] for i in row) <= 12 for row in step)
        assert sum(lengths[i] for row in step for i in row) <= 24 or len(step) == 1


def test_block_causal_mask_by_hand():
    expected = torch.tensor(
        [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 1, 1, 1]], dtype=torch.bool
    )
    assert torch.equal(block_causal_mask([2, 3]), expected)


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_packed_losses_equal_one_by_one(family):
    vocab = 64
    gen = torch.Generator().manual_seed(0)
    examples = [
        make_example(torch.randint(0, vocab, (n,), generator=gen).tolist(), [i >= 3 for i in range(n)])
        for n in (9, 14, 6)
    ]
    model = build_tiny_model({**TINY, "family": family}, vocab).eval()
    row = collate_row(examples)
    assert row.position_ids.tolist() == [list(range(9)) + list(range(14)) + list(range(6))]
    with torch.no_grad():
        hidden = base_model(model)(input_ids=row.input_ids, position_ids=row.position_ids, use_cache=False)
        packed = linear_cross_entropy(
            hidden.last_hidden_state[0], lm_head_weight(model), row.targets[0], reduction="none"
        )
        offset = 0
        for ex in examples:
            # Reference: the full model alone on this example, logits in float64, torch's cross-entropy.
            logits = model(input_ids=torch.tensor([ex.input_ids])).logits[0].double()
            expected = F.cross_entropy(logits, torch.tensor(ex.targets), ignore_index=IGNORE_INDEX, reduction="none")
            torch.testing.assert_close(packed[offset : offset + ex.num_tokens].double(), expected, atol=2e-5, rtol=1e-5)
            offset += ex.num_tokens
        # Control: positions that do not restart let attention cross examples, and losses change.
        leaky = base_model(model)(input_ids=row.input_ids, use_cache=False).last_hidden_state
        leaky_loss = linear_cross_entropy(leaky[0], lm_head_weight(model), row.targets[0], reduction="none")
        assert (leaky_loss[9:] - packed[9:]).abs().max() > 1e-3


def test_stacked_rows_give_each_rows_losses():
    """[R, T] stacked rows: a shorter row's padding is a segment of its own with nothing to predict,
    so every token's loss is the one it has in its own [1, T] row (and the padding's is zero)."""
    vocab = 64
    gen = torch.Generator().manual_seed(2)
    ex = lambda n: make_example(torch.randint(0, vocab, (n,), generator=gen).tolist(), [i >= 2 for i in range(n)])  # noqa: E731
    rows = [collate_row([ex(9), ex(5)]), collate_row([ex(6)]), collate_row([ex(4), ex(4), ex(3)])]
    stacked = stack_rows(rows)
    assert stacked.input_ids.shape == (3, 14) and stacked.num_tokens == 42
    assert stacked.position_ids[1].tolist() == list(range(6)) + list(range(8))
    assert stacked.seq_lens == [9, 5, 6, 8, 4, 4, 3, 3]
    assert stacked.num_loss_tokens == sum(r.num_loss_tokens for r in rows)
    model = build_tiny_model(TINY, vocab).eval()
    loss = lambda r: F.cross_entropy(  # noqa: E731
        model(input_ids=r.input_ids, position_ids=r.position_ids, use_cache=False).logits.flatten(0, 1).double(),
        r.targets.flatten(),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    )
    with torch.no_grad():
        together = loss(stacked).reshape(3, 14)
        for i, row in enumerate(rows):
            torch.testing.assert_close(together[i, : row.num_tokens], loss(row), atol=2e-5, rtol=1e-5)
            assert (together[i, row.num_tokens :] == 0).all()
    assert stack_rows(rows[:1]) is rows[0]
    with pytest.raises(ValueError, match="rows: expected at least one"):
        stack_rows([])
    with pytest.raises(ValueError, match=r"rows: expected \[1, T\] rows"):
        stack_rows([stacked, rows[0]])
    blank = without_targets(rows[0])
    assert blank.num_loss_tokens == 0 and torch.equal(blank.input_ids, rows[0].input_ids)
