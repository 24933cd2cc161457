"""Compiled or interpreted: decided from what runs, checked where a kernel meets its tensors.

Triton fixes the mode when ``triton.language`` is first imported and when each ``@triton.jit`` kernel
is defined (``TRITON_INTERPRET=1``: Python-executed ``InterpretedFunction``s; otherwise compiled
``JITFunction``s). fastcomt chooses it from torch's own CUDA check at that moment (see
``fastcomt/__init__.py``); this module checks, at every launch, that the mode fits the tensors: CUDA
tensors never reach the interpreter, CPU tensors never reach a compiled kernel.
"""

from __future__ import annotations

import torch


def kernel_is_interpreted(kernel: object) -> bool:
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(kernel, InterpretedFunction)


def check_kernel_mode(kernel: object, device: torch.device) -> None:
    """Raises RuntimeError when ``kernel``'s mode cannot run on ``device``."""
    name = getattr(getattr(kernel, "fn", kernel), "__name__", "kernel")
    interpreted = kernel_is_interpreted(kernel)
    if interpreted and device.type != "cpu":
        raise RuntimeError(
            f"{name}: expected a compiled Triton kernel for {device.type} tensors, got Triton's CPU interpreter "
            "(TRITON_INTERPRET=1 was set when the kernels were defined); unset TRITON_INTERPRET on a GPU machine"
        )
    if not interpreted and device.type == "cpu":
        raise RuntimeError(
            f"{name}: expected Triton's interpreter for CPU tensors, got a compiled kernel (triton was imported "
            "before TRITON_INTERPRET=1 was set); set TRITON_INTERPRET=1 or import fastcomt before triton"
        )
