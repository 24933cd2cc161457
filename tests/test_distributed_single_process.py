"""The distributed helpers on one process (no process group): what they return, and bad input."""

import pytest
import torch

from fastcomt.distributed import DistContext, all_reduce_sum, gathered_head_weight, init_distributed
from fastcomt.distributed.data import rank_share
from fastcomt.distributed.vocab_parallel import vocab_parallel_cross_entropy, vocab_parallel_logprobs
from fastcomt.distributed.weight_sync import gathered_buckets
from fastcomt.kernels import reference_linear_cross_entropy, reference_linear_logprobs


def test_without_a_launcher_nothing_is_initialised(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx, device = init_distributed(torch.device("cpu"))
    assert not ctx.enabled and ctx.is_main and device == torch.device("cpu")
    assert all_reduce_sum(ctx, [3, 4.5]) == [3.0, 4.5]


def test_a_bad_world_size_is_named(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE: expected an int in the environment, got 'two'"):
        init_distributed(torch.device("cpu"))


@pytest.mark.parametrize("rank, mine, padding", [(0, [0, 3, 6], 0), (1, [1, 4], 1), (2, [2, 5], 1)])
def test_rank_share_is_round_robin_padded_to_the_largest(rank, mine, padding):
    assert rank_share(list(range(7)), DistContext(rank=rank, world_size=3)) == (mine, padding)


def test_vocab_parallel_on_one_rank_is_the_full_softmax():
    g = torch.Generator().manual_seed(3)
    hidden, weight = (
        torch.randn(9, 8, generator=g, dtype=torch.float64),
        torch.randn(20, 8, generator=g, dtype=torch.float64),
    )
    targets = torch.randint(0, 20, (9,), generator=g)
    mask = torch.arange(9) % 4 != 1
    got = vocab_parallel_logprobs(hidden, weight, targets, vocab_start=0, temperature=0.7, mask=mask, chunk_rows=4)
    want = reference_linear_logprobs(hidden, weight, targets, temperature=0.7, mask=mask)
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b, rtol=1e-6, atol=1e-6)
    t = torch.where(mask, targets, -100)
    h1, w1 = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    h2, w2 = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    vocab_parallel_cross_entropy(h1, w1, t, vocab_start=0, chunk_rows=4).backward()
    reference_linear_cross_entropy(h2, w2, t).backward()
    torch.testing.assert_close(h1.grad, h2.grad, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(w1.grad, w2.grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"vocab_start": -1}, "vocab_start: expected a non-negative int, got -1"),
        ({"vocab_start": 0, "temperature": 0.0}, "temperature: expected > 0, got 0.0"),
        ({"vocab_start": 0, "chunk_rows": 0}, "chunk_rows: expected a positive int, got 0"),
    ],
)
def test_vocab_parallel_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        vocab_parallel_logprobs(torch.randn(3, 4), torch.randn(5, 4), torch.zeros(3, dtype=torch.long), **kwargs)


def test_vocab_parallel_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"hidden, weight: expected \[N, H\] or \[B, T, H\] and \[V_local, H\]"):
        vocab_parallel_logprobs(torch.randn(3, 4), torch.randn(5, 6), torch.zeros(3, dtype=torch.long), vocab_start=0)
    with pytest.raises(ValueError, match=r"targets: expected shape \[3\], got \[2\]"):
        vocab_parallel_logprobs(torch.randn(3, 4), torch.randn(5, 4), torch.zeros(2, dtype=torch.long), vocab_start=0)


def test_plain_weights_pass_through():
    w = torch.randn(4, 3)
    assert gathered_head_weight(w) is w
    with pytest.raises(ValueError, match="bucket_bytes: expected a positive int, got 0"):
        next(gathered_buckets(torch.nn.Linear(2, 2), bucket_bytes=0))
