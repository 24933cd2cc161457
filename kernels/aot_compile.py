"""Ahead-of-time compilation of every kernel specialisation the launch code can pick, for GPUs this
machine does not have: ``triton.compile(ASTSource(...), target=GPUTarget("cuda", 90, 32))`` runs the
whole pipeline (TTIR, TTGIR, LLVM, PTX, and the ``ptxas`` bundled in the triton wheel), so a kernel
that would fail to compile, or spill registers, on an H100/H200 (sm_90) or A100 (sm_80) is caught on
a CPU-only CI machine.

The specialisations come from the launch code's own choice functions (``row_kernel_constants`` and
``chunk_dtypes``/``resolve_launch`` for the LM-head row kernel, ``logprob_forward_constants`` and
``logprob_backward_constants`` for the differentiable log-prob's row kernels,
``reward_kernel_constants`` for the CCRL reward kernel) applied to every input they can see, so the
list cannot drift from what runs.
Pointer arguments are compiled 16-byte aligned and the integer strides divisible by 16, the case
Triton specialises for at the usual shapes (V = 151936, 152064, ...).

Run as ``TRITON_INTERPRET=0 python -m fastcomt.kernels.aot_compile`` (the interpreter replaces
``@triton.jit`` functions with Python ones, which cannot be compiled): prints one JSON line per
specialisation and target with its registers and spill bytes (ptxas ``-v``), exit status 1 if any
failed or spilled.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch

TARGETS = ((90, "H100/H200"), (80, "A100"))
# Vocabulary sizes the block choice is evaluated at: tiny test vocabularies up to the largest heads.
VOCAB_SIZES = (2, 300, 4096, 32_000, 128_256, 151_936, 152_064, 262_144)
HIDDEN_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

_TRITON_TYPES = {
    torch.float32: "fp32",
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
    torch.int64: "i64",
    torch.int32: "i32",
}


def row_specialisations() -> list[dict[str, Any]]:
    """Distinct (constants, pointer dtypes) of lm_head_rows_kernel over everything the driver can pass."""
    from .config import LMHeadConfig, chunk_dtypes, resolve_launch
    from .lm_head_rows import EPILOGUE_CE, EPILOGUE_POLICY, EPILOGUE_SCORE, row_kernel_constants

    cuda = torch.device("cuda")
    seen: dict[str, dict[str, Any]] = {}
    flags = itertools.product((False, True), repeat=5)  # write_grad, has_coef, has_old, has_ref, has_softcap
    for epilogue, (write_grad, *has), fp32_logits, dtype, vocab in itertools.product(
        (EPILOGUE_SCORE, EPILOGUE_CE, EPILOGUE_POLICY), flags, (True, False), HIDDEN_DTYPES, VOCAB_SIZES
    ):
        launch = resolve_launch(LMHeadConfig(fp32_logits=fp32_logits), vocab, dtype, cuda)
        constants = row_kernel_constants(
            epilogue=epilogue,
            write_grad=write_grad,
            has_coef=has[0],
            has_old=has[1],
            has_ref=has[2],
            has_softcap=has[3],
            block_v=launch.block_v,
            num_warps=launch.num_warps,
        )
        _, logits, grad = chunk_dtypes(dtype, cuda, launch.fp32_logits, bool(constants["WRITE_GRAD"]))
        pointers = {"logits_ptr": logits, "grad_ptr": grad, "targets_ptr": torch.int64}
        spec = {"kernel": "lm_head_rows_kernel", "constants": constants, "pointers": pointers}
        seen.setdefault(_key(spec), spec)
    return list(seen.values())


def logprob_specialisations() -> list[dict[str, Any]]:
    """Distinct (constants, pointer dtypes) of the differentiable log-prob's forward and backward row
    kernels (kernels/linear_logprobs_autograd.py) over everything that driver can pass."""
    from .config import LMHeadConfig, chunk_dtypes, resolve_launch
    from .logprob_rows import logprob_backward_constants, logprob_forward_constants

    cuda = torch.device("cuda")
    seen: dict[str, dict[str, Any]] = {}
    grads = ((True, False), (False, True), (True, True))  # upstream gradients: log-probs, entropies
    for softcap, fp32_logits, dtype, vocab in itertools.product(
        (False, True), (True, False), HIDDEN_DTYPES, VOCAB_SIZES
    ):
        launch = resolve_launch(LMHeadConfig(fp32_logits=fp32_logits), vocab, dtype, cuda)
        _, logits, _ = chunk_dtypes(dtype, cuda, launch.fp32_logits, write_grad=False)
        constants = logprob_forward_constants(has_softcap=softcap, block_v=launch.block_v, num_warps=launch.num_warps)
        spec = {
            "kernel": "logprob_forward_rows",
            "constants": constants,
            "pointers": {"logits_ptr": logits, "targets_ptr": torch.int64},
        }
        seen.setdefault(_key(spec), spec)
        _, logits, grad = chunk_dtypes(dtype, cuda, launch.fp32_logits, write_grad=True)
        for has_grad_logp, has_grad_entropy in grads:
            constants = logprob_backward_constants(
                has_softcap=softcap,
                has_grad_logp=has_grad_logp,
                has_grad_entropy=has_grad_entropy,
                block_v=launch.block_v,
                num_warps=launch.num_warps,
            )
            spec = {
                "kernel": "logprob_backward_rows",
                "constants": constants,
                "pointers": {"logits_ptr": logits, "grad_ptr": grad, "targets_ptr": torch.int64},
            }
            seen.setdefault(_key(spec), spec)
    return list(seen.values())


def reward_specialisations() -> list[dict[str, Any]]:
    """Distinct constants of the CCRL reward kernel over its confidence modes and every allowed problem
    size (its other options are runtime switches)."""
    from .rewards import CONFIDENCE_MODES, MAX_PROBLEM_SIZE, reward_kernel_constants

    seen: dict[str, dict[str, Any]] = {}
    for confidence, size in itertools.product(CONFIDENCE_MODES, range(1, MAX_PROBLEM_SIZE + 1)):
        constants = reward_kernel_constants(confidence=confidence, max_problem_size=size, block_t=128)
        spec = {"kernel": "_ccrl_reward_kernel", "constants": constants, "pointers": {}}
        seen.setdefault(_key(spec), spec)
    return list(seen.values())


def _key(spec: dict[str, Any]) -> str:
    return json.dumps({**spec, "pointers": {k: str(v) for k, v in spec["pointers"].items()}}, sort_keys=True)


def _kernel(name: str):
    from . import logprob_rows
    from .lm_head_rows import lm_head_rows_kernel
    from .rewards import _ccrl_reward_kernel

    kernels = {
        "lm_head_rows_kernel": lm_head_rows_kernel,
        "logprob_forward_rows": logprob_rows.logprob_forward_rows,
        "logprob_backward_rows": logprob_rows.logprob_backward_rows,
        "_ccrl_reward_kernel": _ccrl_reward_kernel,
    }
    return kernels[name]


def _signature(fn, constants: dict[str, Any], pointers: dict[str, torch.dtype]) -> tuple[dict, dict]:
    """Triton signature strings and alignment attributes for every argument of ``fn``.

    Pointers default to fp32 (``pointers`` overrides), arguments ending in ``_ptr`` are pointers, the
    float scalars are named explicitly, every other runtime argument is an i32."""
    float_scalars = {
        "inv_temperature",
        "eps_low",
        "eps_high",
        "beta",
        "entropy_coef",
        "tis_cap",
        "lam",
        "eps",
        "delta",
        "clip_ratio_c",
        "logit_scale",
        "softcap",
    }
    int_pointers = {"span_ptr": torch.int32, "group_ptr": torch.int64, "problem_ptr": torch.int64}
    signature, attrs = {}, {}
    for index, name in enumerate(fn.arg_names):
        if name in constants:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            dtype = pointers.get(name, int_pointers.get(name, torch.float32))
            signature[name] = "*" + _TRITON_TYPES[dtype]
            attrs[(index,)] = [["tt.divisibility", 16]]
        elif name in float_scalars:
            signature[name] = "fp32"
        else:
            signature[name] = "i32"
            if "stride" in name or name == "vocab_size":
                attrs[(index,)] = [["tt.divisibility", 16]]
    return signature, attrs


def _ptxas() -> str:
    import triton

    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return knobs.nvidia.ptxas.path
    return os.environ.get("TRITON_PTXAS_PATH") or os.path.join(
        os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas"
    )


def _group(match: re.Match[str] | None, what: str, group: int = 1) -> str:
    """A group of a match that ptxas's or Triton's output must contain; a clear error if it does not."""
    if match is None:
        raise RuntimeError(f"could not find {what} in the compiler's output")
    return match.group(group)


def compile_one(spec: dict[str, Any], arch: int) -> dict[str, Any]:
    """Compiles one specialisation for sm_<arch>; returns registers and spill bytes from ptxas -v."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = _kernel(spec["kernel"])
    constants = {k: v for k, v in spec["constants"].items() if k != "num_warps"}
    signature, attrs = _signature(fn, constants, spec["pointers"])
    report = {
        "kernel": spec["kernel"],
        "arch": arch,
        "constants": spec["constants"],
        "pointers": {k: str(v) for k, v in spec["pointers"].items()},
    }
    start = time.perf_counter()
    try:
        # Constants keyed by argument position, the form every triton 3.x ASTSource accepts.
        positional = {(fn.arg_names.index(name),): value for name, value in constants.items()}
        compiled = triton.compile(
            ASTSource(fn, signature, positional, attrs),
            target=GPUTarget("cuda", arch, 32),
            options={"num_warps": spec["constants"]["num_warps"]},
        )
        ptx = compiled.asm["ptx"]
        gpu_name = _group(re.search(r"^\.target\s+(sm_\w+)", ptx, re.M), "the PTX's .target line")
        with tempfile.TemporaryDirectory() as tmp:
            src, out = os.path.join(tmp, "k.ptx"), os.path.join(tmp, "k.cubin")
            with open(src, "w") as f:
                f.write(ptx)
            log = subprocess.run(
                [_ptxas(), "-v", f"--gpu-name={gpu_name}", src, "-o", out], capture_output=True, text=True, check=True
            ).stderr
        spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
        registers = re.search(r"Used (\d+) registers", log)
        report.update(
            ok=True,
            registers=int(_group(registers, "ptxas's register count")),
            spill_stores=int(_group(spills, "ptxas's spill line")),
            spill_loads=int(_group(spills, "ptxas's spill line", 2)),
            shared_bytes=int(compiled.metadata.shared),
        )
    except Exception as exc:  # reported, not raised: one failure must not hide the others
        report.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:2000])
    report["seconds"] = round(time.perf_counter() - start, 2)
    return report


def _compile_star(args: tuple[dict[str, Any], int]) -> dict[str, Any]:
    return compile_one(*args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", default=",".join(str(a) for a, _ in TARGETS), help="comma list, e.g. 90,80")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel compile processes")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print(
            "aot_compile: expected TRITON_INTERPRET unset or 0 (the interpreter cannot compile), got "
            f"{os.environ['TRITON_INTERPRET']!r}",
            file=sys.stderr,
        )
        return 2
    archs = [int(a) for a in args.archs.split(",")]
    specs = row_specialisations() + logprob_specialisations() + reward_specialisations()
    work = [(spec, arch) for arch in archs for spec in specs]
    failed = 0
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for report in pool.map(_compile_star, work, chunksize=4):
            failed += not report["ok"] or report["spill_stores"] > 0 or report["spill_loads"] > 0
            print(json.dumps(report), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
