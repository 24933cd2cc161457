"""The measurement loop: for each shape, build the inputs once; for each op, compute the float32
truth once and run every method on the same tensors. Rows already measured (``--resume``) are
reused, and once the time budget is spent the remaining rows are written as skipped, not dropped."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType

import torch

from bench.eager import PolicyConfig
from bench.ground_truth import Truth, ce_truth, logprobs_truth, policy_truth
from bench.inputs import BenchInputs, Shape, make_inputs
from bench.measure import Tolerances, run_method
from bench.methods import BuildContext, Method, Runner, methods_for
from bench.report import attach_ratios


@dataclass(frozen=True)
class SweepConfig:
    device: str
    ops: tuple[str, ...]
    method_names: tuple[str, ...] | None  # None: all
    seq_len: int
    entropy: float
    pad_fraction: float
    logprob_noise: float
    seed: int
    warmup: int
    reps: int
    compile_backend: str
    policy: PolicyConfig
    tol: Tolerances
    budget_s: float | None
    method_timeout_s: float | None = None  # per measurement (build, warm-up, timed calls)
    simulate_failure: str | None = None  # "error" or "hang": fastcomt's rows fail that way (dry runs)


class StickyDeviceError(RuntimeError):
    """The CUDA context is unusable after a failure; the process must end (a rerun resumes)."""


# Written before each measurement and replaced by its result: if the process is killed mid-measurement
# (a hang in C code no Python timeout can interrupt), the row on disk says so and a resumed run moves on.
KILLED_STATUS = "timeout: the process was killed during this measurement"


class Sweep:
    """Runs shapes one by one; ``base_row`` holds the fields every row carries (settings, machine)."""

    def __init__(
        self,
        cfg: SweepConfig,
        kernels: ModuleType,
        base_row: dict,
        done: dict[tuple, dict],
        log: Callable[[str], None],
        on_row: Callable[[dict], None] = lambda row: None,
    ) -> None:
        self.cfg, self.kernels, self.base_row, self.done, self.log = cfg, kernels, base_row, done, log
        self.on_row = on_row  # persists a row at once (a later row of the same key replaces it)
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def over_budget(self) -> bool:
        return self.cfg.budget_s is not None and self.elapsed() > self.cfg.budget_s

    def _truth(self, op: str, inputs: BenchInputs) -> Truth:
        if op == "policy":
            return policy_truth(inputs, self.kernels, self.cfg.policy)
        if op == "ce":
            return ce_truth(inputs, self.kernels)
        return logprobs_truth(inputs, self.kernels)

    def _build_inputs(self, shape: Shape) -> tuple[BenchInputs | None, str | None]:
        self.log(f"[{self.elapsed():7.1f}s] {shape.label}: building inputs")
        c = self.cfg
        try:
            inputs = make_inputs(
                shape,
                seq_len=c.seq_len,
                device=c.device,
                target_entropy=c.entropy,
                pad_fraction=c.pad_fraction,
                logprob_noise=c.logprob_noise,
                seed=c.seed,
            )
        except Exception as exc:  # e.g. out of memory at a huge shape: every row of the shape says so
            return None, f"failed: building inputs: {type(exc).__name__}: {str(exc).splitlines()[0][:150]}"
        self.log(
            f"    entropy {inputs.measured_entropy:.3f} nats (target {c.entropy}), padding "
            f"{inputs.pad_fraction:.1%}, head scale {inputs.head_scale:.3g}"
        )
        return inputs, None

    def _row(self, shape: Shape, method: Method) -> dict:
        return {
            "n": shape.n,
            "h": shape.h,
            "v": shape.v,
            "shape": shape.label,
            "op": method.op,
            "method": method.name,
            "label": method.label,
            **self.base_row,
        }

    def run_shape(self, shape: Shape) -> Iterator[tuple[list[dict], list[dict]]]:
        """Yields, per op, (all rows of the group with ratios, the rows measured now)."""
        todo = {op: methods_for(op, self.cfg.method_names) for op in self.cfg.ops}
        key = lambda m: (shape.n, shape.h, shape.v, m.op, m.name)  # noqa: E731
        pending = any(key(m) not in self.done for ms in todo.values() for m in ms)
        inputs, problem = (None, None)
        if pending and not self.over_budget():
            inputs, problem = self._build_inputs(shape)
        for op, methods in todo.items():
            group, fresh = [], []
            truth, truth_problem, truth_tried = None, None, False
            for method in methods:
                if key(method) in self.done:
                    group.append(self.done[key(method)])
                    continue
                row = self._row(shape, method)
                if inputs is None or self.over_budget():
                    row["status"] = problem or f"skipped: time budget ({self.cfg.budget_s:g} s) exhausted"
                else:
                    if not method.is_floor and not truth_tried:
                        truth_tried = True
                        truth, truth_problem = self._try_truth(op, inputs)
                    self.on_row({**row, "status": KILLED_STATUS})
                    row.update(self._measure(method, inputs, truth, truth_problem))
                group.append(row)
                fresh.append(row)
                self.on_row(row)
                self._check_device(row)
            attach_ratios(group)
            for row in fresh:  # again, now with the group's ratios
                self.on_row(row)
            yield group, fresh
            del truth
        del inputs
        if self.cfg.device == "cuda":
            torch.cuda.empty_cache()

    def _try_truth(self, op: str, inputs: BenchInputs) -> tuple[Truth | None, str | None]:
        try:
            return self._truth(op, inputs), None
        except Exception as exc:  # e.g. out of memory: the rows say their errors are unchecked
            if self.cfg.device == "cuda":
                torch.cuda.empty_cache()
            return None, f"float32 ground truth failed ({type(exc).__name__})"

    def _check_device(self, row: dict) -> None:
        if self.cfg.device != "cuda" or not row["status"].startswith(("failed", "timeout")):
            return
        try:
            torch.cuda.synchronize()
        except Exception as exc:
            raise StickyDeviceError(f"CUDA context lost after {row['method']} on {row['shape']}: {exc}") from exc

    def _measure(self, method: Method, inputs: BenchInputs, truth: Truth | None, truth_problem: str | None) -> dict:
        c = self.cfg
        ctx = BuildContext(
            inputs=inputs, kernels=self.kernels, policy=c.policy, compile_backend=c.compile_backend, device=c.device
        )
        if c.simulate_failure and method.name == "fastcomt":
            method = simulated_failure(method, c.simulate_failure)
        with time_limit(c.method_timeout_s):
            row = run_method(method, ctx, truth, truth_problem, warmup=c.warmup, reps=c.reps, tol=c.tol)
        row.update(
            measured_entropy=inputs.measured_entropy,
            measured_pad_fraction=inputs.pad_fraction,
            input_gib=inputs.nbytes() / float(1 << 30),
        )
        median = row.get("median_ms", float("nan"))
        self.log(
            f"[{self.elapsed():7.1f}s] {inputs.shape.label} {method.op:8s} {method.name:13s} "
            f"{median:10.3f} ms  {row['status']}"
        )
        return row


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raises TimeoutError in this (main) thread after ``seconds``. It interrupts Python code and
    sleeps, not a call stuck inside a CUDA driver function; gpu_check.sh's outer timeout covers those."""
    if not seconds or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"no result within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def simulated_failure(method: Method, mode: str) -> Method:
    """``method`` with a step that raises ("error") or never returns ("hang"), for dry runs that check
    the floor and the peers' rows survive a failure of our kernel."""

    def step() -> None:
        if mode == "hang":
            while True:
                time.sleep(1.0)
        raise RuntimeError(f"simulated failure of {method.name} (--simulate-failure {mode})")

    def build(ctx: BuildContext) -> Runner:
        return Runner(step=step, collect=lambda _: None, notes=f"simulated {mode}")  # type: ignore[arg-type]

    return dataclasses.replace(method, build=build)
