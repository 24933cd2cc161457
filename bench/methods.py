"""The methods compared, per op, each built on the same ``BenchInputs``.

ops: ``policy`` (clipped surrogate, forward + backward to hidden and weight), ``logprobs`` (forward
scoring: target log-prob, entropy, max-prob) and ``ce`` (SFT cross-entropy, forward + backward).
Peers are imported inside their builders, so a missing peer only costs its own rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import torch

from bench.eager import PolicyConfig, eager_cross_entropy, eager_logprobs, eager_policy_loss, policy_surrogate
from bench.inputs import BenchInputs

OPS = ("policy", "logprobs", "ce")
PEER_VERSIONS = {"trl": "1.16.0", "verl": "0.9.1"}


@dataclass
class Outputs:
    """What one call produced, for comparison with the float32 truth."""

    loss: float | None = None
    dh: torch.Tensor | None = None
    dw: torch.Tensor | None = None
    logp: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    maxprob: torch.Tensor | None = None


@dataclass
class Runner:
    """A built method: ``step`` is the timed call, ``reset`` runs before each call outside the timing,
    ``collect`` turns the result of one call into ``Outputs``."""

    step: Callable[[], Any]
    collect: Callable[[Any], Outputs]
    reset: Callable[[], None] = lambda: None
    notes: str = ""


@dataclass(frozen=True)
class BuildContext:
    inputs: BenchInputs
    kernels: ModuleType
    policy: PolicyConfig
    compile_backend: str
    device: str


@dataclass(frozen=True)
class Method:
    name: str
    op: str
    label: str
    build: Callable[[BuildContext], Runner] = field(repr=False)
    needs_cuda: bool = False  # runs peer Triton kernels that may not run on CPU
    is_floor: bool = False


# ---------------------------------------------------------------- shared runners


def _training(ctx: BuildContext, loss_fn: Callable[[], torch.Tensor], notes: str = "") -> Runner:
    hidden, weight = ctx.inputs.hidden, ctx.inputs.weight

    def reset() -> None:
        hidden.grad = None
        weight.grad = None

    def step() -> torch.Tensor:
        loss = loss_fn()
        loss.backward()
        return loss.detach()

    def collect(loss: torch.Tensor) -> Outputs:
        return Outputs(loss=float(loss), dh=hidden.grad, dw=weight.grad)

    return Runner(step=step, collect=collect, reset=reset, notes=notes)


def _scoring(fn: Callable[[], tuple[torch.Tensor, ...]], notes: str = "") -> Runner:
    def step() -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            return fn()

    def collect(out: tuple[torch.Tensor, ...]) -> Outputs:
        # Peers report log-prob and entropy only: their max-prob stays None (not compared).
        logp, entropy, *maxprob = (t.reshape(-1).float() for t in out)
        return Outputs(logp=logp, entropy=entropy, maxprob=maxprob[0] if maxprob else None)

    return Runner(step=step, collect=collect, notes=notes)


def _fused(kernels: ModuleType, name: str) -> Callable[..., Any]:
    fn = getattr(kernels, name, None)
    if fn is None:
        raise ImportError(f"fastcomt.kernels has no {name} in this tree")
    return fn


def _compiled(fn: Callable[..., Any], backend: str) -> Callable[..., Any]:
    # dynamic=True: one compilation serves every shape. With torch's default the second shape
    # recompiles with dynamic sizes anyway, so only the first shape would differ, and compiling
    # each (op, head) again would not fit the GPU check's time budget.
    return torch.compile(fn, backend=backend, dynamic=True)


def _floor(ctx: BuildContext, backward: bool) -> Runner:
    """The GEMMs a fused head cannot avoid, on one preallocated [N, V] bf16 buffer (the fused design
    writes dlogits over the logits in place): logits = h W^T, then dh = g W and dW = g^T h."""
    h, w = ctx.inputs.hidden.detach(), ctx.inputs.weight.detach()
    buf = torch.empty(h.shape[0], w.shape[0], dtype=h.dtype, device=h.device)
    dh = torch.empty_like(h)
    dw = torch.empty_like(w)

    def step() -> None:
        torch.matmul(h, w.T, out=buf)
        if backward:
            torch.matmul(buf, w, out=dh)
            torch.matmul(buf.T, h, out=dw)

    gemms = "3 GEMMs" if backward else "1 GEMM"
    return Runner(step=step, collect=lambda _: Outputs(), notes=f"{gemms}, torch.matmul into preallocated buffers")


# ---------------------------------------------------------------- policy


def _policy_args(ctx: BuildContext) -> tuple[torch.Tensor, ...]:
    x = ctx.inputs
    return x.bt(x.hidden), x.weight, x.bt(x.targets), x.bt(x.mask), x.advantages, x.bt(x.old_logprobs)


def _fastcomt_notes(kernels: ModuleType) -> str:
    get_config = getattr(kernels, "get_lm_head_config", None)
    return f"{get_config()}" if get_config is not None else ""


def _policy_fastcomt(ctx: BuildContext) -> Runner:
    fn = _fused(ctx.kernels, "linear_policy_loss")
    args, cfg = _policy_args(ctx), ctx.policy.as_dict()
    return _training(ctx, lambda: fn(*args, **cfg)[0], notes=_fastcomt_notes(ctx.kernels))


def _policy_eager(ctx: BuildContext) -> Runner:
    args, cfg = _policy_args(ctx), ctx.policy.as_dict()
    return _training(ctx, lambda: eager_policy_loss(*args, **cfg))


def _policy_compile(ctx: BuildContext) -> Runner:
    fn = _compiled(eager_policy_loss, ctx.compile_backend)
    args, cfg = _policy_args(ctx), ctx.policy.as_dict()
    return _training(ctx, lambda: fn(*args, **cfg), notes=f"backend={ctx.compile_backend}")


def _policy_liger(ctx: BuildContext) -> Runner:
    from liger_kernel.chunked_loss import LigerFusedLinearGRPOLoss

    # Liger compiles its loss math with inductor; the CPU smoke run uses no C++ compiler.
    compiled = ctx.compile_backend == "inductor"
    cfg, x = ctx.policy, ctx.inputs
    loss_module = LigerFusedLinearGRPOLoss(
        beta=0.0,
        compiled=compiled,
        use_ref_model=False,
        epsilon_low=cfg.eps_low,
        epsilon_high=cfg.eps_high,
        loss_type=cfg.loss_type,
        max_completion_length=x.seq_len,
    )
    hidden, weight, targets, mask, advantages, old = _policy_args(ctx)
    mask_f = mask.float()
    return _training(
        ctx,
        lambda: loss_module(hidden, weight, targets, mask_f, advantages, old_per_token_logps=old)[0],
        notes=f"compiled={compiled}, chunk_size=1",
    )


def _policy_cce(ctx: BuildContext) -> Runner:
    from cut_cross_entropy import linear_cross_entropy

    hidden, weight, _, mask, advantages, old = _policy_args(ctx)
    targets_ce = ctx.inputs.bt(ctx.inputs.targets_ce)
    cfg = ctx.policy.as_dict()

    def loss_fn() -> torch.Tensor:
        logp = -linear_cross_entropy(hidden, weight, targets_ce, reduction="none")
        return policy_surrogate(logp, mask, advantages, old, **cfg)

    return _training(ctx, loss_fn, notes="default filter_eps")


def _trl_logprobs(ctx: BuildContext, with_entropy: bool) -> Callable[[], tuple[torch.Tensor, ...]]:
    """TRL 1.16's fused head called as its trainer calls it: active rows only, 32768-wide vocabulary
    tiles, log-probs (and entropy) scattered back to [B, T]."""
    from bench.peers import load_trl_chunked_logprob

    trl = load_trl_chunked_logprob()
    x = ctx.inputs
    hidden, weight, targets, mask = x.bt(x.hidden), x.weight, x.bt(x.targets), x.bt(x.mask)
    outputs = ("entropy",) if with_entropy else ()

    def call() -> tuple[torch.Tensor, ...]:
        logp, entropy, *_ = trl.ChunkedLogProbFunction.apply(
            hidden[mask], weight, None, targets[mask], 1.0, 32768, None, 1.0, outputs
        )
        per_token = [logp] + ([entropy] if with_entropy else [])
        return tuple(t.new_zeros(mask.shape).masked_scatter(mask, t) for t in per_token)

    return call


def _verl_logprobs(ctx: BuildContext) -> Callable[[], tuple[torch.Tensor, ...]]:
    """verl 0.9.1's fused head (log-prob and entropy of every token, CUDA only), as its models call it."""
    from bench.peers import load_verl_linear_cross_entropy

    verl = load_verl_linear_cross_entropy()
    x = ctx.inputs
    hidden, weight, targets, mask = x.bt(x.hidden), x.weight, x.bt(x.targets), x.bt(x.mask)

    def call() -> tuple[torch.Tensor, ...]:
        logp, entropy = verl.linear_cross_entropy(hidden, weight, targets, 1.0, "none")
        return tuple(torch.where(mask, t.reshape(mask.shape), 0.0) for t in (logp, entropy))

    return call


def _policy_trl(ctx: BuildContext) -> Runner:
    logprobs = _trl_logprobs(ctx, with_entropy=False)
    _, _, _, mask, advantages, old = _policy_args(ctx)
    cfg = ctx.policy.as_dict()
    return _training(
        ctx,
        lambda: policy_surrogate(logprobs()[0], mask, advantages, old, **cfg),
        notes=f"trl=={PEER_VERSIONS['trl']} ChunkedLogProbFunction, chunk_size=32768, logits recomputed in backward",
    )


def _policy_verl(ctx: BuildContext) -> Runner:
    logprobs = _verl_logprobs(ctx)
    _, _, _, mask, advantages, old = _policy_args(ctx)
    cfg = ctx.policy.as_dict()
    return _training(
        ctx,
        lambda: policy_surrogate(logprobs()[0], mask, advantages, old, **cfg),
        notes=f"verl=={PEER_VERSIONS['verl']} linear_cross_entropy (log-prob + entropy)",
    )


# ---------------------------------------------------------------- logprobs (forward scoring)


def _logprobs_fastcomt(ctx: BuildContext) -> Runner:
    fn = _fused(ctx.kernels, "linear_logprobs")
    x = ctx.inputs
    h, t, m = x.bt(x.hidden.detach()), x.bt(x.targets), x.bt(x.mask)
    return _scoring(lambda: fn(h, x.weight.detach(), t, mask=m), notes=_fastcomt_notes(ctx.kernels))


def _logprobs_eager(ctx: BuildContext) -> Runner:
    x = ctx.inputs
    return _scoring(lambda: eager_logprobs(x.hidden.detach(), x.weight.detach(), x.targets, x.mask))


def _logprobs_compile(ctx: BuildContext) -> Runner:
    fn = _compiled(eager_logprobs, ctx.compile_backend)
    x = ctx.inputs
    return _scoring(
        lambda: fn(x.hidden.detach(), x.weight.detach(), x.targets, x.mask), notes=f"backend={ctx.compile_backend}"
    )


def _logprobs_trl(ctx: BuildContext) -> Runner:
    return _scoring(_trl_logprobs(ctx, with_entropy=True), notes=f"trl=={PEER_VERSIONS['trl']}, outputs=('entropy',)")


def _logprobs_verl(ctx: BuildContext) -> Runner:
    return _scoring(_verl_logprobs(ctx), notes=f"verl=={PEER_VERSIONS['verl']}")


# ---------------------------------------------------------------- cross-entropy


def _ce_fastcomt(ctx: BuildContext) -> Runner:
    fn = _fused(ctx.kernels, "linear_cross_entropy")
    x = ctx.inputs
    return _training(ctx, lambda: fn(x.hidden, x.weight, x.targets_ce), notes=_fastcomt_notes(ctx.kernels))


def _ce_eager(ctx: BuildContext) -> Runner:
    x = ctx.inputs
    return _training(ctx, lambda: eager_cross_entropy(x.hidden, x.weight, x.targets_ce))


def _ce_compile(ctx: BuildContext) -> Runner:
    fn = _compiled(eager_cross_entropy, ctx.compile_backend)
    x = ctx.inputs
    return _training(ctx, lambda: fn(x.hidden, x.weight, x.targets_ce), notes=f"backend={ctx.compile_backend}")


def _ce_liger(ctx: BuildContext) -> Runner:
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    loss_module = LigerFusedLinearCrossEntropyLoss()
    x = ctx.inputs
    return _training(
        ctx, lambda: loss_module(x.weight, x.hidden, x.targets_ce), notes="defaults (bf16 dW accumulation)"
    )


def _ce_cce(filter_eps: Any) -> Callable[[BuildContext], Runner]:
    def build(ctx: BuildContext) -> Runner:
        from cut_cross_entropy import linear_cross_entropy

        x = ctx.inputs
        kwargs = {} if filter_eps == "default" else {"filter_eps": filter_eps}
        return _training(
            ctx,
            lambda: linear_cross_entropy(x.hidden, x.weight, x.targets_ce, **kwargs),
            notes=f"filter_eps={'default' if filter_eps == 'default' else filter_eps}",
        )

    return build


METHODS: tuple[Method, ...] = (
    Method("floor", "policy", "floor: 3 GEMMs", lambda c: _floor(c, backward=True), is_floor=True),
    Method("eager", "policy", "eager torch (bf16 logits, fp32 log-softmax)", _policy_eager),
    Method("compile", "policy", "torch.compile(eager, dynamic=True)", _policy_compile),
    Method("liger", "policy", "Liger LigerFusedLinearGRPOLoss", _policy_liger, needs_cuda=True),
    Method("cce", "policy", "cut-cross-entropy logp + torch surrogate", _policy_cce, needs_cuda=True),
    Method("trl", "policy", "TRL ChunkedLogProbFunction logp + torch surrogate", _policy_trl),
    Method("verl", "policy", "verl linear_cross_entropy logp + torch surrogate", _policy_verl, needs_cuda=True),
    Method("fastcomt", "policy", "fastcomt linear_policy_loss", _policy_fastcomt),
    Method("floor", "logprobs", "floor: 1 GEMM", lambda c: _floor(c, backward=False), is_floor=True),
    Method("eager", "logprobs", "eager torch (bf16 logits, fp32 log-softmax)", _logprobs_eager),
    Method("compile", "logprobs", "torch.compile(eager, dynamic=True)", _logprobs_compile),
    Method("trl", "logprobs", "TRL ChunkedLogProbFunction (logp, entropy)", _logprobs_trl),
    Method("verl", "logprobs", "verl linear_cross_entropy (logp, entropy)", _logprobs_verl, needs_cuda=True),
    Method("fastcomt", "logprobs", "fastcomt linear_logprobs", _logprobs_fastcomt),
    Method("floor", "ce", "floor: 3 GEMMs", lambda c: _floor(c, backward=True), is_floor=True),
    Method("eager", "ce", "eager torch (bf16 logits, fp32 cross-entropy)", _ce_eager),
    Method("compile", "ce", "torch.compile(eager, dynamic=True)", _ce_compile),
    Method("liger", "ce", "Liger LigerFusedLinearCrossEntropyLoss", _ce_liger, needs_cuda=True),
    Method("cce", "ce", "cut-cross-entropy (default filter)", _ce_cce("default"), needs_cuda=True),
    Method("cce-nofilter", "ce", "cut-cross-entropy (filter_eps=None)", _ce_cce(None), needs_cuda=True),
    Method("fastcomt", "ce", "fastcomt linear_cross_entropy", _ce_fastcomt),
)

METHOD_NAMES = tuple(dict.fromkeys(m.name for m in METHODS))


def methods_for(op: str, names: tuple[str, ...] | None = None) -> list[Method]:
    """The methods of one op, floor first and fastcomt last (a sticky CUDA error or a hang in our kernel
    cannot cost the floor's and the peers' rows), optionally restricted to ``names``."""
    return [m for m in METHODS if m.op == op and (names is None or m.name in names)]
