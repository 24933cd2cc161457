"""The LM head on sharded weights, 2 CPU ranks (gloo) against one process (fp32, 1e-5):

- an FSDP2-sharded head weight gathered once per loss call: the fused cross-entropy's loss, dh and
  dW (reduce-scattered back into the shard) equal the one-process kernel's on all the tokens;
- the vocabulary-parallel head (half the vocabulary per rank): log-probs, entropy and max-prob equal
  `linear_logprobs`; cross-entropy and the policy loss (dapo, KL, TIS, entropy bonus) with dh, dW equal
  the plain-torch full-logits references, with the forward statistics from plain torch and from the
  fused kernel.
"""

import sys

import pytest
import torch
from torchrun_launch import torchrun

from fastcomt.kernels import (
    linear_cross_entropy,
    linear_logprobs,
    reference_linear_cross_entropy,
    reference_linear_policy_loss,
)

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from distributed_head_check import POLICY, inputs  # noqa: E402

TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("head") / "results.pt"
    proc = torchrun(2, [str(out)], script="distributed_head_check.py")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return torch.load(out)


def _with_grads(fn, x):
    h = x["hidden"].clone().requires_grad_(True)
    w = x["weight"].clone().requires_grad_(True)
    loss = fn(h, w)
    if isinstance(loss, tuple):
        loss = loss[0]
    loss.backward()
    return loss.detach(), h.grad, w.grad


def test_fsdp_sharded_head_weight_matches_one_process(two_ranks):
    x = inputs()
    targets = torch.where(x["mask"], x["targets"], -100)
    loss, dh, dw = _with_grads(lambda h, w: linear_cross_entropy(h, w, targets), x)
    got = two_ranks["fsdp"]
    torch.testing.assert_close(got["loss"], loss, **TOL)
    torch.testing.assert_close(got["dh"], dh, **TOL)
    torch.testing.assert_close(got["dw"], dw, **TOL)
    assert dw.abs().sum() > 0 and not torch.allclose(dw, 2 * dw)  # a gradient to compare, not zeros


@pytest.mark.parametrize("use_kernel", [False, True])
def test_vocab_parallel_scoring_matches_linear_logprobs(two_ranks, use_kernel):
    x = inputs()
    got = two_ranks[f"vocab_parallel_kernel={use_kernel}"]
    logp, entropy, maxprob = linear_logprobs(x["hidden"], x["weight"], x["targets"], temperature=0.9, mask=x["mask"])
    torch.testing.assert_close(got["logp"], logp, **TOL)
    torch.testing.assert_close(got["entropy"], entropy, **TOL)
    torch.testing.assert_close(got["maxprob"], maxprob, **TOL)


@pytest.mark.parametrize("use_kernel", [False, True])
def test_vocab_parallel_cross_entropy_matches_full_logits(two_ranks, use_kernel):
    x = inputs()
    targets = torch.where(x["mask"], x["targets"], -100)
    loss, dh, dw = _with_grads(lambda h, w: reference_linear_cross_entropy(h.double(), w.double(), targets), x)
    got = two_ranks[f"vocab_parallel_kernel={use_kernel}"]
    torch.testing.assert_close(got["ce"], loss.float(), **TOL)
    torch.testing.assert_close(got["ce_dh"], dh, **TOL)
    torch.testing.assert_close(got["ce_dw"], dw, **TOL)


@pytest.mark.parametrize("use_kernel", [False, True])
def test_vocab_parallel_policy_loss_matches_full_logits(two_ranks, use_kernel):
    x = inputs()

    def reference(h, w):
        return reference_linear_policy_loss(
            h.double(),
            w.double(),
            x["targets"],
            x["mask"],
            x["advantages"],
            x["old"],
            ref_logprobs=x["ref"],
            behaviour_logprobs=x["behaviour"],
            **POLICY,
        )

    loss, dh, dw = _with_grads(reference, x)
    got = two_ranks[f"vocab_parallel_kernel={use_kernel}"]
    torch.testing.assert_close(got["policy"], loss.float(), **TOL)
    torch.testing.assert_close(got["policy_dh"], dh, **TOL)
    torch.testing.assert_close(got["policy_dw"], dw, **TOL)
    assert dh.abs().sum() > 0
