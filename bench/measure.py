"""Runs one method on one shape: warm-up, timed repetitions, one measured call for peak memory and
outputs, then errors against the float32 truth. Every outcome becomes a row with a status; nothing
is dropped silently.

Statuses: ``ok``; ``inaccurate: ...`` (ran, but an error is above tolerance); ``unverified: ...``
(ran, but there was no ground truth to judge it); ``oom``; ``failed: ...`` (raised);
``unavailable: ...`` (could not be imported); ``skipped: needs CUDA (...)`` (a peer's Triton kernel
that does not run on CPU); ``skipped: time budget ...``.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass

import torch

from bench.ground_truth import Truth
from bench.methods import BuildContext, Method, Outputs
from bench.timing import measure_peak, synchronize, time_repetitions

GIB = float(1 << 30)


@dataclass(frozen=True)
class Tolerances:
    """Accuracy bars for bf16 inputs against the float32 truth."""

    grad_rel_l2: float = 1e-2
    logprob_max_abs: float = 2e-2


def _rel_l2(value: torch.Tensor, ref: torch.Tensor) -> float:
    num = torch.linalg.vector_norm(value.float() - ref)
    den = torch.linalg.vector_norm(ref)
    return float(num / den) if float(den) > 0 else float(num)


def _max_abs(value: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor) -> float:
    diff = (value.float() - ref)[mask]
    return float(diff.abs().max()) if diff.numel() else 0.0


def compute_errors(out: Outputs, truth: Truth, mask: torch.Tensor) -> dict[str, float | None]:
    """Relative L2 of gradients, absolute error of the loss, max abs of per-token outputs (unpadded)."""
    errors: dict[str, float | None] = {}
    if truth.loss is not None:
        if out.dh is None or out.dw is None:
            raise RuntimeError("the call produced no gradient for hidden or weight")
        errors["err_loss"] = abs(out.loss - truth.loss)
        errors["err_dh"] = _rel_l2(out.dh, truth.dh)
        errors["err_dw"] = _rel_l2(out.dw, truth.dw)
    if truth.logp is not None:
        errors["err_logp"] = _max_abs(out.logp, truth.logp, mask)
        errors["err_entropy"] = _max_abs(out.entropy, truth.entropy, mask)
        if out.maxprob is not None:  # peers that report no max-prob are not compared on it
            errors["err_maxprob"] = _max_abs(out.maxprob, truth.maxprob, mask)
    return errors


def accuracy_status(errors: dict[str, float | None], tol: Tolerances) -> str:
    bars = {"err_dh": tol.grad_rel_l2, "err_dw": tol.grad_rel_l2, "err_logp": tol.logprob_max_abs}
    # `not e <= bar` also catches NaN.
    over = [f"{k[4:]} {errors[k]:.1e} > {bar:g}" for k, bar in bars.items() if k in errors and not errors[k] <= bar]
    return "inaccurate: " + ", ".join(over) if over else "ok"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]


def _failure_status(method: Method, device: str, exc: BaseException) -> str:
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return "oom"
    if isinstance(exc, TimeoutError):
        return f"timeout: {exc}"
    if method.needs_cuda and device == "cpu":
        return f"skipped: needs CUDA ({type(exc).__name__} on CPU)"
    return f"failed: {_short(exc)}"


def _release(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def run_method(
    method: Method,
    ctx: BuildContext,
    truth: Truth | None,
    truth_problem: str | None,
    *,
    warmup: int,
    reps: int,
    tol: Tolerances,
) -> dict:
    """Measures one (shape, op, method); returns the row's measured fields (always with a status)."""
    row: dict = {"method": method.name, "label": method.label, "op": method.op}
    inputs = ctx.inputs
    try:
        runner = method.build(ctx)
    except ImportError as exc:
        row["status"] = f"unavailable: {_short(exc)}"
        return row
    except Exception as exc:  # e.g. out of memory for the floor's [N, V] buffer
        row.update(status=_failure_status(method, ctx.device, exc), error=_short(exc))
        _release(ctx.device)
        return row
    row["notes"] = runner.notes
    try:
        t0 = time.perf_counter()
        for _ in range(warmup):
            runner.reset()
            runner.step()
        synchronize(ctx.device)
        row["warmup_s"] = time.perf_counter() - t0  # includes torch.compile / autotuning on the first call
        times = time_repetitions(runner.step, runner.reset, reps, ctx.device)
        peak, result = measure_peak(runner.step, runner.reset, ctx.device)
        out = runner.collect(result)
        row.update(times_ms=times, median_ms=statistics.median(times), min_ms=min(times))
        # None = not measured: on CPU, and for the floor, whose buffers are allocated before the call.
        row.update(peak_gib=None, grad_gib=None, extra_gib=None)
        if peak is not None and not method.is_floor:
            grad_bytes = sum(t.numel() * t.element_size() for t in (out.dh, out.dw) if t is not None)
            row.update(peak_gib=peak / GIB, grad_gib=grad_bytes / GIB, extra_gib=(peak - grad_bytes) / GIB)
        if method.is_floor:
            row["status"] = "ok"
        elif truth is None:
            row["status"] = f"unverified: {truth_problem}"
        else:
            errors = compute_errors(out, truth, inputs.mask)
            row.update(errors)
            row["status"] = accuracy_status(errors, tol)
        del out, result
    except Exception as exc:  # a peer's failure is a row, never a crash of the whole benchmark
        row.update(status=_failure_status(method, ctx.device, exc), error=_short(exc))
    finally:
        runner.reset()
        del runner
        _release(ctx.device)
    return row
