"""The fp32-output GEMMs of the LM head: the out_dtype forms run only in CUDA builds, so a one-time probe
per device picks them or the fallback. On CPU the probe says no and the fallback is what runs; it is
checked here against fp64, and forcing the probe's answer shows the path really follows it."""

import pytest
import torch

from fastcomt.kernels import gemm


def _operands(seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(5, 12, generator=g).to(torch.bfloat16)
    b = torch.randn(12, 7, generator=g).to(torch.bfloat16)
    return a, b


def test_probe_on_cpu_finds_no_out_dtype_gemm():
    assert gemm.out_dtype_gemm_supported(torch.device("cpu")) is False


@pytest.mark.parametrize("accumulate", [False, True])
def test_fallback_writes_and_accumulates_in_fp32(accumulate):
    a, b = _operands()
    start = torch.full((5, 7), 0.25)
    out = start.clone()
    gemm.gemm_into(out, a, b, accumulate=accumulate)
    want = (start.double() if accumulate else 0) + a.double() @ b.double()
    assert out.dtype == torch.float32
    # Inputs are exact in bf16; the fallback rounds the product once to bf16 (2**-8 relative).
    torch.testing.assert_close(out.double(), want, rtol=2**-8, atol=2**-8 * want.abs().max().item())


def test_same_dtype_gemm_is_exact_fp32():
    a, b = (t.float() for t in _operands(1))
    out = torch.empty(5, 7)
    gemm.gemm_into(out, a, b, accumulate=False)
    gemm.gemm_into(out, a, b, accumulate=True)
    torch.testing.assert_close(out, 2 * (a @ b))


def test_the_probe_answer_picks_the_path(monkeypatch):
    # Forcing "supported" on CPU sends the call to torch.mm(out_dtype=...), which the CPU build lacks.
    monkeypatch.setitem(gemm._PROBED, ("cpu", None), True)
    a, b = _operands()
    with pytest.raises(NotImplementedError):
        gemm.gemm_into(torch.empty(5, 7), a, b, accumulate=False)
