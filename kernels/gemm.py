"""The LM head's GEMMs with an output (or accumulator) dtype wider than the operands.

``torch.mm(a, b, out_dtype=torch.float32, out=o)`` and ``torch.addmm(o, a, b, out_dtype=..., out=o)``
let cuBLAS write bf16 x bf16 products straight into fp32 (no rounding to bf16, no V x H temporary).
They exist only in CUDA builds (CPU raises NotImplementedError), and a build without them must not
break training, so a one-time probe per device decides: a tiny GEMM each way, checked against an fp32
GEMM. Where the probe fails the fallback computes the product in the operands' dtype and converts it
(one rounding per chunk, a temporary of the output's shape) and says so once.
"""

from __future__ import annotations

import warnings

import torch

_PROBED: dict[tuple[str, int | None], bool] = {}


def out_dtype_gemm_supported(device: torch.device) -> bool:
    """Whether mm/addmm with ``out_dtype=float32`` run on ``device`` (probed once per device)."""
    key = (device.type, device.index)
    if key not in _PROBED:
        _PROBED[key] = _probe(device)
        if not _PROBED[key] and device.type == "cuda":
            warnings.warn(
                "fastcomt.kernels: torch.mm/addmm(out_dtype=float32) are unavailable in this torch build; "
                "the LM head rounds each bf16/fp16 GEMM output to the operand dtype before widening it",
                stacklevel=2,
            )
    return _PROBED[key]


def _probe(device: torch.device) -> bool:
    try:
        # Small integers: every product and sum is exact in bf16 operands and fp32 results.
        a = torch.arange(6, device=device).reshape(2, 3).to(torch.bfloat16)
        b = torch.arange(12, device=device).reshape(3, 4).to(torch.bfloat16)
        out = torch.empty(2, 4, dtype=torch.float32, device=device)
        torch.mm(a, b, out_dtype=torch.float32, out=out)
        torch.addmm(out, a, b, out_dtype=torch.float32, out=out)
        return bool(torch.equal(out, 2 * (a.float() @ b.float())))
    except (RuntimeError, NotImplementedError, TypeError):
        return False


def gemm_into(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *, accumulate: bool) -> None:
    """``out = a @ b`` (``accumulate=False``) or ``out += a @ b``, in ``out``'s dtype."""
    if a.dtype == out.dtype:
        if accumulate:
            out.addmm_(a, b)
        else:
            torch.mm(a, b, out=out)
    elif out_dtype_gemm_supported(out.device):
        if accumulate:
            torch.addmm(out, a, b, out_dtype=out.dtype, out=out)
        else:
            torch.mm(a, b, out_dtype=out.dtype, out=out)
    else:
        product = a @ b
        if accumulate:
            out.add_(product)
        else:
            out.copy_(product)
