"""First-principles time estimate of the fused LM head, to read GPU measurements against.

    python bench/model.py --shape 16384:3584:152064                 # policy loss fwd+bwd, bf16, defaults
    python bench/model.py --shape 16384:3584:152064 --op score --chunk-bytes 1GiB --tflops 990 --tbps 4.8

Terms (each a roofline: a GEMM takes max(FLOPs / peak, bytes / bandwidth)):
- floor: the GEMMs alone at peak, 2*N*H*V FLOPs each: 3 for training (logits, dh, dW), 1 for scoring;
- row kernel: its memory traffic, N*V * (logits read once to score; twice plus the gradient written
  in the GEMM dtype to train);
- dW read-modify-write: the fp32 accumulator is read and written by every chunk's dW GEMM but the first,
  which writes it (V*H*4 bytes per pass). Shown both as a roofline per chunk (overlapped with the
  GEMM's FLOPs, as cuBLAS does) and as an additive upper bound;
- finishing: the backward's one pass that scales dW (fp32 read, weight-dtype write) and dh.
Chunk rows follow the library's own rule (kernels/config.py: resolve_chunk_rows) unless given.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
GiB = 1 << 30


@dataclass(frozen=True)
class Estimate:
    chunk_rows: int
    chunks: int
    floor_ms: float
    gemm_roofline_ms: float  # the GEMMs with the dW traffic overlapped (max of compute and memory per GEMM)
    row_kernel_ms: float
    dw_traffic_ms: float  # additive upper bound of the dW read-modify-write
    finish_ms: float
    total_ms: float  # gemm_roofline + row kernel + finishing
    upper_ms: float  # floor + row kernel + dW traffic + finishing (nothing overlapped)

    @property
    def ratio(self) -> float:
        return self.total_ms / self.floor_ms


def default_chunk_rows(vocab: int, dtype: str, fp32_logits: bool, chunk_bytes: int | None) -> int:
    """The library's chunk rule on a CUDA device (same budget, same rounding)."""
    import torch

    from kernels.config import LMHeadConfig, resolve_chunk_rows

    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]
    config = LMHeadConfig(chunk_bytes=chunk_bytes, fp32_logits=fp32_logits)
    return resolve_chunk_rows(config, vocab, torch_dtype, torch.device("cuda"))


def estimate(
    n: int,
    h: int,
    v: int,
    *,
    op: str = "policy",
    dtype: str = "bf16",
    chunk_rows: int,
    fp32_logits: bool = True,
    tflops: float = 700.0,
    tbps: float = 4.0,
) -> Estimate:
    """Milliseconds for one call at ``tflops`` dense TFLOP/s and ``tbps`` TB/s of memory bandwidth."""
    if op not in ("policy", "score"):
        raise ValueError(f"op: expected 'policy' or 'score', got {op!r}")
    peak, bw = tflops * 1e12, tbps * 1e12
    e = DTYPE_BYTES[dtype]
    logit_bytes = 4 if fp32_logits else e
    train = op == "policy"
    chunks = math.ceil(n / chunk_rows)
    gemm_flops = 2.0 * n * h * v
    floor = (3 if train else 1) * gemm_flops / peak

    # Logits GEMM: reads h and W, writes the logits chunk.
    logits_bytes = n * h * e + chunks * v * h * e + n * v * logit_bytes
    roofline = max(gemm_flops / peak, logits_bytes / bw)
    row_bytes = n * v * (2 * logit_bytes + e if train else logit_bytes)
    dw_bytes = 0.0
    finish_bytes = 0.0
    if train:
        # dh GEMM: reads the gradient chunk and W, writes dh.
        roofline += max(gemm_flops / peak, (n * v * e + chunks * v * h * e + n * h * e) / bw)
        for c in range(chunks):
            rows = min(chunk_rows, n - c * chunk_rows)
            acc = v * h * 4 * (1 if c == 0 else 2)  # the first chunk writes dW, the others read and write it
            dw_bytes += acc
            roofline += max(2.0 * rows * h * v / peak, (rows * v * e + rows * h * e + acc) / bw)
        finish_bytes = v * h * (4 + e) + 2 * n * h * e
    row = row_bytes / bw
    finish = finish_bytes / bw
    ms = 1e3
    return Estimate(
        chunk_rows=chunk_rows,
        chunks=chunks,
        floor_ms=floor * ms,
        gemm_roofline_ms=roofline * ms,
        row_kernel_ms=row * ms,
        dw_traffic_ms=dw_bytes / bw * ms,
        finish_ms=finish * ms,
        total_ms=(roofline + row + finish) * ms,
        upper_ms=(floor + row + dw_bytes / bw + finish) * ms,
    )


def _bytes(text: str) -> int:
    units = {"gib": GiB, "mib": 1 << 20, "kib": 1 << 10, "": 1}
    lower = text.strip().lower()
    for unit, scale in units.items():
        if unit and lower.endswith(unit):
            return int(float(lower[: -len(unit)]) * scale)
    return int(lower)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="First-principles time estimate of the fused LM head.")
    parser.add_argument("--shape", default="16384:3584:152064", help="N:H:V")
    parser.add_argument("--op", default="policy", choices=("policy", "score"))
    parser.add_argument("--dtype", default="bf16", choices=tuple(DTYPE_BYTES))
    parser.add_argument("--chunk-rows", type=int, default=None, help="default: the library's rule")
    parser.add_argument("--chunk-bytes", type=_bytes, default=None, help="budget, e.g. 1GiB (default: library's)")
    parser.add_argument("--bf16-logits", action="store_true", help="logits chunk in the GEMM dtype")
    parser.add_argument("--tflops", type=float, default=700.0, help="dense GEMM TFLOP/s reached")
    parser.add_argument("--tbps", type=float, default=4.0, help="memory bandwidth reached, TB/s")
    args = parser.parse_args(argv)
    try:
        n, h, v = (int(x) for x in args.shape.split(":"))
    except ValueError:
        parser.error(f"--shape: expected N:H:V, got {args.shape!r}")
    fp32_logits = not args.bf16_logits
    rows = args.chunk_rows or default_chunk_rows(v, args.dtype, fp32_logits, args.chunk_bytes)
    est = estimate(
        n,
        h,
        v,
        op=args.op,
        dtype=args.dtype,
        chunk_rows=rows,
        fp32_logits=fp32_logits,
        tflops=args.tflops,
        tbps=args.tbps,
    )
    print(f"N={n} H={h} V={v} {args.op} {args.dtype} at {args.tflops:g} TFLOP/s, {args.tbps:g} TB/s")
    for name, value in asdict(est).items():
        print(f"  {name:18s} {value:10.3f}" if isinstance(value, float) else f"  {name:18s} {value:10d}")
    print(f"  {'ratio to floor':18s} {est.ratio:10.3f}  (upper bound {est.upper_ms / est.floor_ms:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
