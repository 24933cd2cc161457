"""The fused heads of TRL 1.16 and verl 0.9.1 as bench/run.py loads them (kernel files only): TRL's
log-probs, entropy and gradients against torch in float64, on CPU, where TRL folds its tiles in torch."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.peers import load_trl_chunked_logprob, load_verl_linear_cross_entropy  # noqa: E402


def test_trl_chunked_logprob_matches_torch_in_float64():
    trl = load_trl_chunked_logprob()
    g = torch.Generator().manual_seed(5)
    hidden = torch.randn(9, 16, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(70, 16, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 70, (9,), generator=g)
    # A vocabulary tile of 32 makes TRL walk three tiles of the 70-entry vocabulary.
    logp, entropy, *_ = trl.ChunkedLogProbFunction.apply(
        hidden, weight, None, targets, 1.0, 32, None, 1.0, ("entropy",)
    )
    coef = torch.randn(9, generator=g, dtype=torch.float64)
    (coef * logp).sum().backward()

    h, w = hidden.detach().clone().requires_grad_(), weight.detach().clone().requires_grad_()
    log_softmax = torch.log_softmax(h @ w.T, dim=-1)
    want_logp = log_softmax.gather(1, targets[:, None])[:, 0]
    (coef * want_logp).sum().backward()
    # TRL computes in float32 whatever the input dtype: float32-level agreement.
    tol = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logp.double(), want_logp.detach(), **tol)
    torch.testing.assert_close(entropy.double(), -(log_softmax.exp() * log_softmax).sum(-1).detach(), **tol)
    torch.testing.assert_close(hidden.grad, h.grad, **tol)
    torch.testing.assert_close(weight.grad, w.grad, **tol)


def test_verl_kernel_module_loads_without_the_verl_package():
    if importlib.util.find_spec("verl") is None:
        pytest.skip("verl==0.9.1 not installed (pip install --no-deps verl==0.9.1); bench rows say 'unavailable'")
    # In a fresh interpreter: in the whole suite verl itself is already imported (fastcomt.integrations.verl
    # and its tests), and the point is that the loader alone never runs the package's __init__ (ray,
    # tensordict, ...).
    code = (
        "import sys\nfrom bench.peers import load_verl_linear_cross_entropy\n"
        "assert callable(load_verl_linear_cross_entropy().linear_cross_entropy)\n"
        "print('verl.protocol' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=root)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stdout + proc.stderr
    verl = load_verl_linear_cross_entropy()
    if not torch.cuda.is_available():
        h, w, t = torch.randn(4, 8), torch.randn(20, 8), torch.randint(0, 20, (4,))
        # verl's kernel needs CUDA (NVTX ranges, is_cuda asserts): the bench marks it needs_cuda.
        with pytest.raises((AssertionError, RuntimeError)):
            verl.linear_cross_entropy(h, w, t, 1.0, "none")
