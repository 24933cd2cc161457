"""Argument checks shared by the fused LM-head functions and their plain-torch references.

Every check raises ``ValueError`` whose message names the offending argument and what was expected,
so a caller wiring a trainer sees at once which tensor is wrong. Shape, dtype and device checks only
read metadata (safe inside ``torch.compile``); the value check on targets needs a host sync and is
therefore a separate function that the fused path calls inside its opaque custom op.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INDEX_DTYPES = (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8)
LOSS_TYPES = ("grpo", "bnpo", "dapo", "dr_grpo")
REDUCTIONS = ("mean", "sum", "none")


@dataclass(frozen=True)
class TokenLayout:
    """How the caller's token dimensions map onto the flat row view used by the kernels."""

    batch_shape: tuple[int, ...]  # (B, T) or (N,)
    num_rows: int  # N = B*T
    hidden_size: int
    vocab_size: int

    @property
    def num_sequences(self) -> int:
        # A flat [N] layout is one sequence of N tokens (packed rows carry per-token advantages).
        return self.batch_shape[0] if len(self.batch_shape) == 2 else 1

    @property
    def seq_len(self) -> int:
        return self.batch_shape[-1]


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def check_linear_inputs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> TokenLayout:
    """Checks hidden [B,T,H] or [N,H], weight [V,H] and targets [B,T] or [N]; returns the layout."""
    for name, t in (("hidden", hidden), ("weight", weight), ("targets", targets)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if hidden.dim() not in (2, 3):
        raise ValueError(f"hidden: expected shape [B, T, H] or [N, H], got {_shape(hidden)}")
    if hidden.dtype not in FLOAT_DTYPES:
        raise ValueError(f"hidden: expected dtype float16, bfloat16, float32 or float64, got {hidden.dtype}")
    if weight.dim() != 2:
        raise ValueError(f"weight: expected shape [V, H], got {_shape(weight)}")
    if weight.shape[1] != hidden.shape[-1]:
        raise ValueError(
            f"weight: expected shape [V, H] with H={hidden.shape[-1]} (hidden's last dim), got {_shape(weight)}"
        )
    if weight.shape[0] == 0:
        raise ValueError("weight: expected at least one vocabulary row, got V=0")
    if weight.dtype != hidden.dtype:
        raise ValueError(f"weight: expected hidden's dtype {hidden.dtype}, got {weight.dtype}")
    if weight.device != hidden.device:
        raise ValueError(f"weight: expected hidden's device {hidden.device}, got {weight.device}")
    batch_shape = tuple(hidden.shape[:-1])
    if tuple(targets.shape) != batch_shape:
        raise ValueError(f"targets: expected shape {list(batch_shape)} (hidden without H), got {_shape(targets)}")
    if targets.dtype not in INDEX_DTYPES:
        raise ValueError(f"targets: expected an integer dtype, got {targets.dtype}")
    if targets.device != hidden.device:
        raise ValueError(f"targets: expected hidden's device {hidden.device}, got {targets.device}")
    num_rows = 1
    for s in batch_shape:
        num_rows *= s
    return TokenLayout(batch_shape, num_rows, hidden.shape[-1], weight.shape[0])


def check_mask(
    mask: torch.Tensor | None, layout: TokenLayout, device: torch.device, name: str = "mask"
) -> torch.Tensor:
    """Returns the mask as a flat bool [N] tensor (None means every token is active)."""
    if mask is None:
        return torch.ones(layout.num_rows, dtype=torch.bool, device=device)
    if not isinstance(mask, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(mask).__name__}")
    if tuple(mask.shape) != layout.batch_shape:
        raise ValueError(f"{name}: expected shape {list(layout.batch_shape)} like targets, got {_shape(mask)}")
    if mask.device != device:
        raise ValueError(f"{name}: expected hidden's device {device}, got {mask.device}")
    if mask.dtype.is_complex:
        raise ValueError(f"{name}: expected a bool, integer or float dtype (nonzero = active), got {mask.dtype}")
    return (mask != 0).reshape(-1)


def check_token_values(
    t: torch.Tensor | None, name: str, layout: TokenLayout, device: torch.device, *, allow_per_sequence: bool = False
) -> torch.Tensor | None:
    """Checks a per-token float tensor (log-probs, advantages); returns it flat [N] in float32 or float64.

    With ``allow_per_sequence`` a [B] tensor (one value per sequence) is broadcast over the tokens.
    """
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name}: expected a floating-point dtype, got {t.dtype}")
    if t.device != device:
        raise ValueError(f"{name}: expected hidden's device {device}, got {t.device}")
    shape = tuple(t.shape)
    if shape == layout.batch_shape:
        flat = t.reshape(-1)
    elif allow_per_sequence and len(layout.batch_shape) == 2 and shape == layout.batch_shape[:1]:
        flat = t[:, None].expand(layout.batch_shape).reshape(-1)
    else:
        expected = [list(layout.batch_shape)]
        if allow_per_sequence and len(layout.batch_shape) == 2:
            expected.insert(0, list(layout.batch_shape[:1]))
        raise ValueError(f"{name}: expected shape {' or '.join(map(str, expected))}, got {_shape(t)}")
    return flat.to(torch.promote_types(t.dtype, torch.float32))


def check_targets_in_range(targets: torch.Tensor, active: torch.Tensor, vocab_size: int) -> None:
    """Every active target must index the vocabulary (this syncs with the device once)."""
    bad = active & ((targets < 0) | (targets >= vocab_size))
    if bool(bad.any()):
        first = int(targets[bad][0])
        raise ValueError(f"targets: expected values in [0, {vocab_size}) on active tokens, got {first}")


def check_positive(value: float, name: str) -> float:
    # Finite too: temperature=inf would flatten every distribution to uniform without a word.
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < math.inf:
        raise ValueError(f"{name}: expected a positive finite number, got {value!r}")
    return float(value)


def check_non_negative(value: float, name: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < math.inf:
        raise ValueError(f"{name}: expected a non-negative finite number, got {value!r}")
    return float(value)


def check_finite_inputs(values: dict[str, torch.Tensor | None], active: torch.Tensor, num_rows: int) -> None:
    """Opt-in (`check_finite=True`): NaN or inf in the inputs would make the loss NaN without a word.

    Per-token values ([N] flat) are checked on the active tokens only (padding may hold -inf); other
    tensors (hidden, weight) everywhere, hidden on its active rows. All flags are reduced on the device
    and read back with one host sync, which is why this is opt-in rather than on every call: the
    recipes turn it on where they read the loss back once per micro-batch anyway.
    """
    names, flags = [], []
    for name, t in values.items():
        if t is None:
            continue
        if t.dim() == 1 and t.shape[0] == num_rows:
            ok = torch.isfinite(t) | ~active
        elif t.dim() >= 2 and name == "hidden":
            ok = torch.isfinite(t.reshape(num_rows, -1)).all(-1) | ~active
        else:
            ok = torch.isfinite(t)
        names.append(name)
        flags.append(ok.all())
    if not flags:
        return
    for name, finite in zip(names, torch.stack(flags).tolist()):  # the one host sync
        if not finite:
            where = "on the active tokens" if name != "weight" else "everywhere"
            raise ValueError(f"{name}: expected finite values {where}, got NaN or inf")


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")
    return reduction


@dataclass(frozen=True)
class PolicyOptions:
    """Validated scalar options of the clipped policy loss."""

    loss_type: str
    eps_low: float
    eps_high: float
    beta: float
    tis_cap: float | None
    entropy_coef: float
    temperature: float
    max_tokens: int | None  # None only from check_policy_settings; check_policy_options fills in seq_len


def check_policy_settings(
    *,
    loss_type: str,
    eps_low: float,
    eps_high: float,
    beta: float,
    tis_cap: float | None,
    entropy_coef: float,
    temperature: float,
    max_tokens: int | None,
) -> PolicyOptions:
    """The policy loss's scalar options on their own (no tensors needed, so `FusedPolicyLoss` can
    reject bad ones at construction); `max_tokens` stays None when not given."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type: expected one of {LOSS_TYPES}, got {loss_type!r}")
    eps_low = check_non_negative(eps_low, "eps_low")
    if eps_low >= 1:  # the lower clip is 1 - eps_low: at 1 or above it is no clip at all
        raise ValueError(
            f"eps_low: expected a number in [0, 1) (the ratio's lower clip is 1 - eps_low), got {eps_low!r}"
        )
    eps_high = check_non_negative(eps_high, "eps_high")
    beta = check_non_negative(beta, "beta")
    if tis_cap is not None:
        tis_cap = check_positive(tis_cap, "tis_cap")
    if not isinstance(entropy_coef, (int, float)) or isinstance(entropy_coef, bool):
        raise ValueError(f"entropy_coef: expected a number, got {entropy_coef!r}")
    temperature = check_positive(temperature, "temperature")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens <= 0):
        raise ValueError(f"max_tokens: expected a positive int, got {max_tokens!r}")
    return PolicyOptions(loss_type, eps_low, eps_high, beta, tis_cap, float(entropy_coef), temperature, max_tokens)


def check_policy_options(layout: TokenLayout, *, has_ref: bool, **settings: Any) -> PolicyOptions:
    """`check_policy_settings`, then what needs the inputs: the KL's reference log-probs and the
    default `max_tokens` (the sequence length)."""
    options = check_policy_settings(**settings)
    if options.beta > 0 and not has_ref:
        raise ValueError(
            "ref_logprobs: expected a tensor when beta > 0 (the KL penalty needs the reference log-probs), got None"
        )
    if options.max_tokens is None:
        options = replace(options, max_tokens=layout.seq_len)
    return options


@dataclass(frozen=True)
class PolicyInputs:
    """The checked inputs of a policy loss: flat per-token values (None where not given)."""

    layout: TokenLayout
    active: torch.Tensor
    advantages: torch.Tensor
    old: torch.Tensor | None
    ref: torch.Tensor | None
    behaviour: torch.Tensor | None
    options: PolicyOptions


def check_policy_inputs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    mask: torch.Tensor | None,
    advantages: torch.Tensor | None,
    old_logprobs: torch.Tensor | None,
    ref_logprobs: torch.Tensor | None,
    behaviour_logprobs: torch.Tensor | None,
    check_finite: bool = False,
    **options: object,
) -> PolicyInputs:
    """All argument checks shared by the fused policy loss and its reference (``options`` are the
    keyword options of ``check_policy_options``); ``check_finite``: also `check_finite_inputs`."""
    layout = check_linear_inputs(hidden, weight, targets)
    device = hidden.device
    if mask is None:
        raise ValueError("mask: expected a tensor shaped like targets (the completion tokens to train on), got None")
    active = check_mask(mask, layout, device)
    adv = check_token_values(advantages, "advantages", layout, device, allow_per_sequence=True)
    if adv is None:
        raise ValueError("advantages: expected a tensor of shape [B] or [B, T], got None")
    old = check_token_values(old_logprobs, "old_logprobs", layout, device)
    ref = check_token_values(ref_logprobs, "ref_logprobs", layout, device)
    behaviour = check_token_values(behaviour_logprobs, "behaviour_logprobs", layout, device)
    opts = check_policy_options(layout, has_ref=ref is not None, **options)
    if check_finite:
        check_finite_inputs(
            {
                "hidden": hidden,
                "weight": weight,
                "advantages": adv,
                "old_logprobs": old,
                "ref_logprobs": ref,
                "behaviour_logprobs": behaviour,
            },
            active,
            layout.num_rows,
        )
    return PolicyInputs(layout, active, adv, old, ref, behaviour, opts)


def check_loss_normalizer(loss_normalizer: float | torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """The loss denominator a caller passes (a positive number or a 0-dim tensor), as a float32 tensor
    on ``device``; None when not given. A tensor is not checked for positivity (that would sync)."""
    if loss_normalizer is None:
        return None
    if isinstance(loss_normalizer, torch.Tensor):
        if loss_normalizer.dim() != 0 or loss_normalizer.dtype.is_complex:
            raise ValueError(
                f"loss_normalizer: expected a 0-dim real tensor, got shape {list(loss_normalizer.shape)} "
                f"and dtype {loss_normalizer.dtype}"
            )
        return loss_normalizer.to(device=device, dtype=torch.float32)
    if isinstance(loss_normalizer, bool) or not isinstance(loss_normalizer, (int, float)) or not loss_normalizer > 0:
        raise ValueError(f"loss_normalizer: expected a positive number or a 0-dim tensor, got {loss_normalizer!r}")
    return torch.tensor(float(loss_normalizer), dtype=torch.float32, device=device)
