"""Float32 matmul precision switches. The benchmark's TF32 setting applies to the methods under test;
input generation and the float32 ground truth always run with TF32 off, so they do not move with it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def set_tf32(enabled: bool) -> None:
    """TF32 for float32 matmuls and convolutions of the methods under test (bf16 GEMMs are unaffected)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    torch.set_float32_matmul_precision("high" if enabled else "highest")


@contextlib.contextmanager
def exact_fp32_matmul() -> Iterator[None]:
    """TF32 off inside the block, whatever the run's setting; restored afterwards."""
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.get_float32_matmul_precision(),
    )
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
        torch.set_float32_matmul_precision(saved[2])
