"""CCRL reward and advantages for one rollout batch of the CPU demo's shape, per backend.

8 problems x 8 executions of up to 64 tokens, 1-4 numeric steps each, graded executions with their
token step ids (`fastcomt.rewards.ccrl_batch_rewards`). On a CPU, `backend="triton"` runs the kernel
in Triton's interpreter (one interpreted program per problem) and `backend="torch"` its plain-torch
definition (`kernels/rewards_reference.py`), which `reward.backend: auto` picks for CPU tensors.

Run: .venv/bin/python -m pytest bench/test_reward_benchmark.py --benchmark-only -s
Target (CPU): the torch backend under 50 ms per batch, at least 10x faster than the interpreted
kernel (on the 2-core demo VM: about 0.6 s a batch interpreted, a few ms in torch). On a GPU the
kernel is compiled and this comparison does not apply.
"""

from __future__ import annotations

import pytest
import torch

from fastcomt.rewards import ccrl_batch_rewards
from fastcomt.tasks import GradedCompletion

PROBLEMS, EXECUTIONS, TOKENS = 8, 8, 64


def _batch():
    gen = torch.Generator().manual_seed(0)
    graded = []
    for b in range(PROBLEMS * EXECUTIONS):
        k = 1 + b % 4
        per_step = TOKENS // (k + 1)
        token_ids = tuple(s for s in range(k) for _ in range(per_step)) + (-1,) * (TOKENS - k * per_step)
        spans = tuple((s * per_step, (s + 1) * per_step) for s in range(k))
        correct = tuple(int(v) for v in torch.randint(0, 2, (k,), generator=gen))
        graded.append(
            GradedCompletion(
                "1", bool(b % 3), tuple(f"s{s}" for s in range(k)), correct, ("gold",) * k, spans, token_ids
            )
        )
    logprobs = -torch.rand(PROBLEMS * EXECUTIONS, TOKENS, generator=gen) * 2
    groups = torch.arange(PROBLEMS * EXECUTIONS) // EXECUTIONS
    return logprobs, graded, groups


@pytest.fixture(scope="module")
def batch():
    return _batch()


@pytest.fixture(scope="module")
def seconds():
    return {}


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_reward_batch(benchmark, batch, seconds, backend):
    logprobs, graded, groups = batch
    rounds = 3 if backend == "triton" and logprobs.device.type == "cpu" else 20
    result = benchmark.pedantic(
        ccrl_batch_rewards, args=(logprobs, graded, groups), kwargs={"backend": backend, "dense": True}, rounds=rounds
    )
    seconds[backend] = benchmark.stats.stats.min
    benchmark.extra_info["batch_ms_best"] = round(1000 * seconds[backend], 2)
    print(f"\nCCRL reward, {PROBLEMS}x{EXECUTIONS} executions, backend {backend}: {1000 * seconds[backend]:.1f} ms")
    assert result.rewards.shape == (PROBLEMS * EXECUTIONS,) and torch.isfinite(result.advantages).all()
    if len(seconds) == 2:
        print(f"torch backend {seconds['triton'] / seconds['torch']:.0f}x faster than the interpreted kernel")
