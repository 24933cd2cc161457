"""Tuning knobs of the fused LM head: chunk size, vocabulary block, warps, dW accumulation dtype.

The chunk of token rows is what bounds peak memory: one ``[chunk_rows, V]`` logits buffer (which
becomes the gradient in place) lives at a time, so the default picks ``chunk_rows`` from a byte
budget rather than from N. Benchmarks and tests override the defaults with ``lm_head_config(...)``
(a context manager) or ``set_lm_head_config(...)``; the public functions also take ``config=``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch

# Large enough for cuBLAS to run near peak on a [chunk, H] x [H, V] GEMM at V ~ 150k,
# small next to the weights and activations of the models this targets.
DEFAULT_CUDA_CHUNK_BYTES = 1 << 30
DEFAULT_CPU_CHUNK_BYTES = 256 << 20
# Chunks this large or larger are cut to a multiple of it, so GEMM tiles stay whole.
ROW_ALIGNMENT = 128


@dataclass(frozen=True)
class LMHeadConfig:
    """None means "choose from the device and shapes"; see ``resolve_*`` below."""

    chunk_rows: int | None = None  # token rows per chunk; wins over chunk_bytes
    chunk_bytes: int | None = None  # byte budget of the [chunk_rows, V] logits buffer
    block_v: int | None = None  # vocabulary slice per step of the row kernel (power of 2)
    num_warps: int | None = None
    # Accumulate dW in the weight's dtype (bf16/fp16) instead of fp32: saves V*H*4 bytes, costs
    # one rounding per chunk. Measured (CPU, bf16, relative L2 error of dW against fp64): 3.6e-3
    # over 10 chunks, 6.3e-3 over 32, 1.0e-2 over 128, against 1.7e-3 with the fp32 accumulator.
    accumulate_dw_in_weight_dtype: bool = False
    # Keep the logits chunk in fp32 (a bf16 x bf16 -> fp32 GEMM on GPU). bf16 logits of magnitude ~30
    # carry ~0.06 absolute rounding error, i.e. ~6% error in the probabilities: log-probs off by up
    # to ~0.1 and gradients by ~6% at V ~ 150k. fp32 costs 4 instead of 2 bytes per logit of chunk
    # memory and row-kernel traffic; the gradient is still written in the GEMM dtype for dh/dW.
    fp32_logits: bool = True

    def __post_init__(self) -> None:
        for name in ("chunk_rows", "chunk_bytes", "block_v", "num_warps"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise ValueError(f"{name}: expected a positive int or None, got {value!r}")
        if self.block_v is not None and self.block_v & (self.block_v - 1):
            raise ValueError(f"block_v: expected a power of two, got {self.block_v}")


_default = LMHeadConfig()


def get_lm_head_config() -> LMHeadConfig:
    return _default


def set_lm_head_config(config: LMHeadConfig | None = None, **overrides: object) -> LMHeadConfig:
    """Sets the process-wide default (from a config, or fields to replace); returns the previous one."""
    global _default
    previous = _default
    base = config if config is not None else _default
    _default = dataclasses.replace(base, **overrides)  # type: ignore[arg-type]
    return previous


@contextlib.contextmanager
def lm_head_config(config: LMHeadConfig | None = None, **overrides: object) -> Iterator[LMHeadConfig]:
    """Temporarily replaces the default, e.g. ``with lm_head_config(chunk_rows=7, block_v=128): ...``."""
    previous = set_lm_head_config(config, **overrides)
    try:
        yield _default
    finally:
        set_lm_head_config(previous)


def compute_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """Dtype of the GEMMs and of the logits buffer.

    On GPU, bf16/fp16 stay as they are (tensor cores; the row kernel upcasts on load). On CPU the
    GEMMs run in fp32 (low-precision CPU matmuls are slow and the interpreter cannot do bf16
    arithmetic). fp64 inputs are computed in fp32 everywhere: the row kernel works in fp32 anyway.
    """
    if device.type == "cuda" and dtype in (torch.float16, torch.bfloat16, torch.float32):
        return dtype
    return torch.float32


def logits_dtype(config: LMHeadConfig, gemm_dtype: torch.dtype) -> torch.dtype:
    """Dtype of the logits chunk the row kernel reads."""
    return torch.float32 if config.fp32_logits else gemm_dtype


def resolve_chunk_rows(config: LMHeadConfig, vocab_size: int, dtype: torch.dtype, device: torch.device) -> int:
    """Rows per chunk: ``budget // (V * bytes per row)``, at least 1, cut to a multiple of ROW_ALIGNMENT
    when at least that large. A row holds its logits and, when they differ in dtype from the GEMM
    operands, a separate gradient row in the GEMM dtype. The driver further caps it at the number of
    active rows."""
    if config.chunk_rows is not None:
        return config.chunk_rows
    budget = config.chunk_bytes
    if budget is None:
        budget = DEFAULT_CUDA_CHUNK_BYTES if device.type == "cuda" else DEFAULT_CPU_CHUNK_BYTES
    row_dtype = logits_dtype(config, dtype)
    row_bytes = row_dtype.itemsize + (dtype.itemsize if row_dtype != dtype else 0)
    rows = max(1, budget // (vocab_size * row_bytes))
    if rows >= ROW_ALIGNMENT:
        rows -= rows % ROW_ALIGNMENT
    return rows


def resolve_block_v(config: LMHeadConfig, vocab_size: int, device: torch.device) -> int:
    if config.block_v is not None:
        return config.block_v
    # The interpreter pays per operation, not per element: one wide slice is cheapest on CPU.
    cap = 4096 if device.type == "cuda" else 8192
    return min(triton_next_power_of_2(vocab_size), cap)


def resolve_num_warps(config: LMHeadConfig, block_v: int) -> int:
    if config.num_warps is not None:
        return config.num_warps
    # About 16 fp32 elements per thread per slice: enough loads in flight, no register spills.
    return max(1, min(16, block_v // 512))


def triton_next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


class Launch(NamedTuple):
    """Per-call settings handed to the custom ops (plain ints/bools: part of the op schema)."""

    chunk_rows: int
    block_v: int
    num_warps: int
    dw_in_weight_dtype: bool
    fp32_logits: bool


def resolve_launch(config: LMHeadConfig | None, vocab_size: int, dtype: torch.dtype, device: torch.device) -> Launch:
    """Settings for one call; ``config=None`` uses the process default."""
    cfg = config if config is not None else _default
    block_v = resolve_block_v(cfg, vocab_size, device)
    return Launch(
        resolve_chunk_rows(cfg, vocab_size, compute_dtype(dtype, device), device),
        block_v,
        resolve_num_warps(cfg, block_v),
        cfg.accumulate_dw_in_weight_dtype,
        cfg.fp32_logits,
    )
