"""Wall-clock and memory measurement of one callable.

On CUDA each repetition sits between two CUDA events and the stream is not drained between
repetitions, so the numbers are GPU time of back-to-back calls (a host sync inside the method still
shows up as idle GPU time, which is what a trainer would pay). On CPU time.perf_counter is used.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_repetitions(step: Callable[[], Any], reset: Callable[[], None], reps: int, device: str) -> list[float]:
    """Milliseconds of ``reps`` calls of ``step``; ``reset`` (e.g. dropping .grad) runs outside the timing."""
    if reps < 1:
        raise ValueError(f"reps: expected >= 1, got {reps}")
    if device == "cuda":
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        for start, end in events:
            reset()
            start.record()
            step()
            end.record()
        torch.cuda.synchronize()
        return [start.elapsed_time(end) for start, end in events]
    times = []
    for _ in range(reps):
        reset()
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def measure_peak(step: Callable[[], Any], reset: Callable[[], None], device: str) -> tuple[int | None, Any]:
    """Runs ``step`` once; returns (peak bytes it allocated above what was live before it, its result).

    The peak is None on CPU: torch's CPU allocator keeps no peak statistic, and tracemalloc does not
    see tensor storage, so any number would be a guess.
    """
    reset()
    if device != "cuda":
        return None, step()
    torch.cuda.synchronize()
    baseline = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    result = step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - baseline, result
