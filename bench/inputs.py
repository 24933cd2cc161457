"""Benchmark inputs that look like a real policy's last layer.

A random head gives near-uniform logits (entropy ~ log V), which flatters kernels that skip work on
small probabilities and hides numerical trouble. Instead the head is scaled so the mean next-token
entropy hits a chosen value (about 2 nats for a reasoning policy), the targets are sampled from that
very distribution, the old log-probs sit near the current ones (as after a few optimizer steps), each
sequence ends in some padding, and advantages are one number per sequence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from bench.precision import exact_fp32_matmul

IGNORE_INDEX = -100
# Rows per chunk of the float32 sampling pass are chosen so one [rows, V] buffer stays near 256 MiB.
_CHUNK_ELEMS = 1 << 26
_CALIBRATION_ROWS = 256


@dataclass(frozen=True)
class Shape:
    """Tokens N, hidden size H and vocabulary size V of one LM-head problem."""

    n: int
    h: int
    v: int

    def __post_init__(self) -> None:
        for name in ("n", "h", "v"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"shape {name.upper()}: expected a positive int, got {value!r}")

    @property
    def label(self) -> str:
        return f"{self.n}x{self.h}x{self.v}"

    @classmethod
    def parse(cls, text: str) -> Shape:
        """Parses "N:H:V", e.g. "16384:3584:152064"."""
        parts = text.strip().split(":")
        if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"shape: expected N:H:V with positive integers, got {text!r}")
        return cls(*(int(p) for p in parts))


def parse_shapes(text: str) -> list[Shape]:
    """Parses a comma-separated list of N:H:V shapes."""
    shapes = [Shape.parse(part) for part in text.split(",") if part.strip()]
    if not shapes:
        raise ValueError(f"shapes: expected at least one N:H:V, got {text!r}")
    return shapes


@dataclass
class BenchInputs:
    """One shape's tensors, shared by every method. ``hidden`` and ``weight`` are autograd leaves."""

    shape: Shape
    seq_len: int
    hidden: torch.Tensor  # [N, H], requires grad
    weight: torch.Tensor  # [V, H], requires grad
    targets: torch.Tensor  # [N] int64, sampled from the model's own distribution
    targets_ce: torch.Tensor  # [N] int64, IGNORE_INDEX on padding
    mask: torch.Tensor  # [N] bool, False on padding
    advantages: torch.Tensor  # [B] float32, one per sequence
    old_logprobs: torch.Tensor  # [N] float32, current log-prob plus noise
    head_scale: float
    measured_entropy: float  # mean over unpadded tokens, nats
    pad_fraction: float

    @property
    def num_sequences(self) -> int:
        return self.shape.n // self.seq_len

    def bt(self, t: torch.Tensor) -> torch.Tensor:
        """A view of a per-token tensor as [B, T, ...]."""
        return t.view(self.num_sequences, self.seq_len, *t.shape[1:])

    def nbytes(self) -> int:
        """What the inputs hold in memory (peak memory is reported above this)."""
        tensors = (
            self.hidden,
            self.weight,
            self.targets,
            self.targets_ce,
            self.mask,
            self.advantages,
            self.old_logprobs,
        )
        return sum(t.numel() * t.element_size() for t in tensors)


def shape_seed(seed: int, shape: Shape) -> int:
    """Each shape gets its own stream, so a shape's inputs do not depend on which shapes ran before."""
    return (seed * 1_000_003 + shape.n * 7919 + shape.h * 104_729 + shape.v) % (2**63 - 1)


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def calibrate_head_scale(sample_logits: torch.Tensor, target_entropy: float, *, iters: int = 40) -> float:
    """The factor s with mean entropy of softmax(s * logits) = target, by bisection on log s.

    Entropy of softmax(s*z) falls monotonically as s grows (its derivative is -s*Var_p(z)), so
    bisection converges; the bracket [1e-3, 1e4] covers any sane head.
    """
    vocab = sample_logits.shape[-1]
    if not 0.0 < target_entropy < math.log(vocab):
        raise ValueError(
            f"target_entropy: expected a value in (0, log V = {math.log(vocab):.3f}) nats, got {target_entropy}"
        )
    lo, hi = math.log(1e-3), math.log(1e4)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if float(_entropy(sample_logits * math.exp(mid)).mean()) > target_entropy:
            lo = mid  # too flat: sharpen
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def _padding_mask(num_seqs: int, seq_len: int, pad_fraction: float, gen: torch.Generator, device: str) -> torch.Tensor:
    """Right padding with per-sequence length uniform in [0, 2*pad_fraction*T], so ~pad_fraction on average."""
    max_pad = min(seq_len - 1, round(2 * pad_fraction * seq_len))
    pad = torch.randint(0, max_pad + 1, (num_seqs, 1), generator=gen, device=device)
    pos = torch.arange(seq_len, device=device)[None, :]
    return (pos < seq_len - pad).reshape(-1)


def make_inputs(
    shape: Shape,
    *,
    seq_len: int,
    device: str,
    dtype: torch.dtype = torch.bfloat16,
    target_entropy: float = 2.0,
    pad_fraction: float = 0.1,
    logprob_noise: float = 0.1,
    seed: int = 0,
) -> BenchInputs:
    """Builds one shape's inputs (deterministic for a given seed, shape and device type)."""
    if not isinstance(seq_len, int) or seq_len <= 0 or shape.n % seq_len:
        raise ValueError(f"seq_len: expected a positive divisor of N={shape.n}, got {seq_len!r}")
    if not 0.0 <= pad_fraction < 0.5:
        raise ValueError(f"pad_fraction: expected a value in [0, 0.5), got {pad_fraction}")
    if logprob_noise < 0:
        raise ValueError(f"logprob_noise: expected >= 0, got {logprob_noise}")
    n, h, v = shape.n, shape.h, shape.v
    gen = torch.Generator(device=device)
    gen.manual_seed(shape_seed(seed, shape))

    with torch.no_grad(), exact_fp32_matmul():
        hidden = torch.randn(n, h, generator=gen, device=device).to(dtype)
        base = torch.randn(v, h, generator=gen, device=device) / math.sqrt(h)
        sample = hidden[: min(n, _CALIBRATION_ROWS)].float() @ base.T
        scale = calibrate_head_scale(sample, target_entropy)
        del sample
        weight = (base * scale).to(dtype)
        del base

        mask = _padding_mask(n // seq_len, seq_len, pad_fraction, gen, device)
        # Sample targets from the bf16 head's exact (float32) distribution, chunk by chunk: Gumbel-max.
        w32 = weight.float()
        targets = torch.empty(n, dtype=torch.int64, device=device)
        logp_target = torch.empty(n, dtype=torch.float32, device=device)
        entropy = torch.empty(n, dtype=torch.float32, device=device)
        rows = max(1, _CHUNK_ELEMS // v)
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            logp = torch.log_softmax(hidden[start:stop].float() @ w32.T, dim=-1)
            u = torch.rand(logp.shape, generator=gen, device=device).clamp_(min=1e-20)
            picked = torch.argmax(logp - torch.log(-torch.log(u)), dim=-1)
            targets[start:stop] = picked
            logp_target[start:stop] = logp.gather(1, picked[:, None])[:, 0]
            entropy[start:stop] = -(logp.exp() * logp).sum(-1)
            del logp, u
        del w32

        advantages = torch.randn(n // seq_len, generator=gen, device=device)
        old_logprobs = logp_target + logprob_noise * torch.randn(n, generator=gen, device=device)
        targets_ce = torch.where(mask, targets, torch.full_like(targets, IGNORE_INDEX))
        measured_entropy = float(entropy[mask].mean())
        pad_frac = 1.0 - float(mask.float().mean())

    return BenchInputs(
        shape=shape,
        seq_len=seq_len,
        hidden=hidden.requires_grad_(True),
        weight=weight.requires_grad_(True),
        targets=targets,
        targets_ce=targets_ce,
        mask=mask,
        advantages=advantages,
        old_logprobs=old_logprobs,
        head_scale=scale,
        measured_entropy=measured_entropy,
        pad_fraction=pad_frac,
    )
